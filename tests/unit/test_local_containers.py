"""LocalBackend with ``image:``: ranks in a real podman container built from the local test image
(tests/container_support.py): the image's files, the job's folders at fixed paths, no secret
on any command line, cancel and orphaned attempts leave no container behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from suanli.agent.backends.container import container_name
from suanli.agent.backends.local import LocalBackend
from suanli.core.protocol import AssignedNode
from suanli.core.states import AttemptState
from tests.container_support import TEST_IMAGE_NAME, container_exists, require_test_image
from tests.unit.test_local_backend import Watcher, assignment, wait_until

SECRET = "zz-container-secret-41"


@pytest.fixture
def image() -> str:
    return require_test_image()


def _cmdlines() -> list[bytes]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    out.append(fh.read())
            except OSError:
                continue
    return out


def test_rank_runs_in_the_image_with_its_folders_and_no_secret_in_argv(tmp_path: Path, image: str) -> None:
    backend = LocalBackend(tmp_path / "w")
    w = Watcher(backend)
    run = (
        "cat /etc/os-release; pwd; echo ck=$SUANLI_CHECKPOINT_DIR lr=$LR tok=$TOK; "
        "touch $SUANLI_CHECKPOINT_DIR/saved; echo made > out.txt; "
        "while [ ! -e go ]; do sleep 0.05; done"
    )
    spec = assignment(
        1,
        run=run,
        image=image,
        envs={"LR": "1e-4"},
        secrets={"TOK": SECRET},
        nodes=[AssignedNode(node="n1", rank=0, cpus=1, memory_gib=1)],
    )
    backend.start(spec, None)
    workdir = tmp_path / "w" / "attempts" / "1" / "workdir"
    w.until(lambda _r: (workdir / "out.txt").exists(), "the job to write into its workdir")
    assert container_exists(container_name(1, 0))
    assert not [c for c in _cmdlines() if SECRET.encode() in c], "a secret is on a command line"
    (workdir / "go").touch()
    reports = w.until(lambda r: r[1].state.is_terminal(), "the attempt to end")
    assert reports[1].state == AttemptState.SUCCEEDED, w.output(1)
    out = w.output(1)
    assert TEST_IMAGE_NAME in out  # the image's, not the host's
    assert "/workdir\n" in out
    assert "ck=/suanli/checkpoint lr=1e-4 tok=***" in out
    assert (tmp_path / "w" / "checkpoints" / "job-1" / "saved").exists()
    assert SECRET not in (tmp_path / "w" / "attempts" / "1" / "rank-0.log").read_text()


def test_missing_image_fails_before_start_with_the_fix(tmp_path: Path, image: str) -> None:
    backend = LocalBackend(tmp_path / "w")
    backend.site_name = "tianjin-gaocun"
    w = Watcher(backend)
    backend.start(assignment(2, image="localhost/suanli-missing:9"), None)
    report = w.until(lambda r: r[2].state.is_terminal(), "the attempt to end")[2]
    assert report.state == AttemptState.FAILED
    assert report.exit_code is None
    assert report.message.startswith("image localhost/suanli-missing:9 not found at site tianjin-gaocun")
    assert "podman load" in report.message
    assert not container_exists(container_name(2, 0))


def test_cancel_of_a_job_that_ignores_sigterm_leaves_no_container(tmp_path: Path, image: str) -> None:
    backend = LocalBackend(tmp_path / "w", kill_grace_s=0.5)
    w = Watcher(backend)
    backend.start(assignment(3, run="trap '' TERM; echo started; while true; do sleep 0.05; done", image=image), None)
    w.until(lambda _r: "started" in w.output(3), "the job to start")
    backend.cancel(3, 0.5)
    report = w.until(lambda r: r[3].state.is_terminal(), "the attempt to end")[3]
    assert report.state == AttemptState.CANCELLED
    wait_until(lambda: not container_exists(container_name(3, 0)), "the container to be removed")
    w.tick()


def test_orphaned_attempt_stops_and_its_supervisor_removes_the_container(tmp_path: Path, image: str) -> None:
    """The agent is gone (nothing touches agent.alive): each supervisor stops its rank as an
    orphan; its `podman run` is killed, and it removes the container itself."""
    backend = LocalBackend(tmp_path / "w", orphan_timeout_s=1.0)
    w = Watcher(backend)
    backend.start(assignment(4, run="trap '' TERM; echo started; while true; do sleep 0.05; done", image=image), None)
    w.until(lambda _r: "started" in w.output(4), "the job to start")
    name = container_name(4, 0)
    assert container_exists(name)
    started = time.monotonic()
    # No more polls or keepalives from here: the agent is "gone".
    wait_until(lambda: not container_exists(name), "the orphaned container to be removed", timeout=30.0)
    assert time.monotonic() - started < 30.0
    exit_file = tmp_path / "w" / "attempts" / "4" / "rank-0.run.exit"
    wait_until(exit_file.exists, "the supervisor to record the end")
    assert '"orphaned": true' in exit_file.read_text()
    report = w.until(lambda r: r[4].state.is_terminal(), "the backend to see the end")[4]  # the agent is back
    assert report.state == AttemptState.LOST
