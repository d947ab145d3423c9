"""SlurmBackend against a real Slurm (scripts/engines/slurm.sh): inventory and health from sinfo,
the job environment under srun, refusals, accounting from sacct, and slurmrestd with a JWT."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.agent import Agent
from suanli.agent.backends.slurm import SlurmBackend
from suanli.agent.backends.slurm_api import SlurmCli, SlurmRest
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, LogChunk
from suanli.core.states import AttemptState
from tests.engines_support import require_slurm
from tests.unit.test_agent_loop import FakeClient

pytestmark = pytest.mark.engine
HOST = socket.gethostname().split(".")[0]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def assignment(attempt_id: int, run: str, gpus: list[int] | None = None, **fields: object) -> AttemptAssignment:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "fencing_token": attempt_id,
        "job_id": f"slurm-{attempt_id}",
        "job_name": "engine-test",
        "attempt_number": 1,
        "run": run,
        "nodes": [AssignedNode(node=HOST, rank=0, gpu_indices=gpus or [])],
    }
    values.update(fields)
    return AttemptAssignment.model_validate(values)


def run_to_end(backend: SlurmBackend, attempt_id: int) -> tuple[AttemptReport, str]:
    chunks: list[LogChunk] = []

    def ended() -> bool:
        reports = backend.poll()
        chunks.extend(backend.read_logs())
        return any(r.attempt_id == attempt_id and r.state.is_terminal() for r in reports) and backend.logs_drained(
            attempt_id
        )

    wait_until(ended, f"attempt {attempt_id} to end")
    [report] = [r for r in backend.poll() if r.attempt_id == attempt_id]
    return report, "".join(c.data for c in chunks if c.attempt_id == attempt_id)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[SlurmBackend]:
    require_slurm()
    b = SlurmBackend(tmp_path / "site", gpu_type="H100")
    yield b
    b.stop_all(grace_s=0.1, timeout_s=20)


def test_inventory_and_drained_node_is_unhealthy(backend: SlurmBackend) -> None:
    [node] = [n for n in backend.inventory() if n.name == HOST]
    assert (node.gpu_type, node.gpus_total, node.healthy, node.gpu_source) == ("H100", 4, True, "slurm")
    assert node.cpus >= 1
    assert node.memory > 1
    subprocess.run(["scontrol", "update", f"nodename={HOST}", "state=drain", "reason=suanli test"], check=True)
    try:
        [node] = [n for n in backend.inventory() if n.name == HOST]
        assert not node.healthy
        assert "DRAIN" in node.reason
        assert "suanli test" in node.reason
    finally:
        subprocess.run(["scontrol", "update", f"nodename={HOST}", "state=resume"], check=True)
    wait_until(lambda: all(n.healthy for n in backend.inventory()), "the node to come back")


def test_rank_environment_gpus_and_usage_from_sacct(backend: SlurmBackend) -> None:
    run = (
        'echo "rank=$SUANLI_NODE_RANK master=$SUANLI_MASTER_ADDR port=${SUANLI_MASTER_PORT:+set} '
        'gpus=$CUDA_VISIBLE_DEVICES"'
    )
    backend.start(assignment(1, run, gpus=[0, 1], gpu_type="H100"), None)
    report, text = run_to_end(backend, 1)
    assert report.state is AttemptState.SUCCEEDED, text
    assert text == f"rank=0 master={HOST} port=set gpus=0,1\n"
    assert report.elapsed_s is not None, "metering needs the time the job held its allocation"
    usage_box: list[object] = []

    def accounted() -> bool:
        usage = backend.usage(1)
        usage_box[:] = [usage]
        return usage is not None

    wait_until(accounted, "sacct to account for the job", timeout=30)
    usage = backend.usage(1)
    assert usage is not None
    assert (usage.gpus, usage.nodes) == (2, 1)
    assert usage.cpus >= 1
    assert usage.elapsed_s >= 0
    assert usage.allocated["gres/gpu"] == 2


def test_a_job_slurm_refuses_fails_with_slurms_words(backend: SlurmBackend) -> None:
    backend.start(assignment(2, "echo never", gpus=list(range(64))), None)
    report, _ = run_to_end(backend, 2)
    assert report.state is AttemptState.FAILED
    assert "Slurm refused the job" in report.message


def test_pending_jobs_say_why_and_cancel_while_queued(backend: SlurmBackend) -> None:
    """Four GPUs: a job holding them all makes the next wait, with Slurm's reason."""
    backend.start(assignment(3, "sleep 60", gpus=[0, 1, 2, 3]), None)
    wait_until(lambda: {r.attempt_id: r for r in backend.poll()}[3].state is AttemptState.RUNNING, "the first job")
    backend.start(assignment(4, "echo second", gpus=[0]), None)
    wait_until(lambda: "queued in Slurm (" in {r.attempt_id: r for r in backend.poll()}[4].message, "the reason")
    [second] = [r for r in backend.poll() if r.attempt_id == 4]
    assert second.state is AttemptState.STARTING
    assert "Resources" in second.message
    backend.cancel(4, grace_s=1)
    backend.cancel(3, grace_s=1)
    wait_until(lambda: all(r.state is AttemptState.CANCELLED for r in backend.poll()), "both cancels")


