"""A restarted agent does not spin on stop orders (issue 16, item 9): the server repeats a stop
order until the attempt's end reaches it; the agent acts on it once, answers an order for an
attempt it does not hold with a CANCELLED report, and stops promptly when told to."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from suanli.agent import Agent
from suanli.agent.backends import FakeBackend
from suanli.core.protocol import HeartbeatRequest, HeartbeatResponse, StopOrder
from suanli.core.states import AttemptState
from tests.unit.test_agent_loop import FakeClient, assignment, reply, states


class RepeatsStops(FakeClient):
    """A server that answers every heartbeat with the same stop orders, as the real one does
    while an attempt it asked to stop has not reported its end."""

    def __init__(self, *orders: StopOrder) -> None:
        super().__init__()
        self.orders = list(orders)

    def agent_heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        with self.lock:
            self.heartbeats.append(request)
            ended = {r.attempt_id for r in request.attempts if r.state.is_terminal()}
            self.orders = [o for o in self.orders if o.attempt_id not in ended]
            return reply(stop=list(self.orders))


class _SlowToStop(FakeBackend):
    """Takes its grace period: a cancelled attempt keeps running (as a real job finishing up)."""

    def cancel(self, attempt_id: int, grace_s: float) -> None:
        with self._lock:
            self.cancels.append((attempt_id, grace_s))


def test_an_order_for_an_attempt_not_held_is_answered_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    client = RepeatsStops(StopOrder(attempt_id=41, reason="cancelled by the user", grace_s=5))
    backend = FakeBackend()
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="restarted")
    with caplog.at_level(logging.INFO, logger="suanli.agent"):
        agent.step()  # the order arrives
        agent.step()  # the answer: attempt 41 CANCELLED, with the server's fencing token (its id)
        for _ in range(5):
            agent.step()
    answer = client.heartbeats[1].attempts
    assert [(r.attempt_id, r.fencing_token, r.state) for r in answer] == [(41, 41, AttemptState.CANCELLED)]
    assert "does not hold" in answer[0].message
    assert client.orders == []  # settled on the server
    assert backend.cancels == []
    assert caplog.text.count("41") == 1  # one line, not one a cycle


def test_a_repeated_order_for_an_attempt_being_stopped_is_not_acted_on_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = FakeClient()
    backend = _SlowToStop()
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a")
    client.replies.append(reply(start=[assignment(1)]))
    agent.step()
    order = StopOrder(attempt_id=1, reason="preempted", grace_s=30)
    with caplog.at_level(logging.INFO, logger="suanli.agent"):
        for _ in range(20):
            client.replies.append(reply(stop=[order]))
            agent.step()
    assert backend.cancels == [(1, 30)]
    assert caplog.text.count("stopping attempt 1") == 1
    assert states(client.heartbeats[-1]) == {1: AttemptState.RUNNING}


def test_the_loop_does_not_spin_on_repeated_orders_and_stops_promptly(tmp_path: Path) -> None:
    backend = _SlowToStop()
    client = RepeatsStops()
    agent = Agent(client, "s", backend, tmp_path / "agent", agent_id="a", heartbeat_s=0.2, poll_s=0.02)
    backend.start(assignment(1), None)
    client.orders = [StopOrder(attempt_id=1, reason="cancelled", grace_s=60)]
    stop = threading.Event()
    thread = threading.Thread(target=agent.run_forever, args=(stop,))
    thread.start()
    time.sleep(1.0)  # the window in which the old loop sent thousands of heartbeats
    asked = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - asked < 1.0
    # About five long polls (one per 0.2 s) and a report or two: not one per reply.
    assert len(client.sent()) < 20, len(client.sent())
    assert backend.cancels == [(1, 60)]
