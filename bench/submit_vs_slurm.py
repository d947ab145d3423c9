"""Durable submissions per second, suanli's ``POST /api/v1/jobs`` beside slurmrestd's ``job/submit``,
measured in one run with the same client.

Finds Slurm (a controller that answers ``scontrol ping`` and slurmrestd on 127.0.0.1:6820), or
starts it with ``scripts/engines/slurm.sh start`` when run as root; starts a ``suanli server``
(SQLite in WAL mode, its scheduler running). Then alternates rounds: ROUNDS × (Slurm, suanli),
each JOBS trivial submissions from CONCURRENCY client processes, each with one keep-alive
HTTP/1.1 connection (the standard library's client, so the figure is the server's). A
submission counts when the server answered with an id: slurmctld after it took the job,
suanli after the commit. Slurm's jobs are submitted held and cancelled after each round, so
the machine stays idle for the next.

    python bench/submit_vs_slurm.py [--rounds 3] [--jobs 1000] [--concurrency 4] [--json]

Prints each round, then ``{"suanli_per_s", "slurmrestd_per_s", "ratio", "suanli_p99_ms",
"slurmrestd_p99_ms"}``: the medians over the rounds (``ratio``: suanli's over Slurm's).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import time
import uuid
from typing import Any

from _harness import HERE, auth, percentile, suanli_process

SLURMRESTD = ("127.0.0.1", 6820)
SLURM_API = "/slurm/v0.0.38/job/submit"
#: slurmrestd's "Job is in held state, pending scheduler release": the answer to a held submit.
HELD = 2042
SUANLI_SPEC = {"name": "bench", "run": "true", "resources": {"cpus": 1}}


def client(host: str, port: int, path: str, body: str, headers: dict[str, str], count: int, go: Any, out: Any) -> None:
    """One client process: ``count`` POSTs of ``body`` on one keep-alive connection."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.connect()
    latencies: list[float] = []
    errors: list[str] = []
    go.wait()
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        dt = time.perf_counter() - t0
        ok = response.status in (200, 201) and accepted(data, path == SLURM_API)
        if ok:
            latencies.append(dt)
        else:
            errors.append(f"{response.status} {data[:300]!r}")
    conn.close()
    out.put((latencies, errors))


def accepted(data: bytes, slurm: bool) -> bool:
    """Whether the answer carries the new job's id. slurmrestd answers a held job with its id
    and the note ESLURM_JOB_HELD (2042) among its errors; any other error is a refusal."""
    doc = json.loads(data)
    if not slurm:
        return bool(doc.get("id"))
    return doc.get("job_id") is not None and all(e.get("error_code") == HELD for e in doc.get("errors") or [])


def one_round(
    host: str, port: int, path: str, body: str, headers: dict[str, str], jobs: int, concurrency: int
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    out: mp.Queue[tuple[list[float], list[str]]] = ctx.Queue()
    shares = [jobs // concurrency + (1 if i < jobs % concurrency else 0) for i in range(concurrency)]
    procs = [ctx.Process(target=client, args=(host, port, path, body, headers, n, go, out)) for n in shares]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every client imported and connected before the clock starts
    start = time.perf_counter()
    go.set()
    latencies: list[float] = []
    errors: list[str] = []
    for _ in procs:
        lat, errs = out.get()
        latencies += lat
        errors += errs
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    return {
        "per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "ok": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
    }


def slurm_up() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if "UP" not in ping.stdout:
        return False
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(SLURMRESTD) == 0


def find_or_start_slurm() -> str | None:
    """None when Slurm answers (started here if need be); else why not."""
    if slurm_up():
        return None
    script = HERE.parent / "scripts" / "engines" / "slurm.sh"
    if os.geteuid() != 0:
        return "Slurm is not running, and starting it needs root (scripts/engines/slurm.sh start)"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True, check=False, timeout=300)
    if started.returncode != 0 or not slurm_up():
        return f"scripts/engines/slurm.sh start did not bring Slurm up: {started.stderr.strip()[-300:]}"
    return None


def slurm_request(name: str) -> tuple[str, dict[str, str]]:
    token = subprocess.run(
        ["scontrol", "token", "username=root", "lifespan=3600"], capture_output=True, text=True, check=True
    ).stdout.strip()
    headers = {
        "Content-Type": "application/json",
        "X-SLURM-USER-NAME": "root",
        "X-SLURM-USER-TOKEN": token.removeprefix("SLURM_JWT="),
    }
    job = {
        "name": name,
        "current_working_directory": "/tmp",
        "environment": {"PATH": "/usr/bin:/bin"},
        "standard_output": "/dev/null",
        "hold": True,
    }
    return json.dumps({"job": job, "script": "#!/bin/sh\ntrue\n"}), headers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1000, help="submissions per round")
    parser.add_argument("--concurrency", type=int, default=4, help="client processes")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()

    missing = find_or_start_slurm()
    name = f"suanli-bench-{uuid.uuid4().hex[:8]}"
    rounds: dict[str, list[dict[str, Any]]] = {"slurmrestd": [], "suanli": []}
    with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
        host, port = url.removeprefix("http://").split(":")
        suanli = (
            host,
            int(port),
            "/api/v1/jobs",
            json.dumps({"spec": SUANLI_SPEC}),
            {"Content-Type": "application/json", **auth()},
        )
        for number in range(1, args.rounds + 1):
            if missing is None:
                body, headers = slurm_request(name)
                result = one_round(*SLURMRESTD, SLURM_API, body, headers, args.jobs, args.concurrency)
                subprocess.run(["scancel", f"--name={name}"], check=False)
                rounds["slurmrestd"].append(result)
                print(f"round {number} slurmrestd: {json.dumps(result)}", flush=True)
            result = one_round(*suanli, args.jobs, args.concurrency)
            rounds["suanli"].append(result)
            print(f"round {number} suanli:     {json.dumps(result)}", flush=True)
    summary: dict[str, Any] = {
        "suanli_per_s": statistics.median(r["per_s"] for r in rounds["suanli"]),
        "suanli_p99_ms": statistics.median(r["p99_ms"] for r in rounds["suanli"]),
    }
    if missing is None:
        slurm_per_s = statistics.median(r["per_s"] for r in rounds["slurmrestd"])
        summary.update(
            slurmrestd_per_s=slurm_per_s,
            slurmrestd_p99_ms=statistics.median(r["p99_ms"] for r in rounds["slurmrestd"]),
            ratio=round(summary["suanli_per_s"] / slurm_per_s, 2) if slurm_per_s else None,
        )
    else:
        summary.update(slurmrestd_per_s=None, slurmrestd_p99_ms=None, ratio=None, slurm=f"not found: {missing}")
    summary.update(rounds=args.rounds, jobs_per_round=args.jobs, concurrency=args.concurrency)
    errors = sum(r["errors"] for side in rounds.values() for r in side)
    summary["errors"] = errors
    if args.json:
        print(json.dumps(summary))
    else:
        print("bench/submit_vs_slurm.py (medians over the rounds)")
        for key, value in summary.items():
            print(f"  {key:<18} {value}")
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
