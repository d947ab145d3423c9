"""Fault injection against a real `suanli server` and `suanli agent`s, all subprocesses on loopback.

Scenarios (each with a fresh server, a short lease and its own work dirs):

1. server-kill-9: ``kill -9`` the server N times during a stream of submissions, restarting it
   on the same state each time;
2. agent-kill-9-restart: ``kill -9`` an agent while attempts run, restart it on the same work
   dir (it adopts them); agent-kill-9-gone: the same, the agent never comes back (the server
   declares the attempts lost after the lease and runs them at another site; the orphans stop
   by themselves); agent-dies-staggered: the agent dies for good while 16 jobs of 4 s to 13 s
   run, so that many would end within the lease (each must still complete exactly once);
3. gpu-fault-xid79: under load, site-a's agent (running on a fake NVML, ``SUANLI_FAKE_NVML``)
   sees GPU 3 report XID 79: the node is drained, its attempts run again at site-b;
4. partition: the agent cannot reach the server (a TCP proxy between them is paused) for
   2 x the lease, then can again.

Every job appends a line to ``out/<SUANLI_JOB_ID>`` when it finishes its work, so a job that
completed twice shows as a file of two lines. The table: submitted (requests sent),
acknowledged (answered with an id), completed (acknowledged and SUCCEEDED, with its line
written), lost (acknowledged and not completed by the end), completed twice, and recovery_s:
seconds from the fault until the network is whole again (see ``docs/faults.md``; target:
lease + 5 s, plus the retry back-off where jobs are requeued).

    python bench/faults.py [--quick] [--json] [--lease S] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _harness import free_port
from suanli.agent.recovery import orphan_timeout

NETWORK = """\
regions: [north]
sites:
  - name: site-a
    region: north
    latency_ms: {north: 1}
    nodes: [{name: node-a, gpus: H100:64, cpus: 64, memory: 256}]
  - name: site-b
    region: north
    latency_ms: {north: 1}
    nodes: [{name: node-b, gpus: H100:128, cpus: 128, memory: 512}]
tenants:
  - {name: bench, home_region: north}
scheduling: {retry_backoff: 2s}
"""
#: The network's retry back-off (2 s here, 10 s by default): a job lost with its site waits this
#: long before its retry may be placed, so the recovery targets of those scenarios include it.
RETRY_BACKOFF_S = 2.0
#: Each site's one node: (name, --gpus, --cpus, --memory). Best fit places a job where the least
#: capacity is left over, so jobs go to site-a while it has room; site-b takes them over.
NODES = {"site-a": ("node-a", "H100:64", "64", "256"), "site-b": ("node-b", "H100:128", "128", "512")}


@dataclass
class Row:
    scenario: str
    submitted: int = 0
    acknowledged: int = 0
    completed: int = 0
    lost: int = 0
    completed_twice: int = 0
    recovery_s: float = 0.0
    target_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.completed_twice == 0 and self.recovery_s <= self.target_s


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> float:
    """Seconds until ``check()`` held; raises after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


# -- processes ---------------------------------------------------------------------------------


class Proc:
    """A `suanli ...` subprocess in its own session, its output in a log file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path, self.env = args, log, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "suanli", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env} if self.env else None,
            )

    def kill9(self) -> None:
        """SIGKILL the process itself (its jobs, in their own sessions, are not touched)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill9()


