"""FakeBackend on its own (the backend contract, which it keeps too, is in tests/contract/)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from suanli.agent.backends import FakeBackend
from suanli.core.network import NodeDecl
from suanli.core.protocol import AssignedNode, AttemptAssignment
from suanli.core.states import AttemptState


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def assignment(attempt_id: int, run: str = "true", **fields: object) -> AttemptAssignment:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "fencing_token": 10 * attempt_id,
        "job_id": f"job-{attempt_id}",
        "job_name": "contract",
        "attempt_number": 1,
        "run": run,
        "nodes": [AssignedNode(node="n1", rank=0)],
    }
    values.update(fields)
    return AttemptAssignment.model_validate(values)


# -- the fake's own controls -----------------------------------------------------------------


def test_fake_records_what_the_agent_asked() -> None:
    fake = FakeBackend()
    fake.start(assignment(1), Path("/tmp/archive.tar.gz"))
    fake.start(assignment(1), None)
    fake.cancel(1, grace_s=7)
    fake.forget(1)
    assert [a.attempt_id for a in fake.started] == [1]
    assert fake.cancels == [(1, 7)]
    assert fake.forgotten == [1]


def test_fake_nodes_and_health() -> None:
    fake = FakeBackend([NodeDecl(name="tj-01", gpus="H100:8", cpus=64, memory=512)])
    [node] = fake.inventory()
    assert (node.name, node.gpu_type, node.gpus_total, node.healthy) == ("tj-01", "H100", 8, True)
    fake.set_healthy("tj-01", False, "GPU 3 fell off the bus")
    [node] = fake.inventory()
    assert (node.healthy, node.reason) == (False, "GPU 3 fell off the bus")
    with pytest.raises(KeyError, match="no node 'nope'"):
        fake.set_healthy("nope", False)


def test_fake_finish_with_a_state_and_misuse_is_refused() -> None:
    fake = FakeBackend()
    fake.start(assignment(1), None)
    fake.set_state(1, AttemptState.STARTING)
    assert fake.poll()[0].state is AttemptState.STARTING
    fake.finish(1, None, state=AttemptState.PREEMPTED, message="spot instance reclaimed")
    report = fake.poll()[0]
    assert (report.state, report.exit_code, report.message) == (AttemptState.PREEMPTED, None, "spot instance reclaimed")
    with pytest.raises(ValueError, match="already ended"):
        fake.finish(1)
    with pytest.raises(ValueError, match="cannot print"):
        fake.emit(1, "late")
    with pytest.raises(KeyError, match="holds no attempt 2"):
        fake.emit(2, "x")


def test_fake_logs_split_utf8_and_bounded_reads() -> None:
    fake = FakeBackend()
    fake.start(assignment(1), None)
    data = "数据".encode()
    fake.emit(1, data[:4])  # one character and a third
    [chunk] = fake.read_logs()
    assert (chunk.offset, chunk.data) == (0, "数")
    assert fake.read_logs() == []
    fake.emit(1, data[4:] + b"\n", rank=0)
    fake.emit(1, "rank one\n", rank=1)
    fake.finish(1)
    assert not fake.logs_drained(1)
    got = fake.read_logs(max_bytes=4)
    assert [(c.rank, c.offset, c.data) for c in got] == [(0, 3, "据\n")]
    got = fake.read_logs()
    assert [(c.rank, c.offset, c.data) for c in got] == [(1, 0, "rank one\n")]
    assert fake.logs_drained(1)
