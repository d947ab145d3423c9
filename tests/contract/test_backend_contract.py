"""The backend contract (``suanli.agent.backends.base``), checked on every backend: local, the
shipped fake, and the real engines, Slurm and Ray (marked ``engine``: they need the daemons that
``make engines`` starts; see tests/engines_support.py for when they skip and when they fail)."""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.backends import Backend, FakeBackend, LocalBackend
from suanli.agent.backends.base import GpuAccounting, MultiNode
from suanli.agent.backends.ray import RayBackend
from suanli.agent.backends.slurm import SlurmBackend
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, LogChunk
from suanli.core.states import AttemptState
from tests.engines_support import RAY_ADDRESS, RAY_GPU_RESOURCE, require_ray, require_slurm

#: Real engines queue and start jobs in seconds, not milliseconds.
DEADLINE_S = 60.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


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


class Driver:
    """Makes an attempt print ``output`` and end with ``exit_code`` (None: run until cancelled)."""

    backend: Backend
    #: It runs the scripts it is given (the fake does not: the test plays the job).
    executes = True

    def launch(self, attempt_id: int, output: str, exit_code: int | None) -> None:
        end = f"exit {exit_code}" if exit_code is not None else "exec sleep 60"
        self.backend.start(assignment(attempt_id, f"printf %s {shlex.quote(output)}; {end}"), None)


class LocalDriver(Driver):
    def __init__(self, work_dir: Path) -> None:
        self.backend = LocalBackend(work_dir, kill_grace_s=1.0)


class SlurmDriver(Driver):
    def __init__(self, work_dir: Path) -> None:
        require_slurm()
        self.backend = SlurmBackend(work_dir)


class RayDriver(Driver):
    def __init__(self, work_dir: Path) -> None:
        require_ray()
        self.backend = RayBackend(work_dir, RAY_ADDRESS, gpu_resource=RAY_GPU_RESOURCE)


class FakeDriver(Driver):
    executes = False

    def __init__(self) -> None:
        self.backend = self.fake = FakeBackend()

    def launch(self, attempt_id: int, output: str, exit_code: int | None) -> None:
        self.fake.start(assignment(attempt_id), None)
        self.fake.emit(attempt_id, output)
        if exit_code is not None:
            self.fake.finish(attempt_id, exit_code)


SLURM = pytest.param("slurm", marks=pytest.mark.engine)
RAY = pytest.param("ray", marks=pytest.mark.engine)


def _drive(name: str, site: Path) -> Iterator[Driver]:
    makers: dict[str, Callable[[], Driver]] = {
        "local": lambda: LocalDriver(site),
        "fake": FakeDriver,
        "slurm": lambda: SlurmDriver(site),
        "ray": lambda: RayDriver(site),
    }
    d = makers[name]()
    yield d
    d.backend.stop_all(grace_s=0.1, timeout_s=30)
    for report in d.backend.poll():
        d.backend.forget(report.attempt_id)


@pytest.fixture(params=["local", "fake", SLURM, RAY])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    yield from _drive(request.param, tmp_path / "site")


@pytest.fixture(params=["local", SLURM, RAY])
def runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """A backend that runs what it is given (every backend but the fake)."""
    yield from _drive(request.param, tmp_path / "site")


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
    wait_until(lambda: states()[3].state is AttemptState.RUNNING, "attempt 3 to run")
    reports = states()
    assert sorted(reports) == [1, 2, 3]
    assert (reports[1].state, reports[1].exit_code, reports[1].fencing_token) == (AttemptState.SUCCEEDED, 0, 10)
    assert (reports[2].state, reports[2].exit_code) == (AttemptState.FAILED, 3)
    assert "3" in reports[2].message

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


def _archive(tmp_path: Path, files: dict[str, str]) -> Path:
    path = tmp_path / "workdir.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _run_to_end(backend: Backend, attempt_id: int) -> tuple[AttemptReport, str]:
    chunks: list[LogChunk] = []

    def ended() -> bool:
        reports = backend.poll()  # first: a backend may advance its attempts in poll
        chunks.extend(backend.read_logs())
        terminal = any(r.attempt_id == attempt_id and r.state.is_terminal() for r in reports)
        return terminal and backend.logs_drained(attempt_id)

    wait_until(ended, f"attempt {attempt_id} to end and drain")
    [report] = [r for r in backend.poll() if r.attempt_id == attempt_id]
    return report, "".join(c.data for c in chunks if c.attempt_id == attempt_id)


def test_workdir_environment_and_setup(runner: Driver, tmp_path: Path) -> None:
    """The same job runs alike on every backend: workdir unpacked, setup before run, DESIGN.md's
    environment, the job's envs, a writable checkpoint folder, the assigned GPUs visible."""
    archive = _archive(tmp_path, {"data.txt": "from the workdir\n"})
    run = (
        'cat data.txt; test -f setup-ran && echo "setup ran first"; '
        'echo "job=$SUANLI_JOB_ID attempt=$SUANLI_ATTEMPT rank=$SUANLI_NODE_RANK nodes=$SUANLI_NUM_NODES lr=$LR"; '
        'echo "gpus=$CUDA_VISIBLE_DEVICES master=${SUANLI_MASTER_ADDR:+set}"; '
        'touch "$SUANLI_CHECKPOINT_DIR/ckpt" && echo checkpoint writable; '
        'test -z "$SUANLI_AGENT_TOKEN" && echo no token leaked'
    )
    spec = assignment(
        7,
        run,
        setup="touch setup-ran",
        envs={"LR": "1e-4"},
        nodes=[AssignedNode(node="n1", rank=0, gpu_indices=[0, 1])],
        gpu_type="H100",
    )
    runner.backend.start(spec, archive)
    report, text = _run_to_end(runner.backend, 7)
    assert (report.state, report.exit_code) == (AttemptState.SUCCEEDED, 0), (report, text)
    assert text.splitlines() == [
        "from the workdir",
        "setup ran first",
        "job=job-7 attempt=1 rank=0 nodes=1 lr=1e-4",
        "gpus=0,1 master=set",
        "checkpoint writable",
        "no token leaked",
    ]


def test_failing_setup_skips_run(runner: Driver) -> None:
    runner.backend.start(assignment(8, "echo run must not start", setup="echo preparing; exit 4"), None)
    report, text = _run_to_end(runner.backend, 8)
    assert (report.state, report.exit_code) == (AttemptState.FAILED, 4)
    assert "setup" in report.message
    assert "4" in report.message
    assert "preparing" in text
    assert "run must not start" not in text


def test_a_bad_archive_fails_the_attempt_not_the_backend(runner: Driver, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"this is not gzip")
    runner.backend.start(assignment(9, "echo never"), bad)
    report, _ = _run_to_end(runner.backend, 9)
    assert report.state is AttemptState.FAILED
    assert "cannot unpack the workdir archive" in report.message


def test_capabilities_are_declared_by_class() -> None:
    """Optional capabilities are mixins, found with issubclass (never by trying a method)."""
    assert issubclass(SlurmBackend, MultiNode)
    assert issubclass(SlurmBackend, GpuAccounting)
    assert not issubclass(RayBackend, MultiNode)
    assert not issubclass(FakeBackend, GpuAccounting)
