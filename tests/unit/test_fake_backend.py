"""FakeBackend on its own, and the backend contract checked on FakeBackend and LocalBackend alike."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.backends import Backend, FakeBackend, LocalBackend
from suanli.core.network import NodeDecl
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, LogChunk
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


# -- the contract, for every backend ---------------------------------------------------------


class Driver:
    """Makes an attempt print ``output`` and end with ``exit_code`` (None: run until cancelled)."""

    backend: Backend

    def launch(self, attempt_id: int, output: str, exit_code: int | None) -> None:
        raise NotImplementedError


class LocalDriver(Driver):
    def __init__(self, work_dir: Path) -> None:
        self.backend = LocalBackend(work_dir, kill_grace_s=1.0)

    def launch(self, attempt_id: int, output: str, exit_code: int | None) -> None:
        end = f"exit {exit_code}" if exit_code is not None else "exec sleep 60"
        self.backend.start(assignment(attempt_id, f"printf %s {shlex.quote(output)}; {end}"), None)


class FakeDriver(Driver):
    def __init__(self) -> None:
        self.backend = self.fake = FakeBackend()

    def launch(self, attempt_id: int, output: str, exit_code: int | None) -> None:
        self.fake.start(assignment(attempt_id), None)
        self.fake.emit(attempt_id, output)
        if exit_code is not None:
            self.fake.finish(attempt_id, exit_code)


@pytest.fixture(params=["local", "fake"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    d: Driver = LocalDriver(tmp_path / "site") if request.param == "local" else FakeDriver()
    yield d
    d.backend.stop_all(grace_s=0.1)


def test_backend_contract(driver: Driver) -> None:
    backend = driver.backend
    assert backend.inventory(), "a backend has at least one node"
    driver.launch(1, "hello\n", 0)
    driver.launch(2, "oops ✓\n", 3)
    driver.launch(3, "waiting\n", None)
    backend.start(assignment(1, "echo a repeated start is ignored"), None)

    def states() -> dict[int, AttemptReport]:
        return {r.attempt_id: r for r in backend.poll()}

    # The end is visible before the output is read, but the output is not drained yet.
    wait_until(lambda: states()[1].state.is_terminal() and states()[2].state.is_terminal(), "attempts 1 and 2 to end")
    assert not backend.logs_drained(1)
    reports = states()
    assert sorted(reports) == [1, 2, 3]
    assert (reports[1].state, reports[1].exit_code, reports[1].fencing_token) == (AttemptState.SUCCEEDED, 0, 10)
    assert (reports[2].state, reports[2].exit_code) == (AttemptState.FAILED, 3)
    assert "3" in reports[2].message
    assert reports[3].state is AttemptState.RUNNING

    chunks: list[LogChunk] = []

    def read() -> dict[int, str]:
        chunks.extend(backend.read_logs())
        return {i: "".join(c.data for c in chunks if c.attempt_id == i) for i in (1, 2, 3)}

    wait_until(lambda: read() == {1: "hello\n", 2: "oops ✓\n", 3: "waiting\n"}, "all output")
    assert {(c.attempt_id, c.offset) for c in chunks} == {(1, 0), (2, 0), (3, 0)}
    assert all(c.fencing_token == 10 * c.attempt_id for c in chunks)
    wait_until(lambda: backend.logs_drained(1) and backend.logs_drained(2), "ended attempts to drain")
    assert not backend.logs_drained(3), "a running attempt may still print"
    assert backend.read_logs() == []

    backend.cancel(3, grace_s=5)
    wait_until(lambda: states()[3].state is AttemptState.CANCELLED, "the cancel")
    backend.cancel(1, grace_s=0)  # ended: nothing changes
    backend.cancel(99, grace_s=0)  # unknown: nothing happens
    assert states()[1].state is AttemptState.SUCCEEDED
    cancelled_code = states()[3].exit_code
    assert cancelled_code is not None
    assert cancelled_code < 0, "killed by a signal: -signum"

    for attempt_id in (1, 2, 3, 99):
        backend.forget(attempt_id)
    assert backend.poll() == []
    assert backend.logs_drained(99)


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
