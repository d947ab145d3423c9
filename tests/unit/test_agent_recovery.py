"""The agent's side of recovery: the partition fence counts from the last accepted heartbeat,
retries come often enough, and accepted log offsets reach a Recoverable backend."""

from __future__ import annotations

import time
from pathlib import Path

from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.agent.backends.local import LocalBackend
from suanli.core.states import AttemptState
from suanli.sdk import ServerUnreachable
from tests.unit.test_agent_loop import FakeClient, assignment, reply
from tests.unit.test_local_backend import wait_until


def test_the_fence_counts_from_the_last_accepted_heartbeat(tmp_path: Path) -> None:
    client = FakeClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a")
    client.replies.append(reply(start=[assignment(1)]))
    agent.register()
    agent.step()
    agent._lost_server(ServerUnreachable("x"))  # the first failure is now ...
    agent._fence_if_partitioned()
    assert backend.cancels == []  # ... and the last heartbeat was accepted just now
    agent._last_ok = time.monotonic() - 25  # but silence began 25 s ago: past 24 s (lease 30)
    agent._fence_if_partitioned()
    assert [c[0] for c in backend.cancels] == [1]


def test_retries_come_at_least_four_times_a_lease(tmp_path: Path) -> None:
    agent = Agent(FakeClient(), "s", FakeBackend(), tmp_path, agent_id="a")
    assert agent._capped(30.0) == 7.5  # before registering: the default 30 s lease
    agent._lease_s = 8.0
    assert agent._capped(30.0) == 2.0
    assert agent._capped(0.5) == 0.5
    agent._lease_s = 2.0
    assert agent._capped(30.0) == 1.0


def test_accepted_output_is_remembered_for_a_restart(tmp_path: Path) -> None:
    client = FakeClient()
    backend = LocalBackend(tmp_path)
    try:
        agent = Agent(client, "s", backend, tmp_path, agent_id="a")
        client.replies.append(reply(start=[assignment(1, run="echo hello; exec sleep 60")]))
        agent.register()
        agent.step()

        def sent_hello() -> bool:
            agent.step()
            return any(c.data == "hello\n" for h in client.heartbeats for c in h.logs)

        wait_until(sent_hello, "the output to be sent")
        record = (tmp_path / "attempts" / "1" / "attempt.json").read_text()
        assert '"accepted": 6' in record
        assert backend.poll()[0].state is AttemptState.RUNNING
    finally:
        backend.stop_all(grace_s=0.1, timeout_s=5)
