"""LocalBackend with real processes: output, exit codes, setup, environment, gangs, signals."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.backends import gpus
from suanli.agent.backends.local import LocalBackend
from suanli.core.network import NodeDecl
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, LogChunk
from suanli.core.states import AttemptState

DEADLINE_S = 20.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def assignment(attempt_id: int = 1, run: str = "echo hello", **fields: object) -> AttemptAssignment:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "fencing_token": 100 + attempt_id,
        "job_id": "job-1",
        "job_name": "hello",
        "attempt_number": 1,
        "run": run,
        "nodes": [AssignedNode(node="n1", rank=0)],
    }
    values.update(fields)
    return AttemptAssignment.model_validate(values)


class Watcher:
    """Drives a backend like the agent does and keeps what it returned, checking offsets."""

    def __init__(self, backend: LocalBackend, max_bytes: int = 256 * 1024) -> None:
        self.backend, self.max_bytes = backend, max_bytes
        self.text: dict[tuple[int, int], str] = {}
        self.chunks: list[LogChunk] = []
        self._next_offset: dict[tuple[int, int], int] = {}

    def tick(self) -> dict[int, AttemptReport]:
        reports = {r.attempt_id: r for r in self.backend.poll()}
        for chunk in self.backend.read_logs(self.max_bytes):
            key = (chunk.attempt_id, chunk.rank)
            assert chunk.offset == self._next_offset.get(key, 0), "chunks must be contiguous"
            self._next_offset[key] = chunk.offset + len(chunk.data.encode())
            self.text[key] = self.text.get(key, "") + chunk.data
            self.chunks.append(chunk)
        return reports

    def output(self, attempt_id: int, rank: int = 0) -> str:
        return self.text.get((attempt_id, rank), "")

    def until(self, condition: Callable[[dict[int, AttemptReport]], bool], what: str) -> dict[int, AttemptReport]:
        box: list[dict[int, AttemptReport]] = []

        def check() -> bool:
            box[:] = [self.tick()]
            return condition(box[0])

        wait_until(check, what)
        return box[0]

    def finish(self, attempt_id: int) -> AttemptReport:
        """Until the attempt has ended and all its output was read."""
        reports = self.until(
            lambda r: r[attempt_id].state.is_terminal() and self.backend.logs_drained(attempt_id),
            f"attempt {attempt_id} to end",
        )
        return reports[attempt_id]


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def backend(site_dir: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(site_dir, kill_grace_s=0.5)
    yield b
    b.stop_all(grace_s=0.1)


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_output_is_captured_with_byte_offsets(backend: LocalBackend) -> None:
    w = Watcher(backend)
    backend.start(assignment(run="echo first; while [ ! -f go ]; do sleep 0.01; done; echo second"), None)
    w.until(lambda r: "first" in w.output(1), "the first line")
    assert w.chunks[0].offset == 0
    assert w.chunks[0].fencing_token == 101
    assert backend.poll()[0].state is AttemptState.RUNNING
    (backend.work_dir / "attempts" / "1" / "workdir" / "go").touch()
    report = w.finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.SUCCEEDED, 0, "")
    assert w.output(1) == "first\nsecond\n"
    assert [c.offset for c in w.chunks] == [0, 6]


def test_nonzero_exit_fails_with_its_code(backend: LocalBackend) -> None:
    backend.start(assignment(run="echo oops >&2; exit 3"), None)
    w = Watcher(backend)
    report = w.finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.FAILED, 3, "run exited with code 3")
    assert w.output(1) == "oops\n"  # stderr goes to the same log


def test_setup_runs_first_and_run_starts_when_it_succeeds(backend: LocalBackend) -> None:
    setup = "echo setting up; while [ ! -f setup-go ]; do sleep 0.01; done"
    run = "echo running; while [ ! -f run-go ]; do sleep 0.01; done"
    backend.start(assignment(setup=setup, run=run), None)
    workdir = backend.work_dir / "attempts" / "1" / "workdir"
    w = Watcher(backend)
    w.until(lambda r: "setting up" in w.output(1), "setup output")
    assert backend.poll()[0].state is AttemptState.STARTING
    (workdir / "setup-go").touch()
    w.until(lambda r: r[1].state is AttemptState.RUNNING and "running" in w.output(1), "run to start")
    (workdir / "run-go").touch()
    assert w.finish(1).state is AttemptState.SUCCEEDED
    assert w.output(1) == "setting up\nrunning\n"


def test_setup_failure_fails_without_running(backend: LocalBackend) -> None:
    backend.start(assignment(setup="echo preparing; exit 2", run="echo never"), None)
    w = Watcher(backend)
    report = w.finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.FAILED, 2, "setup exited with code 2")
    assert w.output(1) == "preparing\n"


def test_environment(backend: LocalBackend, site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_TOKEN", "site-secret")
    monkeypatch.setenv("AGENT_SIDE", "inherited")
    dump = 'python -c "import json, os; print(json.dumps({**os.environ, \\"cwd\\": os.getcwd()}))"'
    gpu_node = AssignedNode(node="tj-01", rank=0, gpu_indices=[1, 3])
    backend.start(assignment(1, dump, envs={"LR": "1e-4"}, nodes=[gpu_node], attempt_number=2), None)
    backend.start(assignment(2, dump, job_id="job-2"), None)
    w = Watcher(backend)
    w.finish(1)
    w.finish(2)
    env = json.loads(w.output(1))
    assert env["SUANLI_JOB_ID"] == "job-1"
    assert env["SUANLI_JOB_NAME"] == "hello"
    assert env["SUANLI_ATTEMPT"] == "2"
    assert env["SUANLI_NODE_RANK"] == "0"
    assert env["SUANLI_NODE_NAME"] == "tj-01"
    assert env["SUANLI_NUM_NODES"] == "1"
    assert env["SUANLI_NUM_GPUS_PER_NODE"] == "2"
    assert env["SUANLI_MASTER_ADDR"] == "127.0.0.1"
    assert 0 < int(env["SUANLI_MASTER_PORT"]) < 65536
    assert env["SUANLI_CHECKPOINT_DIR"] == str(site_dir / "checkpoints" / "job-1")
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["LR"] == "1e-4"
    assert env["AGENT_SIDE"] == "inherited"
    assert "SUANLI_TOKEN" not in env, "the agent's own SUANLI_* settings must not leak into jobs"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert env["cwd"] == str(site_dir / "attempts" / "1" / "workdir")
    assert json.loads(w.output(2))["CUDA_VISIBLE_DEVICES"] == ""  # CPU-only work sees no GPU


def test_checkpoint_dir_survives_a_second_attempt(backend: LocalBackend) -> None:
    backend.start(assignment(1, 'echo 41 > "$SUANLI_CHECKPOINT_DIR/step"'), None)
    w = Watcher(backend)
    assert w.finish(1).state is AttemptState.SUCCEEDED
    backend.forget(1)
    backend.start(assignment(2, 'cat "$SUANLI_CHECKPOINT_DIR/step"', attempt_number=2), None)
    assert w.finish(2).state is AttemptState.SUCCEEDED
    assert w.output(2) == "41\n"


def test_workdir_is_unpacked_from_the_archive(backend: LocalBackend, tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "wd.tar.gz",
        {"train.py": b"print(open('data/notes.txt').read().strip())\n", "data/notes.txt": b"lr=1e-4\n"},
    )
    backend.start(assignment(run="python train.py"), archive)
    w = Watcher(backend)
    assert w.finish(1).state is AttemptState.SUCCEEDED
    assert w.output(1) == "lr=1e-4\n"


def test_archive_escaping_the_workdir_is_refused(backend: LocalBackend, tmp_path: Path, site_dir: Path) -> None:
    archive = make_archive(tmp_path / "evil.tar.gz", {"../evil": b"pwned\n"})
    backend.start(assignment(run="echo should not run"), archive)
    w = Watcher(backend)
    report = w.finish(1)
    assert report.state is AttemptState.FAILED
    assert report.message.startswith("cannot unpack the workdir archive:")
    assert "outside the destination" in report.message
    assert not (site_dir / "attempts" / "1" / "evil").exists()
    assert w.output(1) == f"[suanli] {report.message}\n"  # the user sees why in the logs too


def test_gang_of_two_ranks(backend: LocalBackend) -> None:
    nodes = [AssignedNode(node="a", rank=0, gpu_indices=[0, 1]), AssignedNode(node="b", rank=1, gpu_indices=[2, 3])]
    run = "echo rank=$SUANLI_NODE_RANK of=$SUANLI_NUM_NODES cuda=$CUDA_VISIBLE_DEVICES port=$SUANLI_MASTER_PORT"
    backend.start(assignment(run=run, nodes=nodes), None)
    w = Watcher(backend)
    assert w.finish(1).state is AttemptState.SUCCEEDED
    rank0, rank1 = w.output(1, 0).split(), w.output(1, 1).split()
    assert rank0[:3] == ["rank=0", "of=2", "cuda=0,1"]
    assert rank1[:3] == ["rank=1", "of=2", "cuda=2,3"]
    assert rank0[3] == rank1[3], "every rank gets the same master port"


def test_gang_member_failure_stops_the_others(backend: LocalBackend) -> None:
    nodes = [AssignedNode(node="a", rank=0), AssignedNode(node="b", rank=1)]
    run = 'if [ "$SUANLI_NODE_RANK" = 1 ]; then exit 4; fi; exec sleep 60'
    backend.start(assignment(run=run, nodes=nodes), None)
    report = Watcher(backend).finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.FAILED, 4, "rank 1 exited with code 4")


def test_cancel_kills_a_process_that_traps_sigterm_after_the_grace(backend: LocalBackend, site_dir: Path) -> None:
    run = "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.02; done"
    backend.start(assignment(run=run), None)
    w = Watcher(backend)
    w.until(lambda r: "ready" in w.output(1), "the process to trap SIGTERM")
    pid = json.loads((site_dir / "attempts" / "1" / "attempt.json").read_text())["ranks"][0]["pgid"]
    backend.cancel(1, grace_s=0.3)
    assert backend.poll()[0].state is AttemptState.RUNNING  # cancel returns before the grace is over
    report = w.finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.CANCELLED, -9, "cancelled")
    assert "got TERM" in w.output(1)
    wait_until(lambda: not group_exists(pid), "the whole process group to be gone")
    backend.cancel(1, grace_s=0)  # cancelling an ended attempt changes nothing
    assert backend.poll()[0].state is AttemptState.CANCELLED


def test_cancel_during_setup(backend: LocalBackend) -> None:
    backend.start(assignment(setup="echo in setup; exec sleep 60", run="echo never"), None)
    w = Watcher(backend)
    w.until(lambda r: "in setup" in w.output(1), "setup to start")
    backend.cancel(1, grace_s=5)
    report = w.finish(1)
    assert (report.state, report.exit_code) == (AttemptState.CANCELLED, -15)
    assert "never" not in w.output(1)


def test_time_limit_stops_the_attempt(site_dir: Path) -> None:
    clock = FakeClock()
    backend = LocalBackend(site_dir, kill_grace_s=5, clock=clock)
    try:
        backend.start(assignment(run="echo started; exec sleep 60", time_limit_s=7200), None)
        w = Watcher(backend)
        w.until(lambda r: "started" in w.output(1), "the job to start")
        clock.now += 7199
        assert w.tick()[1].state is AttemptState.RUNNING
        clock.now += 1
        report = w.finish(1)
        assert (report.state, report.message, report.exit_code) == (AttemptState.FAILED, "time limit 2h reached", -15)
        assert w.output(1).endswith("[suanli] time limit 2h reached\n")
    finally:
        backend.stop_all(grace_s=0.1)


def test_utf8_is_never_split_across_chunks(backend: LocalBackend) -> None:
    # Write half of a 3-byte character, wait, then the rest: the first read must hold it back.
    run = (
        "python -c \"import os, sys, time; w = sys.stdout.buffer; w.write('数'.encode()[:2]); w.flush()\n"
        "while not os.path.exists('go'): time.sleep(0.01)\n"
        "w.write('数'.encode()[2:] + '据\\n'.encode()); w.flush()\""
    )
    backend.start(assignment(run=run), None)
    log = backend.work_dir / "attempts" / "1" / "rank-0.log"
    wait_until(lambda: log.stat().st_size == 2, "the first two bytes")
    backend.poll()
    assert backend.read_logs() == []
    (backend.work_dir / "attempts" / "1" / "workdir" / "go").touch()
    w = Watcher(backend)
    w.finish(1)
    assert w.output(1) == "数据\n"
    assert w.chunks[0].offset == 0


def test_bounded_reads_keep_offsets_and_characters_whole(backend: LocalBackend) -> None:
    text = "é" * 10_000 + "\n"  # 20 001 bytes, read 4 097 at a time: every boundary splits a character
    backend.start(assignment(run="python -c \"print('é' * 10_000)\""), None)
    w = Watcher(backend, max_bytes=4097)
    w.finish(1)
    assert w.output(1) == text
    assert len(w.chunks) >= 5
    assert all(len(c.data.encode()) <= 4097 for c in w.chunks)


def test_duplicate_start_is_ignored_and_record_is_written(backend: LocalBackend, site_dir: Path) -> None:
    backend.start(assignment(run="exec sleep 60"), None)
    backend.start(assignment(run="echo a second start must not run"), None)
    assert len(backend.poll()) == 1
    record = json.loads((site_dir / "attempts" / "1" / "attempt.json").read_text())
    assert record["state"] == "RUNNING"
    assert record["phase"] == "run"
    assert record["ranks"][0]["pid"] == record["ranks"][0]["pgid"] > 0
    assert record["assignment"]["run"] == "exec sleep 60"


def test_forget_kills_a_live_attempt_and_removes_its_files(backend: LocalBackend, site_dir: Path) -> None:
    backend.start(assignment(run="exec sleep 60"), None)
    backend.poll()
    pgid = json.loads((site_dir / "attempts" / "1" / "attempt.json").read_text())["ranks"][0]["pgid"]
    backend.forget(1)
    assert backend.poll() == []
    assert not (site_dir / "attempts" / "1").exists()
    assert backend.logs_drained(1)
    wait_until(lambda: not group_exists(pgid), "the process group to be gone")


def test_inventory_of_declared_virtual_nodes(site_dir: Path) -> None:
    nodes = [NodeDecl(name="bj-01", gpus="H100:16", cpus=64, memory=512), NodeDecl(name="bj-cpu", cpus=8, memory=32)]
    reports = LocalBackend(site_dir, nodes).inventory()
    assert [(n.name, n.gpu_type, n.gpus_total, n.gpu_source) for n in reports] == [
        ("bj-01", "H100", 16, "virtual"),
        ("bj-cpu", None, 0, "virtual"),
    ]


def test_inventory_of_this_machine_without_nvml(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    [node] = LocalBackend(site_dir, node_name="laptop").inventory()
    assert node.name == "laptop"
    assert node.cpus >= 1
    assert node.memory > 0
    assert (node.gpu_type, node.gpus_total, node.gpu_source) == (None, 0, "virtual")


def fake_nvml(names: list[str], fail_init: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    def init() -> None:
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    module.nvmlInit = init  # type: ignore[attr-defined]
    module.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: len(names)  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    module.nvmlDeviceGetName = lambda handle: names[handle]  # type: ignore[attr-defined]
    return module


def test_nvml_gpus_are_found_and_named(monkeypatch: pytest.MonkeyPatch, site_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(["NVIDIA H100 80GB HBM3"] * 8))
    [node] = LocalBackend(site_dir).inventory()
    assert (node.gpu_type, node.gpus_total, node.gpu_source) == ("H100", 8, "nvml")


def test_nvml_without_a_driver_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(["x"], fail_init=True))
    assert gpus.detect_nvidia_gpus() is None


@pytest.mark.parametrize(
    ("full", "short"),
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA A800-SXM4-80GB", "A800"),
        ("Tesla V100-SXM2-16GB", "V100"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA L40S", "L40S"),
    ],
)
def test_short_gpu_names(full: str, short: str) -> None:
    assert gpus.short_gpu_name(full) == short
