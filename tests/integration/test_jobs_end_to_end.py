"""Server + real agents with the local backend, in one process, driven tick by tick."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from suanli.app.control import ControlPlane
from suanli.app.jobs import get_job
from suanli.core.identity import SYSTEM
from suanli.core.protocol import AttemptReport, HeartbeatRequest
from suanli.core.spec import JobSpec, parse_job_spec
from suanli.core.states import AttemptState
from suanli.sdk import ApiError
from tests.integration.conftest import Net


def spec(text: str) -> JobSpec:
    return parse_job_spec(text)


def test_hello_runs_and_logs_arrive(net: Net) -> None:
    net.local_agent("beijing")
    job = net.client.submit(spec("name: hi\nrun: echo hello $SUANLI_JOB_ID rank=$SUANLI_NODE_RANK\n"))
    assert job.state.value == "PENDING"
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    done = net.client.job(job.id)
    assert done.exit_code == 0
    assert done.site == "beijing"
    [attempt] = done.attempts
    assert attempt.state.value == "SUCCEEDED"
    assert attempt.nodes[0].node == "bj-01"
    assert "".join(net.client.logs(job.id)) == f"hello {job.id} rank=0\n"


def test_gpu_slots_reach_the_job(net: Net) -> None:
    net.local_agent("tianjin-gaocun")
    first = net.client.submit(spec("run: echo $CUDA_VISIBLE_DEVICES\nresources: {accelerators: H100:2}\n"))
    second = net.client.submit(spec("run: echo $CUDA_VISIBLE_DEVICES\nresources: {accelerators: H100:3}\n"))
    net.pump(lambda: {net.state(first.id), net.state(second.id)} == {"SUCCEEDED"})
    assert "".join(net.client.logs(first.id)) == "0,1\n"
    assert "".join(net.client.logs(second.id)) == "2,3,4\n"


def test_failure_by_exit_code_is_not_retried(net: Net) -> None:
    net.local_agent("beijing")
    job = net.client.submit(spec("run: echo bad; exit 3\nmax_retries: 5\n"))
    net.pump(lambda: net.state(job.id) == "FAILED")
    out = net.client.job(job.id)
    assert out.exit_code == 3
    assert len(out.attempts) == 1
    assert "exited with code 3" in out.reason


def test_cancel_running_job_stops_its_process(net: Net, tmp_path: Path) -> None:
    net.local_agent("beijing")
    # The job is sandboxed: it tells it started through its log, not a file outside its folders.
    job = net.client.submit(spec("run: echo started; sleep 60\n"))
    net.pump(lambda: "started" in "".join(net.client.logs(job.id)) and net.state(job.id) == "RUNNING")
    out = net.client.cancel(job.id)
    assert out.cancel_requested
    net.pump(lambda: net.state(job.id) == "CANCELLED")
    assert net.client.job(job.id).attempts[0].state.value == "CANCELLED"


def test_cancel_pending_job_is_immediate(net: Net) -> None:
    job = net.client.submit(spec("run: 'true'\n"))
    assert net.client.cancel(job.id).state.value == "CANCELLED"
    with pytest.raises(ApiError):
        net.client.job("nosuchjob")


def test_second_big_job_waits_with_reason_then_runs(net: Net) -> None:
    _, fake = net.fake_agent("tianjin-gaocun")
    big = "run: train\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"
    first = net.client.submit(spec(big))
    second = net.client.submit(spec(big))
    net.cycle()  # placed and started
    net.cycle()  # reported running
    assert net.state(first.id) == "RUNNING"
    waiting = net.client.job(second.id)
    assert waiting.state.value == "PENDING"
    assert waiting.reason.startswith("no site has 16 × H100 free")
    assert "tianjin-gaocun frees 16 × H100 at ~10:00 UTC" in waiting.reason  # clock starts 09:00, 1h limit
    attempt_id = net.client.job(first.id).attempts[0].id
    fake.finish(attempt_id, exit_code=0)
    net.cycle()  # the end is reported
    net.cycle()  # the second job is placed and started
    net.cycle()  # and reported running
    assert net.state(first.id) == "SUCCEEDED"
    assert net.state(second.id) == "RUNNING"


def test_never_fits_is_refused_at_submit(net: Net) -> None:
    with pytest.raises(ApiError) as info:
        net.client.submit(spec("run: x\nresources: {accelerators: H100:64}\n"))
    assert info.value.status == 422
    assert "largest H100 node has 16 GPUs (tj-01 at tianjin-gaocun)" in info.value.detail


def test_multinode_gang_on_local_backend(net: Net) -> None:
    net.local_agent("ningxia")
    job = net.client.submit(
        spec("run: echo rank $SUANLI_NODE_RANK of $SUANLI_NUM_NODES\nresources: {accelerators: 910B:8, num_nodes: 3}\n")
    )
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    text = "".join(net.client.logs(job.id))
    for rank in range(3):
        assert f"[rank {rank}] rank {rank} of 3\n" in text
    assert len({n.node for n in net.client.job(job.id).attempts[0].nodes}) == 3


def test_workdir_is_uploaded_and_unpacked(net: Net, tmp_path: Path) -> None:
    net.local_agent("beijing")
    work = tmp_path / "w"
    work.mkdir()
    (work / "script.py").write_text("print('from the workdir')\n")
    job = net.client.submit(spec("run: python script.py\n"), workdir=work)
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    assert "".join(net.client.logs(job.id)) == "from the workdir\n"


def test_hostile_workdir_archive_refused(net: Net) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../evil")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    r = net.http.post("/api/v1/workdirs", content=buf.getvalue())
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "unsafe path" in r.json()["detail"]


def test_submission_survives_a_restart(net: Net) -> None:
    job = net.client.submit(spec("name: durable\nrun: 'true'\n"))
    again = ControlPlane(net.control.settings)
    try:
        again.migrate()
        with again.db.read() as session:
            assert get_job(session, job.id, SYSTEM).name == "durable"
    finally:
        again.close()


def test_lost_attempt_is_requeued_and_resumes_from_checkpoint(net: Net) -> None:
    net.local_agent("beijing")
    script = (
        'if [ -f "$SUANLI_CHECKPOINT_DIR/ckpt" ]; then echo resumed at attempt $SUANLI_ATTEMPT; '
        'else echo step1 > "$SUANLI_CHECKPOINT_DIR/ckpt"; echo first; sleep 60; fi'
    )
    job = net.client.submit(spec(f"run: '{script}'\nmax_retries: 2\n"))
    net.pump(lambda: "first" in "".join(net.client.logs(job.id)))
    # The site goes silent past its lease: the server declares the attempt LOST and requeues.
    net.clock.advance(31)
    net.control.tick()
    lost = net.client.job(job.id)
    assert lost.attempts[0].state.value == "LOST"
    assert lost.state.value == "PENDING"
    assert "back-off until" in lost.reason  # 10 s before the retry may be placed
    net.clock.advance(10)
    # The agent comes back: it is told to stop attempt 1 and gets attempt 2, which resumes.
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    done = net.client.job(job.id)
    assert [a.state.value for a in done.attempts] == ["LOST", "SUCCEEDED"]
    text = "".join(net.client.logs(job.id))
    assert text.index("first") < text.index("--- attempt 2 at beijing ---") < text.index("resumed at attempt 2")


def test_stale_fencing_token_is_ignored(net: Net) -> None:

    agent, _fake = net.fake_agent("beijing")
    job = net.client.submit(spec("run: x\n"))
    net.cycle()
    net.cycle()
    attempt = net.client.job(job.id).attempts[0]
    forged = HeartbeatRequest(
        site="beijing",
        agent_id="agent-beijing",
        attempts=[
            AttemptReport(
                attempt_id=attempt.id, fencing_token=attempt.id - 1, state=AttemptState.SUCCEEDED, exit_code=0
            )
        ],
    )
    reply = agent.client.agent_heartbeat(forged)  # type: ignore[attr-defined]
    assert attempt.id in reply.forget
    assert net.state(job.id) == "RUNNING"


def test_agent_with_wrong_token_is_refused(net: Net) -> None:
    r = net.http.post(
        "/api/v1/agents/heartbeat",
        json={"site": "beijing", "agent_id": "x"},
        headers={"Authorization": "Bearer wrong"},
    )
    assert r.status_code == 401
    assert r.json()["title"] == "Unauthorized"


def test_problem_documents(net: Net) -> None:
    r = net.http.get("/api/v1/jobs/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith("no job 'nope'")
    r = net.http.post("/api/v1/jobs", json={"spec": {"run": "x", "resources": {"cpus": "lots"}}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "resources.cpus"
    r = net.http.get("/api/v1/jobs", params={"state": "BOGUS"})
    assert r.status_code == 422


def test_listing_filters_and_pages(net: Net) -> None:
    ids = [net.client.submit(spec(f"name: j{i}\nrun: x\n")).id for i in range(5)]
    net.client.cancel(ids[0])
    page = net.client.jobs(limit=2)
    assert [j.id for j in page.items] == ids[::-1][:2]
    assert page.next_cursor
    assert [j.id for j in net.client.iter_jobs(limit=2)] == ids[::-1]
    assert [j.id for j in net.client.jobs(state="CANCELLED").items] == [ids[0]]
    assert [j.id for j in net.client.jobs(name="j3").items] == [ids[3]]


def test_latency_limit_is_measured_from_the_tenants_home(net: Net) -> None:
    net.fake_agent("ningxia")
    job = net.client.submit(spec("run: x\nresources: {accelerators: 910B:1}\nplacement: {max_latency_ms: 5}\n"))
    assert job.tenant == "bj-ai"  # the network's first tenant, home region beijing
    net.cycle()
    waiting = net.client.job(job.id)
    assert waiting.state.value == "PENDING"
    assert "ningxia: 28 ms from beijing is over max_latency_ms 5" in waiting.reason
    near = net.client.submit(spec("run: x\nresources: {accelerators: 910B:1}\nplacement: {max_latency_ms: 30}\n"))
    net.cycle()
    assert net.state(near.id) == "SCHEDULED"


def test_a_dataset_that_is_not_registered_is_refused_at_submit(net: Net) -> None:
    with pytest.raises(ApiError) as info:
        net.client.submit(spec("run: x\ndatasets: [{name: notes, mount: /data/notes}]\n"))
    assert info.value.status == 422
    assert "no dataset 'notes' of tenant 'bj-ai'" in info.value.detail


def test_drain_and_undrain_a_node(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    node = net.client.drain("tj-01", "replacing a fan")
    assert node.state == "drained"
    assert node.reason == "drained: replacing a fan"
    job = net.client.submit(spec("run: x\nresources: {accelerators: H100:1}\n"))
    net.cycle()
    waiting = net.client.job(job.id)
    assert waiting.state.value == "PENDING"
    assert "tj-01 drained: replacing a fan" in waiting.reason
    assert net.client.undrain("tj-01").state == "idle"
    net.cycle()
    assert net.state(job.id) == "SCHEDULED"
    with pytest.raises(ApiError) as info:
        net.client.drain("tj-99", "x")
    assert info.value.status == 404
    with pytest.raises(ApiError):
        net.client.drain("tj-01", "  ")


def test_retry_on_listed_exit_codes_only(net: Net) -> None:
    net.local_agent("beijing")
    script = 'if [ "$SUANLI_ATTEMPT" = 1 ]; then exit 75; else echo second try; fi'
    job = net.client.submit(spec(f"run: '{script}'\nretry: {{on_exit_codes: [75]}}\n"))
    net.pump(lambda: "back-off until" in net.client.job(job.id).reason)
    assert net.client.job(job.id).reason.startswith("retrying after exit code 75 (retry.on_exit_codes)")
    net.clock.advance(10)
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    done = net.client.job(job.id)
    assert [(a.state.value, a.exit_code) for a in done.attempts] == [("FAILED", 75), ("SUCCEEDED", 0)]
    assert "second try" in "".join(net.client.logs(job.id))