class Proxy:
    """A TCP proxy on 127.0.0.1 (agent → proxy → server). ``pause`` cuts every connection and
    refuses new ones until ``resume``: the agent sees the server as unreachable."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.paused = threading.Event()
        self.closed = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.paused.is_set():
                _reset(conn)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(conn)
                continue
            with self._lock:
                self._pairs.append((conn, upstream))
            threading.Thread(target=self._pump, args=(conn, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self.paused.is_set() and not self.closed.is_set():
                for key, _ in sel.select(timeout=0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            pass
        finally:
            sel.close()
            _reset(a)
            _reset(b)

    def pause(self) -> None:
        self.paused.set()

    def resume(self) -> None:
        self.paused.clear()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


class Network:
    """One server (restartable on the same state and port) and named agents."""

    def __init__(self, root: Path, lease_s: float) -> None:
        self.root, self.lease_s = root, lease_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / "network.yaml").write_text(NETWORK)
        self.out = root / "out"
        self.out.mkdir()
        args = ["server", "--home", str(root / "home"), "--port", str(self.port)]
        args += ["--network", str(root / "network.yaml"), "--lease", f"{lease_s:g}"]
        self.server = Proc(args, root / "server.log")
        self.agents: dict[str, Proc] = {}
        self.proxies: dict[str, Proxy] = {}
        self.http = httpx.Client(base_url=self.url, timeout=10)

    # server
    def start_server(self) -> float:
        started = time.monotonic()
        self.server.start()
        wait_for(self.server_up, 60, "the server to answer")
        token = (self.root / "home" / "admin.token").read_text().strip()
        self.http.headers["Authorization"] = f"Bearer {token}"
        return time.monotonic() - started

    def server_up(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    # agents
    def start_agent(
        self,
        site: str,
        *,
        via_proxy: bool = False,
        health_check: str | None = None,
        fake_nvml: Path | None = None,
        sandboxed: bool = False,
    ) -> None:
        """``fake_nvml``: the agent watches a fake NVML's GPUs, whose state is this JSON file
        (``suanli.agent.fake_nvml``; testing only). ``sandboxed``: jobs run in the local
        backend's sandbox (bench/escape.py); the fault scenarios run them unsandboxed."""
        url = self.url
        if via_proxy:
            proxy = self.proxies.get(site) or Proxy(self.port)
            self.proxies[site] = proxy
            url = f"http://127.0.0.1:{proxy.port}"
        token = self.root / "home" / "tokens" / f"site-{site}.token"
        args = ["agent", "--site", site, "--server", url, "--token-file", str(token)]
        node, gpus, cpus, memory = NODES[site]
        args += ["--work-dir", str(self.root / "agents" / site), "--node-name", node]
        # Unsandboxed: each job's side effect is a line in the bench's out/ folder, which a
        # sandboxed job could not reach. The fence freezes and stops sandboxed ranks alike.
        if not sandboxed:
            config = self.root / f"agent-{site}.yaml"
            config.write_text("local:\n  sandbox: none\n")
            args += ["--config", str(config)]
        args += ["--gpus", gpus, "--cpus", cpus, "--memory", memory]
        if health_check:
            args += ["--health-check", health_check, "--health-interval", "0.5"]
        env = {"SUANLI_FAKE_NVML": str(fake_nvml)} if fake_nvml else None
        proc = self.agents.get(site) or Proc(args, self.root / f"agent-{site}.log", env)
        self.agents[site] = proc
        proc.start()

    def wait_online(self, site: str, timeout: float = 60) -> None:
        def online() -> bool:
            try:
                sites = self.http.get("/api/v1/sites").json()["items"]
            except (httpx.TransportError, ValueError, KeyError):
                return False
            return any(s["name"] == site and s["online"] and s["nodes"] for s in sites)

        wait_for(online, timeout, f"site {site} to come online")

    def supervisors(self, site: str) -> int:
        """Live processes of the site's attempts (their supervisors), counted from /proc."""
        marker = str(self.root / "agents" / site / "attempts").encode()
        count = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"supervisor.py" in cmd and marker in cmd:
                count += 1
        return count

    # jobs
    def spec(self, seconds: float) -> dict[str, Any]:
        work = f"sleep {seconds:g}; " if seconds else ""
        line = '"$SUANLI_ATTEMPT $s $(date +%s.%N)"'  # attempt, start, end: overlaps show
        return {
            "name": "fault",
            "run": f's=$(date +%s.%N); {work}echo {line} >> {self.out}/"$SUANLI_JOB_ID"',
            "resources": {"accelerators": "H100:1", "cpus": 0.5, "memory": 1},
            "max_retries": 5,
        }

    def submit(self, seconds: float) -> str | None:
        """One submission; the id once the server acknowledged it, else None."""
        try:
            r = self.http.post("/api/v1/jobs", json={"spec": self.spec(seconds)}, timeout=10)
        except httpx.TransportError:
            return None
        return str(r.json()["id"]) if r.status_code == 201 else None

    def jobs(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = self.http.get("/api/v1/jobs", params=params, timeout=30).json()
            found.update({j["id"]: j for j in page["items"]})
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def settle(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until every job in ``ids`` has ended (or ``timeout``); returns the server's view."""
        view: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            nonlocal view
            try:
                view = self.jobs()
            except (httpx.TransportError, ValueError):
                return False
            return all(i in view and view[i]["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for i in ids)

        with contextlib.suppress(TimeoutError):
            wait_for(done, timeout, "every job to end", every=0.25)
        return view

    def tally(self, row: Row, ids: list[str], timeout: float) -> Row:
        view = self.settle(ids, timeout)
        runs = {p.name: [line.split() for line in p.read_text().splitlines()] for p in self.out.iterdir()}
        lines = {name: len(spans) for name, spans in runs.items()}
        row.notes["ran_concurrently"] = sum(1 for spans in runs.values() if _overlap(spans))
        row.acknowledged = len(ids)
        row.completed = sum(1 for i in ids if view.get(i, {}).get("state") == "SUCCEEDED" and lines.get(i))
        row.lost = row.acknowledged - row.completed
        row.completed_twice = sum(1 for n in lines.values() if n > 1)
        states: dict[str, int] = {}
        for i in ids:
            state = view.get(i, {}).get("state", "UNKNOWN")
            states[state] = states.get(state, 0) + 1
        row.notes["end_states"] = states
        return row

    def close(self) -> None:
        for proc in self.agents.values():
            proc.stop()
        self.server.stop()
        for proxy in self.proxies.values():
            proxy.close()
        self.http.close()
        # Nothing may outlive the bench: stop what the agents left behind.
        for site in self.agents:
            marker = str(self.root / "agents" / site / "attempts").encode()
            for pid in os.listdir("/proc"):
                with contextlib.suppress(OSError, ValueError):
                    if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                        os.killpg(int(pid), signal.SIGKILL)


def _overlap(spans: list[list[str]]) -> bool:
    """Whether two runs of one job were alive at the same moment (from their start/end times)."""
    times = sorted((float(s[1]), float(s[2])) for s in spans if len(s) == 3)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(times))


@contextlib.contextmanager
def network(lease_s: float, keep: Path | None = None) -> Iterator[Network]:
    with tempfile.TemporaryDirectory(prefix="suanli-faults-") as tmp:
        root = Path(keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        net = Network(root, lease_s)
        try:
            yield net
        finally:
            net.close()


def running_on(net: Network, ids: list[str], site: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            view = net.jobs()
        except (httpx.TransportError, ValueError):
            return False
        return all(view.get(i, {}).get("state") == "RUNNING" and view[i].get("site") == site for i in ids)

    return check


def running_or_done(net: Network, ids: list[str], site: str | None = None) -> Callable[[], bool]:
    def check() -> bool:
        try:
            view = net.jobs()
        except (httpx.TransportError, ValueError):
            return False
        for i in ids:
            job = view.get(i, {})
            if job.get("state") == "SUCCEEDED":
                continue
            if job.get("state") != "RUNNING" or (site is not None and job.get("site") != site):
                return False
        return True

    return check


# -- scenarios ---------------------------------------------------------------------------------


def server_kills(lease_s: float, submissions: int, kills: int, keep: Path | None = None) -> Row:
    row = Row("server-kill-9", target_s=lease_s + 5)
    with network(lease_s, keep) as net:
        net.start_server()
        net.start_agent("site-a")
        net.start_agent("site-b")
        net.wait_online("site-a")
        net.wait_online("site-b")
        ids: list[str] = []
        marks = [round(submissions * (k + 1) / (kills + 1)) for k in range(kills)]
        recoveries: list[float] = []
        down_since: float | None = None
        killed = 0
        while len(ids) < submissions:
            if killed < kills and len(ids) >= marks[killed] and down_since is None:
                net.server.kill9()
                killed += 1
                down_since = time.monotonic()
                net.server.start()  # at once, on the same state: the restart is part of the outage
            row.submitted += 1
            job_id = net.submit(0)
            if job_id is None:
                time.sleep(0.05)
                continue
            ids.append(job_id)
            if down_since is not None:
                recoveries.append(time.monotonic() - down_since)
                down_since = None
        row.recovery_s = round(max(recoveries, default=0.0), 2)
        row.notes["kills"] = killed
        net.tally(row, ids, timeout=120 + submissions / 20)
    return row


def agent_kill(lease_s: float, attempts: int, come_back: bool, keep: Path | None = None) -> Row:
    name = "agent-kill-9-restart" if come_back else "agent-kill-9-gone"
    row = Row(name, target_s=lease_s + 5 + (0 if come_back else RETRY_BACKOFF_S))
    # Restart: still running when the agent is back. Gone: without the orphan watchdog they
    # would finish after the server requeued them, and count twice.
    work_s = orphan_timeout(lease_s) + 3 if come_back else lease_s + 3
    with network(lease_s, keep) as net:
        net.start_server()
        net.start_agent("site-a")
        net.start_agent("site-b")
        net.wait_online("site-a")
        net.wait_online("site-b")
        ids = [i for i in (net.submit(work_s) for _ in range(attempts)) if i]
        row.submitted = attempts
        wait_for(running_on(net, ids, "site-a"), 60, f"{attempts} attempts to run at site-a")
        net.agents["site-a"].kill9()
        killed = time.monotonic()
        if come_back:
            net.start_agent("site-a")
            wait_for(lambda: _heard_since(net, "site-a", killed), 60, "the restarted agent to report")
            row.recovery_s = round(time.monotonic() - killed, 2)
        else:
            wait_for(running_or_done(net, ids, "site-b"), 60, "the attempts to run again at site-b")
            row.recovery_s = round(time.monotonic() - killed, 2)
            row.notes["orphans_left_after_lease"] = net.supervisors("site-a")
        net.tally(row, ids, timeout=60 + 3 * work_s)
        view = {i: net.http.get(f"/api/v1/jobs/{i}").json() for i in ids}
        row.notes["rerun"] = sum(1 for j in view.values() if len(j.get("attempts", [])) > 1)
    return row


def agent_dies_staggered(lease_s: float, jobs: int = 16, keep: Path | None = None) -> Row:
    """The agent is ``kill -9``'ed for good while jobs of staggered lengths run (4 s to 13 s at a
    12 s lease): many of them would end within the orphan timeout. Each must complete exactly
    once, judged by its side effect (its line in ``out/<job id>``), not by the server's view."""
    row = Row("agent-dies-staggered", target_s=lease_s + 5 + RETRY_BACKOFF_S)
    lengths = [round(4 + 9 * k / max(1, jobs - 1), 2) for k in range(jobs)]
    with network(lease_s, keep) as net:
        net.start_server()
        net.start_agent("site-a")
        net.start_agent("site-b")
        net.wait_online("site-a")
        net.wait_online("site-b")
        ids = [i for i in (net.submit(seconds) for seconds in lengths) if i]
        row.submitted = jobs
        wait_for(running_on(net, ids, "site-a"), 60, f"{jobs} attempts to run at site-a")
        net.agents["site-a"].kill9()
        killed = time.monotonic()
        wait_for(running_or_done(net, ids, "site-b"), 60 + 2 * lease_s, "the attempts to run again at site-b")
        row.recovery_s = round(time.monotonic() - killed, 2)
        row.notes["orphans_left_after_lease"] = net.supervisors("site-a")
        net.tally(row, ids, timeout=60 + 3 * max(lengths))
        row.notes["ran_at_the_dead_site"] = sum(
            1 for p in net.out.iterdir() for line in p.read_text().splitlines() if line.split()[:1] == ["1"]
        )
        row.notes["job_lengths_s"] = f"{lengths[0]:g}-{lengths[-1]:g}"
    return row


def _heard_since(net: Network, site: str, since: float) -> bool:
    """The site's agent has reported after ``since`` (monotonic) — judged by a fresh heartbeat
    time on the server, and the restarted agent's log saying it adopted attempts."""
    log = net.agents[site].log_path.read_text(errors="replace")
    if "adopted attempt" not in log:
        return False
    try:
        sites = net.http.get("/api/v1/sites").json()["items"]
    except (httpx.TransportError, ValueError):
        return False
    return any(s["name"] == site and s["online"] for s in sites)


def gpu_fault(lease_s: float, load: int, keep: Path | None = None) -> Row:
    row = Row("gpu-fault-xid79", target_s=lease_s + 5)
    with network(lease_s, keep) as net:
        # site-a's machine has 8 (fake) GPUs; the fault is an XID 79 event on GPU 3.
        nvml = net.root / "nvml.json"
        write_atomically(nvml, json.dumps({"gpus": 8, "xids": []}))
        net.start_server()
        net.start_agent("site-a", fake_nvml=nvml)
        net.start_agent("site-b")
        net.wait_online("site-a")
        net.wait_online("site-b")
        first = [i for i in (net.submit(max(5.0, lease_s / 2)) for _ in range(load)) if i]
        wait_for(running_on(net, first, "site-a"), 60, "the load to run at site-a")
        write_atomically(nvml, json.dumps({"gpus": 8, "xids": [[3, 79]]}))
        faulted = time.monotonic()
        reason: list[str] = []

        def drained() -> bool:
            nodes = net.http.get("/api/v1/nodes").json()["items"]
            reason[:] = [n["reason"] for n in nodes if n["name"] == "node-a" and n["state"] in ("drained", "down")]
            return bool(reason)

        wait_for(drained, 60, "node-a to be drained")
        row.recovery_s = round(time.monotonic() - faulted, 2)
        row.notes["drain_reason"] = reason[0]
        later = [i for i in (net.submit(1) for _ in range(load)) if i]
        row.submitted = 2 * load
        ids = first + later
        view = net.jobs()
        row.notes["running_on_faulty_node"] = sum(
            1 for i in first if view[i]["state"] == "RUNNING" and view[i]["site"] == "site-a"
        )
        net.tally(row, ids, timeout=60 + 8 * lease_s)
        view = net.jobs()
        row.notes["new_jobs_placed_on_faulty_node"] = sum(1 for i in later if view[i].get("site") == "site-a")
    return row


def write_atomically(path: Path, text: str) -> None:
    """So that a reader never sees half a file."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)


def partition(lease_s: float, attempts: int, keep: Path | None = None) -> Row:
    row = Row("partition-2x-lease", target_s=lease_s + RETRY_BACKOFF_S + 5)
    with network(lease_s, keep) as net:
        net.start_server()
        net.start_agent("site-a", via_proxy=True)
        net.start_agent("site-b")
        net.wait_online("site-a")
        net.wait_online("site-b")
        # Without fencing, the cut-off attempts would finish during the partition: twice.
        ids = [i for i in (net.submit(orphan_timeout(lease_s) + 3) for _ in range(attempts)) if i]
        row.submitted = attempts
        wait_for(running_on(net, ids, "site-a"), 60, "the attempts to run at site-a")
        net.proxies["site-a"].pause()
        cut = time.monotonic()
        wait_for(running_or_done(net, ids, "site-b"), 2 * lease_s + 30, "the attempts to run again at site-b")
        row.recovery_s = round(time.monotonic() - cut, 2)
        row.notes["orphans_left_during_partition"] = net.supervisors("site-a")
        time.sleep(max(0.0, cut + 2 * lease_s - time.monotonic()))
        net.proxies["site-a"].resume()
        healed = time.monotonic()
        net.wait_online("site-a")
        row.notes["site_a_back_after_s"] = round(time.monotonic() - healed, 2)
        net.tally(row, ids, timeout=60 + 4 * lease_s)
    return row


# -- the table ---------------------------------------------------------------------------------


def run(quick: bool, lease_s: float, only: list[str] | None = None) -> list[Row]:
    plan: list[tuple[str, Callable[[], Row]]] = [
        ("server", lambda: server_kills(lease_s, 60 if quick else 2000, 2 if quick else 10)),
        ("agent-restart", lambda: agent_kill(lease_s, 20 if quick else 50, come_back=True)),
        ("agent-gone", lambda: agent_kill(lease_s, 20 if quick else 50, come_back=False)),
        ("agent-dies-staggered", lambda: agent_dies_staggered(lease_s, 16)),
        ("gpu", lambda: gpu_fault(lease_s, 8 if quick else 20)),
        ("partition", lambda: partition(lease_s, 10 if quick else 30)),
    ]
    rows = []
    for key, scenario in plan:
        if only and key not in only:
            continue
        started = time.monotonic()
        row = scenario()
        row.notes["wall_s"] = round(time.monotonic() - started, 1)
        rows.append(row)
        print(f"  {row.scenario}: done in {row.notes['wall_s']}s", file=sys.stderr)
    return rows


def table(rows: list[Row]) -> str:
    head = ["scenario", "submitted", "acknowledged", "completed", "lost", "twice", "recovery_s", "target_s", "ok"]
    body = [
        [
            r.scenario,
            str(r.submitted),
            str(r.acknowledged),
            str(r.completed),
            str(r.lost),
            str(r.completed_twice),
            f"{r.recovery_s:.1f}",
            f"{r.target_s:.0f}",
            "yes" if r.ok else "NO",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    lines += [f"  {r.scenario}: {json.dumps(r.notes)}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller version of every scenario (< 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.add_argument("--lease", type=float, help="the server's lease, seconds (default 12)")
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["server", "agent-restart", "agent-gone", "agent-dies-staggered", "gpu", "partition"],
    )
    args = parser.parse_args()
    started = time.monotonic()
    args.lease = args.lease or 12.0
    rows = run(args.quick, args.lease, args.only)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
    else:
        print(f"bench/faults.py{' --quick' if args.quick else ''}: lease {args.lease:g}s, loopback only")
        print(table(rows))
        print(f"total {time.monotonic() - started:.0f}s")
    if not all(r.ok for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
