"""CPU seconds (user + sys of the child) to start the CLI: ``suanli --help``, ``suanli jobs`` and
``suanli status ID`` against a real server with one submitted job, median of 10, beside
``squeue`` when Slurm is on PATH (null otherwise). Target: <= 0.2 s each (issue 21).

    python bench/cli_start.py [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import httpx

from _harness import HERE, auth, suanli_process

SUANLI = [sys.executable, "-m", "suanli"]


def cpu_seconds(cmd: list[str], env: dict[str, str]) -> float:
    """User + system CPU of one run of ``cmd`` (its own and its children's)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def median_cpu(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    return round(statistics.median(cpu_seconds(cmd, env) for _ in range(runs)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
        env = {**os.environ, "SUANLI_SERVER": url}
        spec = {"name": "cli-start", "run": "true", "resources": {"cpus": 1}}
        job = httpx.post(f"{url}/api/v1/jobs", json={"spec": spec}, headers=auth(), timeout=30)
        job.raise_for_status()
        job_id = job.json()["id"]
        result = {
            "suanli_help_cpu_s": median_cpu([*SUANLI, "--help"], args.runs, env),
            "suanli_jobs_cpu_s": median_cpu([*SUANLI, "jobs"], args.runs, env),
            "suanli_status_cpu_s": median_cpu([*SUANLI, "status", job_id], args.runs, env),
            "squeue_cpu_s": median_cpu(["squeue"], args.runs, env) if shutil.which("squeue") else None,
        }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:22} {value}")


if __name__ == "__main__":
    main()
