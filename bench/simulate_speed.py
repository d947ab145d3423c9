"""Replay speed: all of philly-82k on a Philly-sized network with suanli's default policy.

The network is one site per Philly virtual cluster, sized from Helios' ``philly_vc.csv``
(nodes of 8 GPUs), and each job runs in its own VC. The replay drives the same core scheduler
as the server (``suanli.core.scheduler.schedule``) at a 60 s scheduling interval. Prints the
wall time of the replay (trace loading excluded, shown apart) and simulated jobs per second.

``--scale F`` multiplies every VC's node count (0.25: a quarter of the GPUs, a long queue);
``--jobs N`` replays the first N jobs only. ``jobs_digest`` is a hash of every job's start,
finish and restarts, so two versions of the code can be checked to place alike (run this file
with ``PYTHONPATH`` set to each version's ``src``, alternately).

    python bench/simulate_speed.py [--traces ../shared/traces] [--policy default] [--scale F] [--jobs N] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

from _harness import HERE, emit
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize
from suanli.sim.networks import philly_network, scale_network
from suanli.sim.policies import make_policy
from suanli.sim.speed import MeasuredDuration
from suanli.sim.trace import load_trace

DEFAULT_TRACES = HERE.parent.parent / "shared" / "traces"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="the shared traces folder")
    parser.add_argument("--policy", default="default")
    parser.add_argument("--interval", type=float, default=60.0, help="scheduling interval, seconds")
    parser.add_argument("--scale", type=float, default=1.0, help="every VC's node count × this factor")
    parser.add_argument("--jobs", type=int, default=0, help="replay the first N jobs only (0: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    t0 = time.perf_counter()
    trace = load_trace(f"philly:{args.traces / 'philly-82k' / 'philly.csv'}")
    network = scale_network(philly_network(args.traces / "helios-sc21-summary" / "philly_vc.csv"), args.scale)
    if args.jobs > 0:
        trace.jobs = trace.jobs[: args.jobs]
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    sim = Simulation(trace, network, make_policy(args.policy), MeasuredDuration(), args.interval)
    result = sim.run()
    wall = time.perf_counter() - t1
    summary = summarize(result)
    emit(
        {
            "policy": args.policy,
            "scale": args.scale,
            "jobs": summary["jobs"] + summary["refused_jobs"],
            "gpus": result.total_gpus,
            "scheduling_passes": result.passes,
            "load_s": round(load_s, 2),
            "wall_s": round(wall, 2),
            "jobs_per_s": round(len(trace.jobs) / wall, 1),
            "avg_jct_h": round(summary["avg_jct_s"] / 3600, 3),
            "gpu_utilization": round(summary["gpu_utilization"], 4),
            # Other work on the machine slows the replay; this says how busy it was.
            "jobs_digest": hashlib.sha256(
                repr(sorted((j.trace.id, j.first_start, j.finish, j.restarts) for j in result.jobs)).encode()
            ).hexdigest()[:16],
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        args.json,
        "simulate: philly-82k replay",
    )


if __name__ == "__main__":
    main()
