"""RayBackend against a real Ray cluster (scripts/engines/ray.sh): inventory from the dashboard,
GPUs as a custom resource, time limits the backend enforces, and what Ray cannot do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.agent import Agent
from suanli.agent.backends.ray import RayBackend
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, LogChunk
from suanli.core.states import AttemptState
from tests.engines_support import RAY_ADDRESS, RAY_GPU_RESOURCE, require_ray
from tests.unit.test_agent_loop import FakeClient

pytestmark = pytest.mark.engine


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def assignment(attempt_id: int, run: str, nodes: int = 1, **fields: object) -> AttemptAssignment:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "fencing_token": attempt_id,
        "job_id": f"ray-{attempt_id}",
        "job_name": "engine-test",
        "attempt_number": 1,
        "run": run,
        "nodes": [AssignedNode(node=f"n{r}", rank=r, gpu_indices=[0]) for r in range(nodes)],
    }
    values.update(fields)
    return AttemptAssignment.model_validate(values)


def run_to_end(backend: RayBackend, attempt_id: int) -> tuple[AttemptReport, str]:
    chunks: list[LogChunk] = []

    def ended() -> bool:
        reports = backend.poll()
        chunks.extend(backend.read_logs())
        done = any(r.attempt_id == attempt_id and r.state.is_terminal() for r in reports)
        return done and backend.logs_drained(attempt_id)

    wait_until(ended, f"attempt {attempt_id} to end")
    [report] = [r for r in backend.poll() if r.attempt_id == attempt_id]
    return report, "".join(c.data for c in chunks if c.attempt_id == attempt_id)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[RayBackend]:
    require_ray()
    b = RayBackend(tmp_path / "site", RAY_ADDRESS, gpu_resource=RAY_GPU_RESOURCE, gpu_type="H100")
    yield b
    b.stop_all(grace_s=0.1, timeout_s=20)


def test_inventory_counts_the_gpu_resource(backend: RayBackend) -> None:
    [node] = backend.inventory()
    assert (node.gpu_type, node.gpus_total, node.healthy, node.gpu_source) == ("H100", 4, True, "ray")
    assert node.cpus >= 1


def test_multi_node_attempts_are_refused_in_words(backend: RayBackend) -> None:
    backend.start(assignment(1, "echo never", nodes=2), None)
    report, text = run_to_end(backend, 1)
    assert report.state is AttemptState.FAILED
    assert "one node" in report.message
    assert "[suanli]" in text


def test_the_backend_enforces_the_time_limit(backend: RayBackend) -> None:
    backend.start(assignment(2, "echo started; exec sleep 60", time_limit_s=3), None)
    report, text = run_to_end(backend, 2)
    assert report.state is AttemptState.FAILED
    assert report.message == "time limit 3s reached"
    assert text.startswith("started\n")


def test_ray_lines_never_reach_the_users_log(backend: RayBackend) -> None:
    backend.start(assignment(3, "printf 'no newline at the end'"), None)
    report, text = run_to_end(backend, 3)
    assert report.state is AttemptState.SUCCEEDED
    assert text == "no newline at the end"
    assert report.elapsed_s is not None


def test_a_new_agent_stops_the_job_a_dead_agent_left(tmp_path: Path) -> None:
    """An agent submits a job and dies (its backend is dropped, the job left running); the next
    agent of the site, which holds nothing, stops it at its start. A job of another site on the
    same cluster is left alone."""
    require_ray()
    site = f"sweep-{uuid.uuid4().hex[:6]}"  # jobs of other tests and runs carry other markers
    dead = RayBackend(tmp_path / "dead", RAY_ADDRESS, gpu_resource=RAY_GPU_RESOURCE, gpu_type="H100")
    dead.site_name = site
    other = RayBackend(tmp_path / "other", RAY_ADDRESS, gpu_resource=RAY_GPU_RESOURCE, gpu_type="H100")
    other.site_name = f"{site}-other"
    orphan: str | None = None
    try:
        dead.start(assignment(7, "sleep 120"), None)
        other.start(assignment(8, "sleep 120"), None)
        wait_until(lambda: {r.attempt_id: r for r in dead.poll()}[7].state is AttemptState.RUNNING, "attempt 7")
        wait_until(lambda: {r.attempt_id: r for r in other.poll()}[8].state is AttemptState.RUNNING, "attempt 8")
        client_of_ray = dead.jobs
        [orphan] = [
            j.submission_id
            for j in client_of_ray.list_jobs()
            if (j.metadata or {}).get("suanli_site") == site and (j.metadata or {}).get("suanli_attempt") == "7"
        ]
        # The agent dies here: `dead` is never used again, nothing reports or stops its job any more.
        client = FakeClient()  # a server that tells the new agent it holds nothing
        backend = RayBackend(tmp_path / "next", RAY_ADDRESS, gpu_resource=RAY_GPU_RESOURCE, gpu_type="H100")
        agent = Agent(client, site, backend, tmp_path / "agent", agent_id="n")
        agent.register()
        agent.step()

        def stopped() -> bool:
            return str(getattr(client_of_ray.get_job_info(orphan).status, "value", "")) == "STOPPED"

        wait_until(stopped, f"Ray job {orphan} to be stopped", timeout=30)
        assert {r.attempt_id: r for r in other.poll()}[8].state is AttemptState.RUNNING, "another site's job runs on"
    finally:
        other.stop_all(grace_s=0.1, timeout_s=20)
        if orphan is not None:
            other.jobs.stop_job(orphan)  # if the sweep failed: leave the cluster clean
