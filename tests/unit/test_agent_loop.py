"""The agent against a fake client: step() tick by tick, then run_forever with its two threads."""

from __future__ import annotations

import io
import logging
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from suanli.agent import Agent
from suanli.agent.backends import FakeBackend, LocalBackend
from suanli.core.protocol import (
    AssignedNode,
    AttemptAssignment,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    StopOrder,
)
from suanli.core.states import AttemptState
from suanli.sdk import ApiError, ServerUnreachable

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def reply(
    start: list[AttemptAssignment] | None = None, stop: list[StopOrder] | None = None, forget: list[int] | None = None
) -> HeartbeatResponse:
    return HeartbeatResponse(start=start or [], stop=stop or [], forget=forget or [], lease_s=30, server_time=NOW)


class FakeClient:
    """The three methods of suanli.sdk.Client the agent uses; replies and failures are queued."""

    def __init__(self, archives: dict[str, bytes] | None = None) -> None:
        self.archives = archives or {}
        self.registrations: list[RegisterRequest] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.downloads: list[str] = []
        self.replies: deque[HeartbeatResponse | Exception] = deque()
        self.register_failures: deque[Exception] = deque()
        self.download_failures: deque[Exception] = deque()
        self.lock = threading.Lock()

    def agent_register(self, request: RegisterRequest) -> RegisterResponse:
        with self.lock:
            if self.register_failures:
                raise self.register_failures.popleft()
            self.registrations.append(request)
        return RegisterResponse(site=request.site, lease_s=30, heartbeat_s=2, server_time=NOW)

    def agent_heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        with self.lock:
            self.heartbeats.append(request)
            answer = self.replies.popleft() if self.replies else reply()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def download_workdir(self, digest: str, dest: IO[bytes]) -> int:
        with self.lock:
            if self.download_failures:
                raise self.download_failures.popleft()
            self.downloads.append(digest)
        if digest not in self.archives:
            raise ApiError(404, "Not Found", f"no workdir {digest}")
        dest.write(self.archives[digest])
        return len(self.archives[digest])

    def sent(self) -> list[HeartbeatRequest]:
        with self.lock:
            return list(self.heartbeats)


def assignment(attempt_id: int = 1, digest: str | None = None, run: str = "python train.py") -> AttemptAssignment:
    return AttemptAssignment(
        attempt_id=attempt_id,
        fencing_token=7,
        job_id="job-1",
        job_name="llama-ft",
        attempt_number=1,
        run=run,
        workdir_digest=digest,
        nodes=[AssignedNode(node="fake-0", rank=0)],
    )


def states(request: HeartbeatRequest) -> dict[int, AttemptState]:
    return {r.attempt_id: r.state for r in request.attempts}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def agent(client: FakeClient, backend: FakeBackend, tmp_path: Path) -> Agent:
    return Agent(client, "tianjin-gaocun", backend, tmp_path / "agent", agent_id="agent-1")


def test_register_sends_the_inventory(agent: Agent, client: FakeClient) -> None:
    agent.register()
    [request] = client.registrations
    assert (request.site, request.agent_id, request.backend) == ("tianjin-gaocun", "agent-1", "fake")
    assert [n.name for n in request.nodes] == ["fake-0"]


def test_agent_id_is_kept_across_restarts(client: FakeClient, backend: FakeBackend, tmp_path: Path) -> None:
    first = Agent(client, "s", backend, tmp_path / "agent")
    second = Agent(client, "s", backend, tmp_path / "agent")
    assert first.agent_id == second.agent_id


