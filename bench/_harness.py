"""Shared plumbing for the benchmarks: start suanli as a real subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from suanli.launch.postgres import LocalPostgres

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def healthy(url: str) -> bool:
    """Whether a suanli server answers /healthz at ``url`` now."""
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def private_postgres(prefix: str, *, keep: bool = False) -> Iterator[tuple[Path, LocalPostgres]]:
    """A folder and a private PostgreSQL cluster in ``<folder>/pg``, started; both gone afterwards
    (the folder stays with ``keep``, for its logs)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)  # PostgreSQL (another user, when we are root) passes through to its folder
    pg = LocalPostgres(root / "pg")
    pg.init()
    pg.start()
    try:
        yield root, pg
    finally:
        pg.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _server_env() -> dict[str, str]:
    """The benchmarks measure the server, not its per-token rate limit: off unless set."""
    return {**os.environ, "SUANLI_RATE_LIMIT": os.environ.get("SUANLI_RATE_LIMIT", "0")}


@contextlib.contextmanager
def suanli_process(args: list[str], *, home: Path | None = None, ready_timeout: float = 60) -> Iterator[str]:
    """Run ``suanli ARGS --home H --port P`` and yield its URL once /healthz answers."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="suanli-bench-") as tmp:
        state = home or Path(tmp)
        log = (Path(tmp) / "server.log").open("wb")
        cmd = [sys.executable, "-m", "suanli", *args, "--home", str(state), "--port", str(port)]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_server_env())
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    log.flush()
                    raise RuntimeError(f"suanli exited early:\n{(Path(tmp) / 'server.log').read_text()}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("suanli did not become ready")
                time.sleep(0.05)
            adopt_admin_token(state)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def adopt_admin_token(state: Path) -> None:
    """Use the admin token the server wrote (``suanli up --demo`` keeps its state in demo/):
    exported as SUANLI_TOKEN, so client processes started from here inherit it."""
    for candidate in (state / "admin.token", state / "demo" / "admin.token"):
        if candidate.exists():
            os.environ["SUANLI_TOKEN"] = candidate.read_text().strip()
            return
    raise RuntimeError(f"the server wrote no admin token under {state}")


def auth() -> dict[str, str]:
    """Authorization header for the benchmark's requests (see :func:`suanli_process`)."""
    token = os.environ.get("SUANLI_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def emit(result: dict[str, float | int | str], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(title)
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")
