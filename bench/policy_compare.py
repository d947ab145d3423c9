"""Policies side by side on the Gavel/Philly-shaped traces: suanli's default against Tiresias and FIFO.

Each ``gavel-msr-philly/seed=0/<vc>.trace`` replays alone on its own virtual cluster, sized as
``suanli simulate --network philly-vc:`` sizes it (Helios' ``philly_vc.csv``: that VC's nodes
of 8 GPUs); the 4 trace files whose VC the list lacks (35 jobs in all) are left out. A 60 s
scheduling interval. Per cluster and policy: average and p99 JCT (hours) and Jain's fairness,
and the issue's checks — default's average JCT ≤ Tiresias', and its p99 ≤ 1.25 × FIFO's.

    python bench/policy_compare.py [--traces ../shared/traces] [--policies default,tiresias,fifo] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _harness import HERE
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize
from suanli.sim.networks import philly_network, scale_network
from suanli.sim.policies import make_policy
from suanli.sim.speed import MeasuredDuration
from suanli.sim.trace import load_trace

DEFAULT_TRACES = HERE.parent.parent / "shared" / "traces"
#: default's p99 JCT may be at most this × FIFO's (long jobs are not starved to win the mean).
P99_BOUND = 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="the shared traces folder")
    parser.add_argument("--policies", default="default,tiresias,fifo")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="each VC's node count × this (0.25: a quarter; at least 1 node)"
    )
    parser.add_argument("--only", default="", help="comma-separated VCs to run (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    policies = args.policies.split(",")

    # Gavel measured its run times on V100s (its own cluster for these traces is V100s only).
    whole = philly_network(args.traces / "helios-sc21-summary" / "philly_vc.csv", gpu_type="V100")
    sites = {s.name: s for s in whole.sites}
    folder = args.traces / "gavel-msr-philly" / "seed=0"
    clusters: dict[str, dict[str, float | int]] = {}
    t0 = time.perf_counter()
    for path in sorted(folder.glob("*.trace")):
        vc = path.stem
        if vc not in sites or (args.only and vc not in args.only.split(",")):
            continue
        network = scale_network(whole.model_copy(update={"sites": [sites[vc]], "regions": [vc]}), args.scale)
        trace = load_trace(f"gavel:{path}", skip_bad=True)  # jobs of > 8 GPUs have no throughput
        row: dict[str, float | int] = {"jobs": len(trace.jobs), "skipped": trace.skipped}
        row["gpus"] = network.sites[0].nodes[0].count * 8
        for policy in policies:
            summary = summarize(Simulation(trace, network, make_policy(policy), MeasuredDuration(), 60.0).run())
            row[f"{policy}_avg_h"] = round(summary["avg_jct_s"] / 3600, 3)
            row[f"{policy}_p99_h"] = round(summary["p99_jct_s"] / 3600, 3)
            row[f"{policy}_jain"] = round(summary["jain_fairness"], 4)
            row[f"{policy}_failed"] = summary["failed_jobs"]
        clusters[vc] = row
    result: dict[str, object] = {"scale": args.scale, "clusters": clusters}
    if {"default", "tiresias"} <= set(policies):
        result["default_avg_le_tiresias"] = all(r["default_avg_h"] <= r["tiresias_avg_h"] for r in clusters.values())
    if {"default", "fifo"} <= set(policies):
        result["default_p99_le_1.25_fifo"] = all(
            r["default_p99_h"] <= P99_BOUND * float(r["fifo_p99_h"]) for r in clusters.values()
        )
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps(result))
        return
    print("simulate: gavel-msr-philly seed=0, each VC on its own cluster; JCT in hours (average / p99)")
    head = "".join(f" {p:>19}" for p in policies)
    print(f"  {'vc':<8} {'jobs':>5} {'GPUs':>5}{head}   checks")
    for vc, r in clusters.items():
        cells = "".join(f" {r[f'{p}_avg_h']:>9.2f}/{r[f'{p}_p99_h']:<9.2f}" for p in policies)
        checks = []
        if "tiresias_avg_h" in r and "default_avg_h" in r:
            checks.append("avg≤tiresias" if r["default_avg_h"] <= r["tiresias_avg_h"] else "AVG>TIRESIAS")
        if "fifo_p99_h" in r and "default_p99_h" in r:
            ok = r["default_p99_h"] <= P99_BOUND * float(r["fifo_p99_h"])
            checks.append("p99≤1.25×fifo" if ok else "P99>1.25×FIFO")
        print(f"  {vc:<8} {r['jobs']:>5} {r['gpus']:>5}{cells}   {' '.join(checks)}")
    print(f"  wall time {result['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
