"""An agent cut off from the server past its lease stops its attempts: no job runs twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.core.states import AttemptState
from suanli.sdk import ApiError, ServerUnreachable
from tests.unit.test_agent_loop import FakeClient, assignment, reply


class PartitionedClient(FakeClient):
    """Answers normally until ``cut`` is set, then the server is out of reach."""

    def __init__(self) -> None:
        super().__init__()
        self.cut = threading.Event()

    def agent_register(self, request):  # type: ignore[no-untyped-def]
        answer = super().agent_register(request)
        return answer.model_copy(update={"lease_s": 0.3})  # a short lease, so the test is quick

    def agent_heartbeat(self, request):  # type: ignore[no-untyped-def]
        if self.cut.is_set():
            raise ServerUnreachable("connection refused")
        return super().agent_heartbeat(request)


def run_until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_attempts_stop_after_the_lease_without_the_server(tmp_path: Path) -> None:
    client = PartitionedClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a", heartbeat_s=0.05, poll_s=0.01, max_backoff_s=0.05)
    client.replies.append(reply(start=[assignment(1)]))
    agent.register()
    agent.step()
    assert backend.attempts[1].state == AttemptState.RUNNING
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    try:
        client.cut.set()
        run_until(lambda: backend.cancels)
        assert backend.cancels[0][0] == 1
        client.cut.clear()
        # Back in touch: the attempt is reported LOST (the platform lost it), not cancelled.
        run_until(lambda: any(r.state == AttemptState.LOST for h in client.heartbeats for r in h.attempts))
        lost = next(r for h in client.heartbeats for r in h.attempts if r.state == AttemptState.LOST)
        assert "lost the server" in lost.message
    finally:
        stop.set()
        thread.join(timeout=10)


def test_stop_on_partition_can_be_turned_off(tmp_path: Path) -> None:
    client = PartitionedClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a", stop_on_partition=False)
    client.replies.append(reply(start=[assignment(1)]))
    agent.register()
    agent.step()
    agent._lease_s = 0.01
    agent._lost_server(ServerUnreachable("x"))
    time.sleep(0.05)
    agent._fence_if_partitioned()
    assert backend.cancels == []


class FailingClient(PartitionedClient):
    """Reachable, but once ``cut`` is set every heartbeat is answered with an error: no lease
    is renewed, though the server is not out of reach."""

    def agent_heartbeat(self, request):  # type: ignore[no-untyped-def]
        if self.cut.is_set():
            raise ApiError(503, "Service Unavailable", "the database is locked")
        return FakeClient.agent_heartbeat(self, request)


def test_attempts_stop_when_heartbeats_are_refused_past_the_lease(tmp_path: Path) -> None:
    client = FailingClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a", heartbeat_s=0.05, poll_s=0.01, max_backoff_s=0.05)
    client.replies.append(reply(start=[assignment(1)]))
    agent.register()
    agent.step()
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    try:
        client.cut.set()
        cut = time.monotonic()
        run_until(lambda: backend.cancels)
        assert backend.cancels[0][0] == 1
        assert time.monotonic() - cut < 0.3  # the lease: stopped before the server may requeue
    finally:
        stop.set()
        thread.join(timeout=10)


def test_the_fence_counts_from_when_the_renewing_heartbeat_was_sent(tmp_path: Path) -> None:
    """A held long poll is answered late; the server renewed the lease when it took the request."""

    class SlowClient(FakeClient):
        def agent_heartbeat(self, request):  # type: ignore[no-untyped-def]
            time.sleep(0.2)
            return super().agent_heartbeat(request)

    client = SlowClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a")
    client.replies.append(reply(start=[assignment(1)]))
    agent.register()
    sent = time.monotonic()
    agent.step()
    assert agent._last_ok is not None
    assert agent._last_ok - sent < 0.1  # not the answer's time, 0.2 s later
