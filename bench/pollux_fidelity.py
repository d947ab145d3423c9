"""Fidelity: the 8 Pollux workloads at relative load 1.0 against the published results.

The cluster of the Pollux artifact (16 nodes × 4 GPUs, ``examples/sim/pollux-16x4.yaml``), a
60 s scheduling interval, jobs at their given ``num_replicas`` and ``batch_size``, Tiresias'
demotion threshold at 16 GPU-hours. For each policy: the mean over the workloads of each
workload's average JCT, beside the published figure (``results-jobload/<policy>-1.0``).

Also per policy: Jain's fairness (over jobs: one tenant per workload), the mean p99 JCT, and
the jobs that ended FAILED (left out of the averages); and the checks ``default_h_le_1``,
``default_jain_ge_fifo``, ``tiresias_within_15pct``.

    python bench/pollux_fidelity.py [--traces ../shared/traces] [--policies tiresias,default] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _harness import HERE, emit
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize
from suanli.sim.networks import read_network
from suanli.sim.policies import make_policy
from suanli.sim.speed import PolluxProfiles
from suanli.sim.trace import load_trace

DEFAULT_TRACES = HERE.parent.parent / "shared" / "traces"
PUBLISHED = {"tiresias": "tiresias-1.0", "pollux": "pollux-1.0", "optimus": "optimus-1.0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="the shared traces folder")
    parser.add_argument("--policies", default="tiresias,default,sjf,fifo")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    root = args.traces / "pollux-osdi21"
    network = read_network(HERE.parent / "examples" / "sim" / "pollux-16x4.yaml")
    speed = PolluxProfiles(root / "profiles")
    result: dict[str, float | int | str] = {}
    for name, folder in PUBLISHED.items():
        summary = json.loads((root / "results-jobload" / folder / "summary.json").read_text())
        result[f"published_{name}_h"] = round(summary["mean"] / 3600, 3)
    t0 = time.perf_counter()
    for policy in args.policies.split(","):
        avgs, jains, p99s, failed = [], [], [], 0
        for i in range(1, 9):
            trace = load_trace(f"pollux:{root / 'workloads' / f'workload-{i}.csv'}")
            sim = Simulation(trace, network, make_policy(policy), speed, 60.0)
            summary = summarize(sim.run())
            avgs.append(summary["avg_jct_s"])
            jains.append(summary["jain_fairness"])
            p99s.append(summary["p99_jct_s"])
            failed += summary["failed_jobs"]
            result[f"{policy}_workload_{i}_h"] = round(avgs[-1] / 3600, 3)
        result[f"{policy}_h"] = round(statistics.fmean(avgs) / 3600, 3)
        # One tenant per workload: Jain's index is over jobs (run time alone ÷ JCT), averaged.
        result[f"{policy}_jain"] = round(statistics.fmean(jains), 4)
        result[f"{policy}_p99_h"] = round(statistics.fmean(p99s) / 3600, 3)
        # Jobs that ended FAILED are not in the averages: a policy must not win by failing jobs.
        result[f"{policy}_failed_jobs"] = failed
        if policy in PUBLISHED:
            published = float(result[f"published_{policy}_h"])
            result[f"{policy}_vs_published"] = f"{(statistics.fmean(avgs) / 3600 / published - 1):+.1%}"
    if "default" in args.policies.split(","):
        result["default_h_le_1"] = float(result["default_h"]) <= 1.0
        if "fifo" in args.policies.split(","):
            result["default_jain_ge_fifo"] = float(result["default_jain"]) >= float(result["fifo_jain"])
    if "tiresias" in args.policies.split(","):
        result["tiresias_within_15pct"] = (
            abs(float(result["tiresias_h"]) / float(result["published_tiresias_h"]) - 1) <= 0.15
        )
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.json:
        emit(result, True, "")
        return
    print("simulate: Pollux workloads at load 1.0, mean of per-workload average JCT (hours)")
    for policy in args.policies.split(","):
        per = " ".join(f"{result[f'{policy}_workload_{i}_h']:6.3f}" for i in range(1, 9))
        published = result.get(f"published_{policy}_h")
        versus = f"  published {published:.3f} ({result[f'{policy}_vs_published']})" if published else ""
        print(f"  {policy:<9} {result[f'{policy}_h']:6.3f}   per workload: {per}{versus}")
        print(
            f"  {'':<9} Jain {result[f'{policy}_jain']:.3f}, p99 {result[f'{policy}_p99_h']:.2f} h, "
            f"failed jobs {result[f'{policy}_failed_jobs']}"
        )
    others = ", ".join(f"{n} {result[f'published_{n}_h']:.3f}" for n in PUBLISHED if n not in args.policies)
    print(f"  published, not simulated here: {others}")
    print(f"  wall time {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