def test_slurmrestd_with_a_jwt(tmp_path: Path) -> None:
    require_slurm()
    out = subprocess.run(
        ["scontrol", "token", "username=root", "lifespan=600"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.fail(f"cannot make a JWT (is AuthAltTypes=auth/jwt set?): {out.stderr}")
    token = out.stdout.strip().removeprefix("SLURM_JWT=")
    rest = SlurmRest("http://127.0.0.1:6820", "root", token)
    try:
        backend = SlurmBackend(tmp_path / "site", rest, gpu_type="H100")
        assert [n.gpus_total for n in backend.inventory() if n.name == HOST] == [4]
        backend.start(assignment(5, 'echo "via rest gpus=$CUDA_VISIBLE_DEVICES"; exit 2', gpus=[0]), None)
        report, text = run_to_end(backend, 5)
        assert (report.state, report.exit_code) == (AttemptState.FAILED, 2)
        assert text == "via rest gpus=0\n"
        backend.start(assignment(6, "sleep 60"), None)
        wait_until(lambda: {r.attempt_id: r for r in backend.poll()}[6].state is AttemptState.RUNNING, "job 6")
        backend.cancel(6, grace_s=1)
        wait_until(lambda: {r.attempt_id: r for r in backend.poll()}[6].state is AttemptState.CANCELLED, "the cancel")
    finally:
        rest.close()


def test_a_new_agent_cancels_the_job_a_dead_agent_left(tmp_path: Path) -> None:
    """An agent submits a job and dies (its backend is dropped, the job left running); the next
    agent of the site, which holds nothing, cancels it at its start. A job of another site on
    the same cluster is left alone."""
    require_slurm()
    site = f"sweep-{uuid.uuid4().hex[:6]}"  # jobs of other tests and runs carry other markers
    dead = SlurmBackend(tmp_path / "dead", gpu_type="H100")
    dead.site_name = site
    other = SlurmBackend(tmp_path / "other", gpu_type="H100")
    other.site_name = f"{site}-other"
    orphan: int | None = None
    try:
        dead.start(assignment(7, "sleep 120"), None)
        other.start(assignment(8, "sleep 120"), None)
        wait_until(lambda: {r.attempt_id: r for r in dead.poll()}[7].state is AttemptState.RUNNING, "attempt 7")
        wait_until(lambda: {r.attempt_id: r for r in other.poll()}[8].state is AttemptState.RUNNING, "attempt 8")
        record = json.loads((tmp_path / "dead" / "attempts" / "7" / "attempt.json").read_text())
        orphan = int(record["slurm_job_id"])
        # The agent dies here: `dead` is never used again, nothing reports or cancels its job any more.
        client = FakeClient()  # a server that tells the new agent it holds nothing
        agent = Agent(client, site, SlurmBackend(tmp_path / "next", gpu_type="H100"), tmp_path / "agent", agent_id="n")
        agent.register()
        agent.step()
        cli = SlurmCli()

        def cancelled() -> bool:
            job = cli.jobs().get(orphan)
            return job is None or job.state.upper() in ("CANCELLED", "COMPLETING")

        wait_until(cancelled, f"Slurm job {orphan} to be cancelled", timeout=30)
        assert {r.attempt_id: r for r in other.poll()}[8].state is AttemptState.RUNNING, "another site's job runs on"
    finally:
        other.stop_all(grace_s=0.1, timeout_s=20)
        if orphan is not None:
            SlurmCli().cancel(orphan)  # if the sweep failed: leave the cluster clean
