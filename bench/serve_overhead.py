"""What the front desk's relay costs a request: the shipped test model called directly and
through the front desk (client → front desk → the agent's outbound link → the replica), side by
side in one run.

``suanli up`` runs the server and the bench site's agent as real processes; the service runs
``examples/serve/llm_server.py`` as a replica. The direct calls go to a second process of the
same server with the same arguments, started here, on the loopback. Each side sends the same
requests (streamed chat completions, ``--tokens`` tokens each) from ``--concurrency`` threads,
alternating rounds so both see the same machine load; time to first byte and total time are
measured per request.

    python bench/serve_overhead.py            # 2,000 requests at 4 concurrency per side
    python bench/serve_overhead.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from _harness import HERE, auth, emit, free_port, percentile, suanli_process
from suanli.core.spec import parse_job_spec
from suanli.sdk import Client

SERVER = HERE.parent / "examples" / "serve" / "llm_server.py"


@contextlib.contextmanager
def direct_server() -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, str(SERVER), "--port", str(port), "--model", "tiny-chat", "--replica", "direct"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the direct test server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def one(http: httpx.Client, path: str, body: dict[str, object]) -> tuple[float, float, bool]:
    """(time to first byte, total, ok) of one streamed request, in ms."""
    start = time.perf_counter()
    first = None
    try:
        with http.stream("POST", path, json=body) as r:
            for _chunk in r.iter_raw():
                if first is None:
                    first = time.perf_counter()
            ok = r.status_code == 200
    except httpx.HTTPError:
        return 0.0, 0.0, False
    end = time.perf_counter()
    return ((first or end) - start) * 1000, (end - start) * 1000, ok


def run_side(
    base: str, path: str, headers: dict[str, str], n: int, concurrency: int, tokens: int
) -> list[tuple[float, float, bool]]:
    body = {
        "model": "tiny-chat",
        "messages": [{"role": "user", "content": "how far is the gpu"}],
        "max_tokens": tokens,
        "stream": True,
    }
    clients = [httpx.Client(base_url=base, headers=headers, timeout=60) for _ in range(concurrency)]
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda i: one(clients[i % concurrency], path, body), range(n)))
    finally:
        for c in clients:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per side")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens per request")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="suanli-serve-bench-") as tmp:
        workdir = Path(tmp) / "model"
        workdir.mkdir()
        shutil.copy(SERVER, workdir / "llm_server.py")
        spec = parse_job_spec(
            f"name: tiny-chat\nrun: exec {sys.executable} llm_server.py --model tiny-chat\n"
            "service: {port: 8000, replicas: 1, readiness_probe: {path: /health, timeout: 60}}\n"
        )
        with suanli_process(["up", "--network", str(HERE / "network.yaml")]) as url, direct_server() as direct:
            with Client(url, token=os.environ.get("SUANLI_TOKEN")) as client:
                client.serve(spec, workdir=workdir)
                deadline = time.monotonic() + 120
                while client.service("tiny-chat").ready < 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the service's replica did not become ready")
                    time.sleep(0.2)
            per_round = max(1, args.requests // args.rounds)
            sides: dict[str, list[tuple[float, float, bool]]] = {"direct": [], "relay": []}
            run_side(direct, "/v1/chat/completions", {}, 20, args.concurrency, args.tokens)  # warm both
            run_side(url, "/v1/chat/completions", auth(), 20, args.concurrency, args.tokens)
            for _ in range(args.rounds):
                sides["direct"] += run_side(
                    direct, "/v1/chat/completions", {}, per_round, args.concurrency, args.tokens
                )
                sides["relay"] += run_side(
                    url, "/v1/chat/completions", auth(), per_round, args.concurrency, args.tokens
                )
    result: dict[str, float | int | str] = {
        "requests_per_side": per_round * args.rounds,
        "concurrency": args.concurrency,
    }
    for name, rows in sides.items():
        good = [r for r in rows if r[2]]
        result[f"{name}_failed"] = len(rows) - len(good)
        for i, what in ((0, "ttfb"), (1, "total")):
            values = [r[i] for r in good]
            result[f"{name}_{what}_p50_ms"] = round(percentile(values, 0.5), 2)
            result[f"{name}_{what}_p99_ms"] = round(percentile(values, 0.99), 2)
    result["relay_overhead_p50_ms"] = round(
        float(result["relay_total_p50_ms"]) - float(result["direct_total_p50_ms"]), 2
    )
    result["relay_overhead_ttfb_p50_ms"] = round(
        float(result["relay_ttfb_p50_ms"]) - float(result["direct_ttfb_p50_ms"]), 2
    )
    result["failed"] = int(result["direct_failed"]) + int(result["relay_failed"])
    emit(result, args.json, "The test model called directly and through the front desk's relay (streamed)")


if __name__ == "__main__":
    main()
