"""Submit → RUNNING latency on the local backend, p50/p99.

Starts `suanli up` (server + one local-backend agent) as a subprocess, submits trivial jobs one
after another and reads, from the server's own record, when each attempt was reported running
(``attempts[0].started_at - submitted_at``, both stamped by the server clock).

    python bench/start_latency.py [--jobs 50] [--json]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

import httpx

from _harness import HERE, auth, emit, percentile, suanli_process

SPEC = {"name": "latency", "run": "sleep 0.3", "resources": {"cpus": 1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    latencies: list[float] = []
    with (
        suanli_process(["up", "--network", str(HERE / "network.yaml")]) as url,
        httpx.Client(base_url=url, timeout=30, headers=auth()) as client,
    ):
        deadline = time.monotonic() + 30
        while not all(s["online"] for s in client.get("/api/v1/sites").json()["items"]):
            if time.monotonic() > deadline:
                raise SystemExit("the agent did not come online")
            time.sleep(0.05)
        for _ in range(args.jobs):
            job = client.post("/api/v1/jobs", json={"spec": SPEC}).json()
            while True:
                job = client.get(f"/api/v1/jobs/{job['id']}").json()
                started = job["attempts"][0]["started_at"] if job["attempts"] else None
                if started or job["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.01)
            if not started:
                raise SystemExit(f"job {job['id']} ended {job['state']} without running: {job['reason']}")
            latencies.append(
                (datetime.fromisoformat(started) - datetime.fromisoformat(job["submitted_at"])).total_seconds()
            )
    result: dict[str, float | int | str] = {
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "jobs": len(latencies),
    }
    emit(result, args.json, f"bench/start_latency.py: submit → RUNNING on the local backend, {args.jobs} jobs")


if __name__ == "__main__":
    main()
