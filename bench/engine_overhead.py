"""What suanli adds on top of a real engine: submit → RUNNING → SUCCEEDED for trivial jobs.

For each engine (Slurm, Ray; both must be running: `make engines`), the same trivial jobs run
one after another twice: through suanli (`suanli up` with one site of that backend, jobs
submitted over the HTTP API and followed with GET /jobs/{id}) and straight to the engine
(`sbatch --parsable` followed with `squeue`, or Ray's JobSubmissionClient and get_job_status).
Every time is the client's wall clock from just before the submit; both sides poll every 10 ms.
The figure that matters is suanli's added latency per job: its p50 minus the engine's own p50
(target: < 100 ms).

    python bench/engine_overhead.py [--engines slurm,ray] [--jobs 100] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from _harness import auth, emit, percentile, suanli_process
from suanli import adaptors

POLL_S = 0.01
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
SITE = """regions: [bench]
sites:
  - name: bench-{engine}
    region: bench
    backend: {engine}
"""


def follow(status: Callable[[], str], running: set[str], done: set[str], t0: float) -> tuple[float, float]:
    """Poll ``status`` until done; returns (seconds to RUNNING or later, seconds to done)."""
    t_run = None
    while True:
        state = status()
        now = time.perf_counter()
        if t_run is None and (state in running or state in done):
            t_run = now - t0
        if state in done:
            return t_run or now - t0, now - t0
        if state in ("FAILED", "CANCELLED", "STOPPED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            raise SystemExit(f"a benchmark job ended {state}")
        time.sleep(POLL_S)


def through_suanli(engine: str, jobs: int) -> list[tuple[float, float]]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        network = Path(tmp) / "network.yaml"
        network.write_text(SITE.format(engine=engine))
        with (
            suanli_process(["up", "--network", str(network)]) as url,
            httpx.Client(base_url=url, timeout=30, headers=auth()) as c,
        ):
            deadline = time.monotonic() + 60
            while not all(s["online"] for s in c.get("/api/v1/sites").json()["items"]):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {engine} agent did not come online")
                time.sleep(0.05)
            for i in range(jobs + 1):  # the first warms up the path (Ray's client, imports)
                t0 = time.perf_counter()
                job_id = c.post("/api/v1/jobs", json={"spec": {"name": f"overhead-{i}", "run": "true"}}).json()["id"]
                t = follow(lambda j=job_id: c.get(f"/api/v1/jobs/{j}").json()["state"], {"RUNNING"}, {"SUCCEEDED"}, t0)
                if i:
                    times.append(t)
    return times


def straight_to_slurm(jobs: int) -> list[tuple[float, float]]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(jobs + 1):
            t0 = time.perf_counter()
            out = subprocess.run(
                ["sbatch", "--parsable", "--wrap", "true", "-o", f"{tmp}/%j.out", "-D", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            job_id = out.stdout.strip().split(";")[0]

            def state(j: str = job_id) -> str:
                return subprocess.run(
                    ["squeue", "-h", "-t", "all", "-j", j, "-o", "%T"], capture_output=True, text=True, check=False
                ).stdout.strip()

            t = follow(state, {"RUNNING", "COMPLETING"}, {"COMPLETED"}, t0)
            if i:
                times.append(t)
    return times


def straight_to_ray(jobs: int, address: str) -> list[tuple[float, float]]:
    client = adaptors.ray_job_submission().JobSubmissionClient(address)
    times = []
    for i in range(jobs + 1):
        t0 = time.perf_counter()
        sid = client.submit_job(entrypoint="true")
        t = follow(lambda s=sid: str(client.get_job_status(s).value), {"RUNNING"}, {"SUCCEEDED"}, t0)
        client.delete_job(sid)
        if i:
            times.append(t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="slurm,ray")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--ray-address", default="http://127.0.0.1:8265")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    result: dict[str, float | int | str] = {"jobs": args.jobs}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        direct = straight_to_slurm(args.jobs) if engine == "slurm" else straight_to_ray(args.jobs, args.ray_address)
        suanli = through_suanli(engine, args.jobs)
        for label, times in (("engine", direct), ("suanli", suanli)):
            result[f"{engine}_{label}_running_p50_ms"] = round(percentile([t[0] for t in times], 0.5) * 1000, 1)
            result[f"{engine}_{label}_done_p50_ms"] = round(percentile([t[1] for t in times], 0.5) * 1000, 1)
            result[f"{engine}_{label}_done_p99_ms"] = round(percentile([t[1] for t in times], 0.99) * 1000, 1)
        for phase in ("running", "done"):
            added = result[f"{engine}_suanli_{phase}_p50_ms"] - result[f"{engine}_engine_{phase}_p50_ms"]  # type: ignore[operator]
            result[f"{engine}_added_{phase}_p50_ms"] = round(float(added), 1)
    emit(result, args.json, f"bench/engine_overhead.py: {args.jobs} trivial jobs, one at a time, per engine")


if __name__ == "__main__":
    main()
