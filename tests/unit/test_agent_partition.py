"""An agent cut off from the server past its lease stops its attempts: no job runs twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.core.states import AttemptState
from suanli.sdk import ServerUnreachable
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
