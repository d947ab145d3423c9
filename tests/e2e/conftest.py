"""End-to-end harness: a real ``suanli up --demo`` subprocess and the CLI run as subprocesses.

Everything goes through the public surfaces: the ``suanli`` command line (as
``python -m suanli``) and, only to poll for states without paying a CLI start per poll, the
HTTP API it is built on.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.db_support import database_url_for_test, drop_database

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DEMO_SITES = {"beijing", "tianjin-gaocun", "ningxia"}
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}

#: Variables of the caller's shell that would change what the CLI or the server does.
_SCRUBBED = (
    "SUANLI_SERVER",
    "SUANLI_TOKEN",
    "SUANLI_HOME",
    "SUANLI_DEBUG",
    "SUANLI_MAX_WORKDIR_MB",
    "SUANLI_DATABASE_URL",
    "SUANLI_AGENT_TOKEN",
    "COLUMNS",
    "LINES",
    "FORCE_COLOR",
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({"NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def database_env(url: str | None) -> dict[str, str]:
    """The server's database for SUANLI_TEST_DB=postgres (nothing: SQLite under its home)."""
    return {"SUANLI_DATABASE_URL": url} if url else {}


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), which outgoing connections use
    and could take between this check and the server's bind."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def wait_until(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Call ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)


# -- the CLI ------------------------------------------------------------------------------------


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"suanli {' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )

    def json(self) -> Any:
        assert self.returncode == 0, str(self)
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs ``python -m suanli ...`` against one server."""

    server: str
    #: The network's home: ``suanli up`` saved its admin token there for the local CLI.
    home: Path | None = None
    cwd: Path = REPO

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        home = {"SUANLI_HOME": str(self.home)} if self.home else {}
        return clean_env(SUANLI_SERVER=self.server, **home, **(env or {}))

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "suanli", *args],
            cwd=self.cwd,
            env=self._env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in result.stderr, str(result)
        return result

    def run_many(self, calls: Sequence[Sequence[str]], timeout: float = 60) -> list[Result]:
        """Several independent invocations at once (each CLI start costs a second of CPU)."""
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "suanli", *args],
                cwd=self.cwd,
                env=self._env(None),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in calls
        ]
        results = []
        try:
            for args, proc in zip(calls, procs, strict=True):
                out, err = proc.communicate(timeout=timeout)
                results.append(Result(tuple(args), proc.returncode, out, err))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        for result in results:
            assert "Traceback" not in result.stderr, str(result)
        return results

    def submit(self, spec: Path | str, *more: str) -> dict[str, Any]:
        """``submit SPEC --json``: the job as the server answered."""
        job: dict[str, Any] = self.run("submit", str(spec), "--json", *more).json()
        return job

    def status(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.run("status", job_id, "--json").json()
        return job


# -- the network --------------------------------------------------------------------------------


def job_processes(root: Path) -> list[psutil.Process]:
    """Live processes working under ``root`` (cwd or an argument below it)."""
    prefix = str(root.resolve())
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            cmdline = proc.info["cmdline"] or []
            try:
                cwd = proc.cwd()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cwd = ""
            if cwd == prefix or cwd.startswith(prefix + os.sep) or any(prefix in arg for arg in cmdline):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def still_running(procs: Sequence[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def describe(procs: Sequence[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"{proc.pid}: {' '.join(proc.cmdline())} (cwd {proc.cwd()})")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            lines.append(f"{proc.pid}: <gone>")
    return "\n".join(lines)


@dataclass
class Network:
    """A ``suanli up --demo`` subprocess on its own port and home."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    api: httpx.Client = field(init=False)
    #: The network's PostgreSQL database under SUANLI_TEST_DB=postgres (kept across restarts).
    database_url: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.home / f"up-{self.port}.log"
        self.api = httpx.Client(base_url=self.url, timeout=10)
        if self.database_url is None:
            self.database_url = database_url_for_test()

    def move_to(self, port: int) -> None:
        """Listen on another port from the next start on (the home stays)."""
        assert self.proc is None, "stop the network first"
        self.api.close()
        self.port = port
        self.__post_init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sites_dir(self) -> Path:
        """Where the demo's site agents keep their homes (``agents/<site>``), one process each."""
        return self.home / "demo" / "agents"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "suanli", "up", "--demo", "--port", str(self.port), "--home", str(self.home)],
                cwd=REPO,
                env=clean_env(**database_env(self.database_url)),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until("all three demo sites to come online", self._all_online, timeout, interval=0.1)

    def _all_online(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            pytest.fail(f"suanli up exited with {self.proc.returncode}:\n{self.log()}")
        token_file = self.home / "demo" / "admin.token"
        if token_file.exists():
            self.api.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
        try:
            response = self.api.get("/api/v1/sites", params={"limit": 100})
        except httpx.TransportError:
            return False
        if response.status_code != 200:
            return False
        online = {s["name"] for s in response.json()["items"] if s["online"]}
        return online >= DEMO_SITES

    def stop(self, timeout: float = 45) -> int:
        """Ctrl-C to the process group, as a terminal would; returns the exit status."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"suanli up did not exit within {timeout:g}s of SIGINT:\n{self.log()}")

    def close(self) -> None:
        """Last resort for a failed test: nothing may outlive it."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        for proc in job_processes(self.sites_dir):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.kill()
        self.api.close()
        if self.database_url is not None:
            drop_database(self.database_url)
            self.database_url = None

    # -- polling through the HTTP API ------------------------------------------------------------
    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait_job(
        self,
        job_id: str,
        states: set[str] | str,
        timeout: float = 30,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        wanted = {states} if isinstance(states, str) else states

        def probe() -> dict[str, Any] | None:
            job = self.job(job_id)
            if job["state"] in wanted and (predicate is None or predicate(job)):
                return job
            if job["state"] in TERMINAL and job["state"] not in wanted:
                pytest.fail(f"job {job_id} ended {job['state']} while waiting for {sorted(wanted)}: {job}")
            return None

        found: dict[str, Any] = wait_until(f"job {job_id} to be {sorted(wanted)}", probe, timeout)
        return found

    def cancel_quietly(self, job_id: str) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self.api.post(f"/api/v1/jobs/{job_id}/cancel")

    def attempt_dir(self, job: dict[str, Any]) -> Path:
        attempt = job["attempts"][-1]
        return self.sites_dir / attempt["site"] / "attempts" / str(attempt["id"])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SLEEPER = "name: e2e-sleeper\nresources: {cpus: 1}\nrun: sleep 300\ntime_limit: 10m\n"


def assert_stops_cleanly(net: Network, cli: Cli, tmp: Path) -> None:
    """Leave a job running, Ctrl-C the network, and check it took every job process with it."""
    sleeper = cli.submit(write(tmp / "sleeper.yaml", SLEEPER))
    net.wait_job(sleeper["id"], "RUNNING", timeout=30)
    running = wait_until("the sleeper's processes to show", lambda: job_processes(net.sites_dir), 10)
    assert any("sleep" in " ".join(p.cmdline()) for p in running), describe(running)
    status = net.stop()
    assert status == 0, f"suanli up exited with {status} after SIGINT:\n{net.log()}"
    assert "stopped." in net.log()
    deadline = time.monotonic() + 3  # SIGTERM'd processes get a moment to be reaped
    while (left := job_processes(net.sites_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"job processes outlived 'suanli up':\n{describe(left)}"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """One demo network for the session; on teardown, it must stop cleanly and leave no job behind."""
    net = Network(tmp_path_factory.mktemp("suanli-home"), free_port())
    try:
        net.start()
        yield net
        assert_stops_cleanly(net, Cli(net.url, net.home), tmp_path_factory.mktemp("teardown"))
    finally:
        net.close()


@pytest.fixture(scope="session")
def cli(network: Network) -> Cli:
    return Cli(network.url, network.home)


def job_id_from(stderr: str) -> str:
    """The id in ``Submitted job ID (name): STATE`` (printed on stderr by ``submit --follow``)."""
    match = re.search(r"Submitted job (\S+) \(", stderr)
    assert match, f"no 'Submitted job' line in:\n{stderr}"
    return match.group(1)
