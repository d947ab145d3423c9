"""Durable submissions per second through the HTTP API against SQLite, with p50/p99 latency.

Starts `suanli server` as a subprocess (SQLite in WAL mode, scheduler loop running), then
submits N trivial jobs from C concurrent client processes. A submission counts when the server has
answered 201 with an id, which it does only after the commit. At the end every id is read back.

    python bench/submit.py [--jobs 2000] [--concurrency 8] [--idempotency-keys] [--json]
    python bench/submit.py --array 10000 [--json]
    python bench/submit.py --db postgres [--replicas 3] [--json]

``--idempotency-keys`` sends a fresh ``Idempotency-Key`` with every submission, as the SDK and
the CLI do (the key is written in the job's transaction).

``--db postgres`` runs the same load twice in one run: against one server on SQLite, then
against ``--replicas`` servers on one private PostgreSQL cluster (``suanli.launch.postgres``),
the client processes spread over the replicas, and prints both sets of figures.

``--array N`` times one job array of N tasks (``array: 0-(N-1)``): one request, answered 201
only after every task is committed, then read back (the array's task count by state). In the
same run, when a Slurm controller answers (``scripts/engines/slurm.sh start``), it times
``sbatch --array=0-(N-1) --hold --wrap true`` (held, so the bench leaves the machine idle; the
array is cancelled after), and says so when Slurm is not found.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from _harness import (
    HERE,
    adopt_admin_token,
    auth,
    emit,
    free_port,
    healthy,
    percentile,
    private_postgres,
    suanli_process,
)
from faults import Proc, wait_for

SPEC = {"name": "bench", "run": "true", "resources": {"cpus": 1}}


def client_process(url: str, count: int, go: Any, results: Any, keys: bool = False) -> None:
    """One client: a keep-alive HTTP/1.1 connection (the standard library's, which costs the
    client far less CPU than a full-featured client, so the figure is the server's)."""
    latencies: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"spec": SPEC})
    headers = {"Content-Type": "application/json", **auth()}
    conn.request("GET", "/healthz")
    conn.getresponse().read()  # connected before the clock starts
    go.wait()
    for _ in range(count):
        if keys:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        t0 = time.perf_counter()
        conn.request("POST", "/api/v1/jobs", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        dt = time.perf_counter() - t0
        if response.status == 201:
            latencies.append(dt)
            ids.append(json.loads(data)["id"])
        else:
            errors.append(f"{response.status} {data[:200]!r}")
    conn.close()
    results.put((latencies, ids, errors))


def submit_array(url: str, tasks: int) -> dict[str, float | int | str]:
    """One array of ``tasks`` tasks through the API: seconds to its 201, then read back."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Content-Type": "application/json", **auth()}
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    body = json.dumps({"spec": {**SPEC, "array": f"0-{tasks - 1}"}})
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/jobs", body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    wall = time.perf_counter() - t0
    if response.status != 201:
        raise SystemExit(f"the array was refused: {response.status} {data[:300]!r}")
    array_id = json.loads(data)["id"]
    conn.request("GET", f"/api/v1/jobs/{array_id}", headers=headers)
    shown = json.loads(conn.getresponse().read())
    conn.close()
    stored = sum(shown["array"]["counts"].values())
    return {"suanli_array_s": round(wall, 3), "suanli_tasks_stored": stored}


def sbatch_array(tasks: int) -> dict[str, float | int | str]:
    """``sbatch --array`` of ``tasks`` held tasks, timed, when a Slurm controller answers."""
    if shutil.which("sbatch") is None:
        return {"slurm": "not found: no sbatch on PATH"}
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, check=False)
    if "UP" not in ping.stdout:
        return {"slurm": "not found: no slurmctld answers (scripts/engines/slurm.sh start)"}
    cmd = ["sbatch", "--parsable", f"--array=0-{tasks - 1}", "--hold", "--output=/dev/null", "--wrap", "true"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        return {"slurm": f"sbatch refused the array: {done.stderr.strip()}"}
    job = done.stdout.strip().split(";")[0]
    subprocess.run(["scancel", job], check=False)
    version = subprocess.run(["sbatch", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"sbatch_array_s": round(wall, 3), "slurm": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4, help="client processes")
    parser.add_argument("--idempotency-keys", action="store_true", help="a fresh Idempotency-Key per submission")
    parser.add_argument("--array", type=int, metavar="N", help="time one job array of N tasks instead")
    parser.add_argument(
        "--db", choices=["sqlite", "postgres"], default="sqlite", help="postgres: SQLite's figures beside replicas'"
    )
    parser.add_argument("--replicas", type=int, default=3, help="servers on the one PostgreSQL (--db postgres)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.array:
        with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
            result = {"tasks": args.array, **submit_array(url, args.array)}
        result.update(sbatch_array(args.array))
        emit(result, args.json, f"bench/submit.py --array {args.array}: one array, durable (201 after commit)")
        if result["suanli_tasks_stored"] != args.array:
            raise SystemExit(1)
        return

    if args.db == "sqlite":
        with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
            result, errors = measure([url], args)
        emit(result, args.json, f"bench/submit.py: {args.jobs} submissions, {args.concurrency} clients, SQLite (WAL)")
    else:
        # Side by side in one run: one server on SQLite, then --replicas servers on one PostgreSQL.
        with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
            sqlite, errors = measure([url], args)
        with postgres_replicas(args.replicas) as urls:
            pg, pg_errors = measure(urls, args)
        errors += pg_errors
        result = {f"sqlite_{k}": v for k, v in sqlite.items() if k not in ("concurrency", "idempotency_keys")}
        result.update({f"postgres_{k}": v for k, v in pg.items() if k not in ("concurrency", "idempotency_keys")})
        result.update({"replicas": args.replicas, "concurrency": args.concurrency})
        title = f"bench/submit.py: {args.jobs} submissions, {args.concurrency} clients, SQLite beside PostgreSQL"
        emit(result, args.json, f"{title} with {args.replicas} replicas")
    if errors:
        print("first error:", errors[0])
    if errors or any(k.endswith("missing_after") and v for k, v in result.items()):
        raise SystemExit(1)


def measure(urls: list[str], args: argparse.Namespace) -> tuple[dict[str, float | int | str], list[str]]:
    """Submit ``args.jobs`` from ``args.concurrency`` client processes, client i to
    ``urls[i % len(urls)]``; then read every id back from the first server."""
    # Clients are separate processes, as real users are: one Python process would measure
    # its own GIL rather than the server.
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    results: mp.Queue[tuple[list[float], list[str], list[str]]] = ctx.Queue()
    shares = [
        args.jobs // args.concurrency + (1 if i < args.jobs % args.concurrency else 0) for i in range(args.concurrency)
    ]
    procs = [
        ctx.Process(target=client_process, args=(urls[i % len(urls)], n, go, results, args.idempotency_keys))
        for i, n in enumerate(shares)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every client import and connect
    start = time.perf_counter()
    go.set()
    latencies: list[float] = []
    ids: list[str] = []
    errors: list[str] = []
    for _ in procs:
        lat, got, errs = results.get()
        latencies += lat
        ids += got
        errors += errs
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    with httpx.Client(base_url=urls[0], timeout=60, headers=auth()) as client:
        found: set[str] = set()
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/jobs", params=params).json()
            found.update(j["id"] for j in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    result: dict[str, float | int | str] = {
        "submits_per_s": round(len(ids) / wall, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "jobs": len(ids),
        "errors": len(errors),
        "missing_after": len(set(ids) - found),
        "concurrency": args.concurrency,
        "idempotency_keys": args.idempotency_keys,
        "wall_s": round(wall, 3),
    }
    return result, errors


@contextlib.contextmanager
def postgres_replicas(count: int) -> Iterator[list[str]]:
    """A private PostgreSQL cluster and ``count`` servers on it sharing one home; their URLs."""
    with private_postgres("suanli-bench-pg-") as (root, pg):
        env = {"SUANLI_RATE_LIMIT": "0", "SUANLI_DATABASE_URL": pg.create_database("suanli")}
        procs: list[Proc] = []
        try:
            for i in range(count):
                port = free_port()
                args = ["server", "--network", str(HERE / "network.yaml"), "--home", str(root / "home")]
                procs.append(Proc([*args, "--port", str(port)], root / f"server-{i}.log", env))
                procs[-1].start()
                wait_for(lambda p=port: healthy(f"http://127.0.0.1:{p}"), 60, f"replica {i} to answer")
            adopt_admin_token(root / "home")
            yield [f"http://127.0.0.1:{p.args[-1]}" for p in procs]
        finally:
            for proc in procs:
                proc.stop()


if __name__ == "__main__":
    main()
