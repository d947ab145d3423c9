"""The agent's side of recovery: the partition fence counts from the last accepted heartbeat,
retries come often enough, and accepted log offsets reach a Recoverable backend."""

from __future__ import annotations

import time
from pathlib import Path

from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.agent.backends.local import LocalBackend
from suanli.agent.recovery import liveness_text
from suanli.core.states import AttemptState
from suanli.sdk import ServerUnreachable
from tests.unit.test_agent_loop import FakeClient, assignment, reply
from tests.unit.test_local_backend import wait_until
from tests.unit.test_local_backend_recovery import start_in_an_agent_that_dies


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


def test_a_restarted_agent_fences_adopted_attempts_from_the_previous_renewal(tmp_path: Path) -> None:
    """The server renewed these leases for the previous agent process; if it never answers the
    new one, the lease still runs out from then, and the adopted attempt must stop before."""
    start_in_an_agent_that_dies(tmp_path, assignment(7, run="exec sleep 60"))
    previous = liveness_text(30, "gone-1", 1, renewed=time.time() - 25)  # 25 s ago; lease 30, fence 24
    (tmp_path / "agent.alive").write_text(previous)
    backend = LocalBackend(tmp_path)
    try:
        assert backend.last_renewal() is not None
        agent = Agent(FakeClient(), "s", backend, tmp_path, agent_id="a")  # adopts 7; no heartbeat yet
        agent._fence_if_partitioned()

        def stopped() -> bool:
            return backend.poll()[0].state.is_terminal()

        wait_until(stopped, "the adopted attempt to stop")
        assert "lost the server for 25s" in agent._abandoned[7]  # reported LOST, not cancelled
    finally:
        backend.stop_all(grace_s=0.1, timeout_s=5)


def test_new_attempts_wait_for_a_renewed_lease_before_they_start(tmp_path: Path) -> None:
    """Back after a silence past the fence (a server restart), the agent must not start an
    attempt before a heartbeat renewed its lease: its supervisor would stop it at once, after
    it may already have done its work, and the server would run it again."""
    client = FakeClient()
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a")
    agent.register()
    agent.step()
    agent._last_ok = time.monotonic() - 25  # silent past the fence (lease 30, fence 24)
    agent._start_attempt(assignment(1))
    assert 1 not in backend.attempts
    agent.step()  # accepted: the lease is renewed; the attempt starts at the next cycle
    agent.step()
    assert 1 in backend.attempts