def test_assignment_runs_is_reported_then_forgotten(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.append(reply(start=[assignment(1)]))
    first = agent.step()
    assert first.start
    assert [a.attempt_id for a in backend.started] == [1]
    assert client.heartbeats[0].nodes is not None, "step() sends the inventory"

    agent.step()
    assert states(client.heartbeats[-1]) == {1: AttemptState.RUNNING}

    backend.emit(1, "epoch 1\n")
    backend.finish(1, 0)
    agent.step()  # the output goes first; the end waits until the server has it
    last = client.heartbeats[-1]
    assert [(c.attempt_id, c.offset, c.data) for c in last.logs] == [(1, 0, "epoch 1\n")]
    assert states(last) == {1: AttemptState.RUNNING}
    assert backend.forgotten == []

    agent.step()
    [report] = client.heartbeats[-1].attempts
    assert (report.state, report.exit_code, report.fencing_token) == (AttemptState.SUCCEEDED, 0, 7)
    assert backend.forgotten == [1]

    agent.step()
    assert client.heartbeats[-1].attempts == []


def test_a_job_that_ends_before_the_first_poll_is_metered_from_its_start(
    agent: Agent, client: FakeClient, backend: FakeBackend
) -> None:
    client.replies.append(reply(start=[assignment(1)]))
    agent.step()
    backend.finish(1, 0)  # over before the agent ever polled it
    time.sleep(0.05)
    for _ in range(3):
        agent.step()
    ended = [r for h in client.heartbeats for r in h.attempts if r.state == AttemptState.SUCCEEDED]
    assert ended
    assert ended[-1].elapsed_s is not None
    assert ended[-1].elapsed_s >= 0.05


def test_a_failed_heartbeat_sends_everything_again(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.append(reply(start=[assignment(1)]))
    agent.step()
    backend.emit(1, "last words\n")
    backend.finish(1, 3)
    client.replies.append(ServerUnreachable("cannot reach the suanli server"))
    with pytest.raises(ServerUnreachable):
        agent.step()
    agent.step()  # the same chunk again, same offset
    assert [(c.offset, c.data) for c in client.heartbeats[-1].logs] == [(0, "last words\n")]
    client.replies.append(ApiError(503, "Service Unavailable"))
    with pytest.raises(ApiError):
        agent.step()  # the end is not delivered ...
    assert backend.forgotten == []
    agent.step()  # ... until a heartbeat carrying it is accepted
    [report] = client.heartbeats[-1].attempts
    assert (report.state, report.exit_code, report.message) == (AttemptState.FAILED, 3, "run exited with code 3")
    assert backend.forgotten == [1]


def test_stop_order_cancels_with_its_grace(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.append(reply(start=[assignment(1)]))
    agent.step()
    client.replies.append(reply(stop=[StopOrder(attempt_id=1, reason="cancelled by user", grace_s=5)]))
    agent.step()
    assert backend.cancels == [(1, 5)]
    agent.step()
    assert states(client.heartbeats[-1]) == {1: AttemptState.CANCELLED}
    assert backend.forgotten == [1]


def test_forget_ids_are_dropped(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.extend([reply(start=[assignment(1), assignment(2)]), reply(forget=[2])])
    agent.step()
    agent.step()
    assert backend.forgotten == [2]
    agent.step()
    assert states(client.heartbeats[-1]) == {1: AttemptState.RUNNING}


def test_repeated_assignment_starts_once(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.extend([reply(start=[assignment(1)]), reply(start=[assignment(1)])])
    agent.step()
    agent.step()
    assert len(backend.started) == 1


def test_workdir_is_downloaded_once_per_digest(backend: FakeBackend, tmp_path: Path) -> None:
    client = FakeClient(archives={"sha256-abc": b"archive bytes"})
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a")
    client.replies.append(reply(start=[assignment(1, "sha256-abc"), assignment(2, "sha256-abc")]))
    agent.step()
    assert client.downloads == ["sha256-abc"]
    archive = tmp_path / "agent" / "archives" / "sha256-abc.tar.gz"
    assert [backend.attempts[i].archive for i in (1, 2)] == [archive, archive]
    assert archive.read_bytes() == b"archive bytes"
    assert list(archive.parent.iterdir()) == [archive], "no partial download is left behind"


def test_missing_workdir_fails_the_attempt(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.append(reply(start=[assignment(1, "sha256-gone")]))
    agent.step()
    assert backend.started == []
    agent.step()
    [report] = client.heartbeats[-1].attempts
    assert report.state is AttemptState.FAILED
    assert report.message == "cannot fetch the workdir archive sha256-gone: no workdir sha256-gone"
    agent.step()
    assert client.heartbeats[-1].attempts == []


def test_workdir_download_is_retried_while_the_server_is_away(backend: FakeBackend, tmp_path: Path) -> None:
    client = FakeClient(archives={"d1": b"x"})
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a")
    client.download_failures.append(ServerUnreachable("connection refused"))
    client.replies.append(reply(start=[assignment(1, "d1")]))
    agent.step()
    assert backend.started == []
    agent.step()  # retried at the start of the cycle; reported as STARTING until then
    assert [a.attempt_id for a in backend.started] == [1]


def test_stop_before_the_workdir_arrived(backend: FakeBackend, tmp_path: Path) -> None:
    client = FakeClient(archives={"d1": b"x"})
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a")
    client.download_failures.extend([ServerUnreachable("connection refused")] * 2)
    client.replies.extend([reply(start=[assignment(1, "d1")]), reply(stop=[StopOrder(attempt_id=1, reason="user")])])
    agent.step()
    agent.step()
    assert states(client.heartbeats[-1]) == {1: AttemptState.STARTING}
    agent.step()
    assert states(client.heartbeats[-1]) == {1: AttemptState.CANCELLED}
    assert backend.started == []


def test_shutdown_can_stop_every_attempt(agent: Agent, client: FakeClient, backend: FakeBackend) -> None:
    client.replies.append(reply(start=[assignment(1), assignment(2)]))
    agent.step()
    agent.shutdown(cancel_running=False)
    assert backend.cancels == []
    agent.shutdown(cancel_running=True, grace_s=3)
    assert sorted(backend.cancels) == [(1, 3), (2, 3)]
    # Stopped by the agent's own shutdown, not by a user: reported LOST so the server requeues them.
    last = client.heartbeats[-1]
    assert states(last) == {1: AttemptState.LOST, 2: AttemptState.LOST}
    assert all("shut down" in r.message for r in last.attempts)


def test_a_real_job_through_the_local_backend(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        script = b"print('training on', open('data.txt').read().strip())\n"
        for name, data in {"train.py": script, "data.txt": b"notes\n"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    client = FakeClient(archives={"d1": buf.getvalue()})
    backend = LocalBackend(tmp_path / "site", kill_grace_s=0.5)
    agent = Agent(client, "s", backend, tmp_path / "site", agent_id="a")
    client.replies.append(reply(start=[assignment(1, "d1")]))
    try:
        agent.step()
        wait_until(lambda: agent.step() is not None and backend.poll() == [], "the job to end and be forgotten")
    finally:
        backend.stop_all(grace_s=0.1)
    sent = client.sent()
    assert "".join(c.data for h in sent for c in h.logs) == "training on notes\n"
    assert states(sent[-1]) == {1: AttemptState.SUCCEEDED}
    assert not (tmp_path / "site" / "attempts" / "1").exists()


# -- run_forever --------------------------------------------------------------------------------


@pytest.fixture
def running(agent: Agent) -> Iterator[tuple[Agent, threading.Event]]:
    """The agent in run_forever on a thread (fast intervals); stopped and joined afterwards."""
    agent.heartbeat_s, agent.poll_s, agent.max_backoff_s = 0.05, 0.01, 0.1
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    yield agent, stop
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_run_forever_retries_registration(
    client: FakeClient, backend: FakeBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client.register_failures.extend([ServerUnreachable("cannot reach the suanli server"), ApiError(502, "Bad Gateway")])
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a", heartbeat_s=0.05, max_backoff_s=0.1)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    with caplog.at_level(logging.WARNING, logger="suanli.agent"):
        thread.start()
        wait_until(lambda: len(client.sent()) > 0, "the first heartbeat")
    stop.set()
    thread.join(timeout=10)
    assert len(client.registrations) == 1
    assert "cannot register" in caplog.text
    assert "cannot reach the suanli server" in caplog.text


def test_run_forever_refuses_a_rejected_registration(client: FakeClient, agent: Agent) -> None:
    client.register_failures.append(ApiError(401, "Unauthorized", "the site token is not valid"))
    with pytest.raises(ApiError, match="site token"):
        agent.run_forever(threading.Event())


def test_run_forever_reports_promptly_and_reregisters(
    running: tuple[Agent, threading.Event], client: FakeClient, backend: FakeBackend
) -> None:
    client.replies.append(reply(start=[assignment(1)]))
    wait_until(lambda: 1 in backend.attempts, "the assignment to start")
    backend.emit(1, "hello\n")
    backend.finish(1, 0)
    wait_until(lambda: backend.forgotten == [1], "the end to be delivered")
    sent = client.sent()
    assert any(c.data == "hello\n" for h in sent for c in h.logs)
    assert any(states(h) == {1: AttemptState.SUCCEEDED} for h in sent)
    long_polls = [h for h in sent if h.nodes is not None]
    reports = [h for h in sent if h.nodes is None]
    assert long_polls
    assert all(h.wait_s == pytest.approx(0.05) and h.logs == [] for h in long_polls)
    assert reports
    assert all(h.wait_s == 0 for h in reports)

    with client.lock:
        client.replies.extend([ApiError(404, "Not Found", "unknown agent")] * 2)
    wait_until(lambda: len(client.registrations) >= 2, "registering again")


def test_run_forever_survives_the_server_going_away(
    running: tuple[Agent, threading.Event], client: FakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="suanli.agent"):
        wait_until(lambda: len(client.sent()) >= 1, "a heartbeat")
        with client.lock:
            client.replies.extend([ServerUnreachable("connection refused")] * 3)
        wait_until(lambda: not client.replies and "the server is back" in caplog.text, "the server to come back")
    assert "lost the server" in caplog.text
