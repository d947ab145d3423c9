"""The Slurm and Ray backends without their engines: Slurm's JSON and states against a scripted
SlurmApi, sbatch's arguments, and the filter that keeps Ray's own lines out of a job's log."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from suanli.agent.agent import Agent
from suanli.agent.backends.config import AgentConfig, make_backend, read_agent_config
from suanli.agent.backends.ray import RayBackend, user_output
from suanli.agent.backends.slurm import SlurmBackend
from suanli.agent.backends.slurm_api import (
    JobRequest,
    SlurmApi,
    SlurmJob,
    SlurmNode,
    SlurmRejected,
    SlurmUnavailable,
    parse_gres,
    parse_sacct,
    parse_sinfo,
    parse_squeue,
    wait_status_code,
)
from suanli.core.errors import SuanliError
from suanli.core.protocol import AssignedNode, AttemptAssignment
from suanli.core.states import AttemptState
from tests.unit.test_agent_loop import FakeClient, reply


class ScriptedSlurm(SlurmApi):
    """A Slurm whose jobs' states the test sets."""

    def __init__(self) -> None:
        self.submitted: list[JobRequest] = []
        self.queue: dict[int, SlurmJob] = {}
        self.acct: dict[int, SlurmJob] = {}
        self.cancelled: list[int] = []
        self.refuse: str | None = None
        self.unavailable = False

    def submit(self, job: JobRequest) -> int:
        if self.refuse:
            raise SlurmRejected(self.refuse)
        self.submitted.append(job)
        job_id = 100 + len(self.submitted)
        self.queue[job_id] = SlurmJob(
            job_id=job_id, name=job.name, state="PENDING", reason="None", comment=job.comment or ""
        )
        return job_id

    def jobs(self) -> dict[int, SlurmJob]:
        if self.unavailable:
            raise SlurmUnavailable("squeue: Unable to contact slurm controller")
        return dict(self.queue)

    def accounting(self, job_ids: Sequence[int]) -> dict[int, SlurmJob]:
        return {i: self.acct[i] for i in job_ids if i in self.acct}

    def cancel(self, job_id: int) -> None:
        self.cancelled.append(job_id)
        if job_id in self.queue:
            self.queue[job_id] = replace(self.queue[job_id], state="CANCELLED")

    def nodes(self) -> list[SlurmNode]:
        return [
            SlurmNode("gpu-01", 64, 512 * 1024, "gpu:H100:8(S:0-1)", "idle", (), "", ("gpu",)),
            SlurmNode("gpu-02", 64, 512 * 1024, "gpu:8", "idle", ("DRAIN",), "bad DIMM", ("gpu",)),
            SlurmNode("cpu-01", 32, 128 * 1024, "", "down", (), "not responding", ("cpu",)),
        ]


def spec(attempt_id: int = 1, nodes: int = 1, gpus: int = 2, **fields: object) -> AttemptAssignment:
    values: dict[str, object] = {
        "attempt_id": attempt_id,
        "fencing_token": 1,
        "job_id": "j1",
        "job_name": "t",
        "attempt_number": 1,
        "run": "python train.py",
        "gpu_type": "H100",
        "nodes": [AssignedNode(node=f"gpu-0{r + 1}", rank=r, gpu_indices=list(range(gpus))) for r in range(nodes)],
    }
    values.update(fields)
    return AttemptAssignment.model_validate(values)


@pytest.fixture
def slurm() -> ScriptedSlurm:
    return ScriptedSlurm()


def _state(backend: SlurmBackend, attempt_id: int = 1) -> tuple[AttemptState, int | None, str]:
    [r] = [r for r in backend.poll() if r.attempt_id == attempt_id]
    return r.state, r.exit_code, r.message


def test_inventory_health_and_partition(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm, partition="gpu", gpu_type="A800")
    nodes = {n.name: n for n in backend.inventory()}
    assert set(nodes) == {"gpu-01", "gpu-02"}, "only the configured partition"
    assert (nodes["gpu-01"].gpu_type, nodes["gpu-01"].gpus_total, nodes["gpu-01"].healthy) == ("H100", 8, True)
    assert (nodes["gpu-02"].gpu_type, nodes["gpu-02"].healthy) == ("A800", False)
    assert nodes["gpu-02"].reason == "Slurm says IDLE DRAIN: bad DIMM"
    assert nodes["gpu-01"].memory == 512


def test_the_job_spec_maps_to_sbatch(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm, partition="gpu", account="ai", cpus_per_task=16, mem_per_node_gib=64)
    backend.inventory()
    backend.start(spec(nodes=2, gpus=8, time_limit_s=90 * 60 + 1), None)
    [job] = slurm.submitted
    args = job.sbatch_args()
    for expected in (
        "--parsable",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gres=gpu:H100:8",
        "--cpus-per-task=16",
        "--mem=65536M",
        "--time=91",
        "--partition=gpu",
        "--account=ai",
        "--nodelist=gpu-01,gpu-02",
    ):
        assert expected in args
    assert args[-1].endswith("batch.sh")
    assert job.env["SUANLI_NUM_NODES"] == "2"
    assert "SUANLI_AGENT_TOKEN" not in job.env
    batch = Path(args[-1]).read_text()
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in batch
    assert "srun" in batch
    assert "SLURM_PROCID" in (Path(args[-1]).parent / "rank.sh").read_text()


def test_the_jobs_own_cpus_and_memory_win_over_the_site_default(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm, cpus_per_task=16, mem_per_node_gib=64)
    backend.inventory()
    node = AssignedNode(node="gpu-01", rank=0, gpu_indices=[0], cpus=4, memory_gib=8)
    backend.start(spec().model_copy(update={"nodes": [node]}), None)
    args = slurm.submitted[0].sbatch_args()
    assert "--cpus-per-task=4" in args
    assert "--mem=8192M" in args


def test_untyped_gres_asks_for_untyped_gpus(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm)
    backend.start(
        spec(nodes=1, gpus=2, attempt_id=1).model_copy(
            update={"nodes": [AssignedNode(node="gpu-02", rank=0, gpu_indices=[0, 1])]}
        ),
        None,
    )
    assert "--gres=gpu:2" in slurm.submitted[0].sbatch_args()


@pytest.mark.parametrize(
    ("slurm_state", "state", "code", "words"),
    [
        ("COMPLETED", AttemptState.SUCCEEDED, 0, ""),
        ("TIMEOUT", AttemptState.FAILED, None, "time limit 2m reached"),
        ("OUT_OF_MEMORY", AttemptState.FAILED, None, "ran out of memory"),
        ("NODE_FAIL", AttemptState.LOST, None, "a node failed"),
        ("PREEMPTED", AttemptState.PREEMPTED, None, "preempted by Slurm"),
        ("CANCELLED", AttemptState.CANCELLED, -15, "cancelled in Slurm"),
        ("BOOT_FAIL", AttemptState.FAILED, None, "BOOT_FAIL"),
    ],
)
def test_slurm_states_map_to_attempt_states(
    slurm: ScriptedSlurm, tmp_path: Path, slurm_state: str, state: AttemptState, code: int | None, words: str
) -> None:
    backend = SlurmBackend(tmp_path, slurm, refresh_s=0)
    backend.start(spec(time_limit_s=120), None)
    slurm.queue[101] = SlurmJob(job_id=101, name="x", state="PENDING", reason="Resources")
    assert _state(backend) == (AttemptState.STARTING, None, "queued in Slurm (Resources)")
    slurm.queue[101] = SlurmJob(job_id=101, name="x", state="RUNNING")
    assert _state(backend)[0] is AttemptState.STARTING, "setup runs until the batch script marks run"
    (tmp_path / "attempts" / "1" / "running").touch()
    assert _state(backend)[0] is AttemptState.RUNNING
    slurm.queue[101] = SlurmJob(job_id=101, name="x", state=slurm_state)
    got = _state(backend)
    assert (got[0], got[1]) == (state, code)
    assert words in got[2]
    slurm.queue[101] = SlurmJob(job_id=101, name="x", state="RUNNING")
    assert _state(backend)[0] is state, "a terminal state never changes"


def test_exit_codes_come_from_the_batch_script(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm, refresh_s=0)
    backend.start(spec(), None)
    (tmp_path / "attempts" / "1" / "result").write_text("setup 4\n")
    slurm.queue[101] = SlurmJob(job_id=101, name="x", state="FAILED", exit_code=4)
    assert _state(backend) == (AttemptState.FAILED, 4, "setup exited with code 4")


def test_a_job_the_controller_forgot_is_found_in_sacct(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    now = [0.0]
    backend = SlurmBackend(tmp_path, slurm, refresh_s=0, forgotten_grace_s=30, clock=lambda: now[0])
    backend.start(spec(attempt_id=1), None)
    backend.start(spec(attempt_id=2), None)
    del slurm.queue[101], slurm.queue[102]
    slurm.acct[101] = SlurmJob(job_id=101, name="x", state="COMPLETED", exit_code=0, elapsed_s=12)
    assert _state(backend, 1)[0] is AttemptState.SUCCEEDED
    assert _state(backend, 2)[0] is AttemptState.STARTING, "not known yet: wait"
    now[0] = 31
    assert _state(backend, 2) == (AttemptState.LOST, None, "Slurm has no record of job 102 any more")


def test_refused_jobs_fail_and_forget_cancels_live_ones(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    backend = SlurmBackend(tmp_path, slurm, refresh_s=0)
    slurm.refuse = "sbatch: error: Invalid generic resource (gres) specification"
    backend.start(spec(attempt_id=1), None)
    assert _state(backend, 1)[0] is AttemptState.FAILED
    assert "Invalid generic resource" in _state(backend, 1)[2]
    slurm.refuse = None
    backend.start(spec(attempt_id=2), None)
    backend.forget(2)
    assert slurm.cancelled == [101]
    assert not (tmp_path / "attempts" / "2").exists()


def test_json_parsers() -> None:
    assert wait_status_code(768) == 3
    assert wait_status_code(9) == -9
    assert wait_status_code(0) == 0
    assert parse_gres("gpu:4") == (None, 4)
    assert parse_gres("gpu:H100:8(S:0-1),shard:2") == ("H100", 8)
    assert parse_gres("") == (None, 0)
    [job] = parse_squeue(
        {
            "jobs": [
                {
                    "job_id": 7,
                    "name": "n",
                    "job_state": ["FAILED"],
                    "exit_code": 768,
                    "tres_alloc_str": "cpu=2,mem=2G,gres/gpu=1",
                }
            ]
        }
    ).values()
    assert (job.state, job.exit_code, job.allocated) == ("FAILED", 3, {"cpu": 2, "mem": 2048, "gres/gpu": 1})
    [acct] = parse_sacct(
        {
            "jobs": [
                {
                    "job_id": 7,
                    "state": {"current": "CANCELLED"},
                    "exit_code": {"status": "SIGNALED", "signal": {"signal_id": 15}},
                    "time": {"elapsed": 42, "start": 1, "end": 43},
                    "tres": {"allocated": [{"type": "cpu", "count": 2}, {"type": "gres", "name": "gpu", "count": 4}]},
                }
            ]
        }
    ).values()
    assert (acct.state, acct.exit_code, acct.elapsed_s, acct.allocated) == (
        "CANCELLED",
        -15,
        42,
        {"cpu": 2, "gres/gpu": 4},
    )
    [node] = parse_sinfo({"nodes": [{"name": "a", "cpus": 8, "real_memory": 1024, "state": ["IDLE", "DRAIN"]}]})
    assert (node.state, node.flags) == ("idle", ("DRAIN",))


def test_ray_log_filter_keeps_only_the_users_output() -> None:
    sid = "suanli-j-a1-abc"
    raw = (
        "2026-11-27 16:16:42,218\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        "\x1esuanli:begin\nhello\n"
        f"Running entrypoint for job {sid}: bash .suanli-entry.sh\n"
        "world\n\x1esuanli:setup-failed\n"
    )
    assert user_output(raw, sid, ended=True) == "hello\nworld\n"
    assert user_output("Runtime env is setting up.\n", sid, ended=False) == ""
    assert user_output("\x1esuanli:begin\nhi\nRunning entry", sid, ended=False) == "hi\n", "held back"
    assert user_output("\x1esuanli:begin\nno newline", sid, ended=False) == "no newline"


def test_agent_config_builds_each_backend(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "backend: slurm\nslurm: {partition: gpu, gpu_type: H100}\n"
        "ray: {address: 'http://127.0.0.1:1', gpu_resource: GPU_fake}\n"
    )
    config = read_agent_config(path)
    slurm = make_backend(config.backend, tmp_path / "s", config)
    assert isinstance(slurm, SlurmBackend)
    assert (slurm.partition, slurm.gpu_type) == ("gpu", "H100")
    ray = make_backend("ray", tmp_path / "r", config)
    assert isinstance(ray, RayBackend)
    assert ray.gpu_resource == "GPU_fake"
    with pytest.raises(SuanliError, match="rest_user"):
        make_backend("slurm", tmp_path, AgentConfig.model_validate({"slurm": {"rest_url": "http://x"}}))
    with pytest.raises(SuanliError, match="no backend 'k8s'"):
        make_backend("k8s", tmp_path)
    path.write_text("backend: slurm\nslurm: {partitoin: gpu}\n")
    with pytest.raises(SuanliError, match="partitoin"):
        read_agent_config(path)


# -- orphans: the jobs a previous agent of the site left on the engine ---------------------------


def _leftovers(slurm: ScriptedSlurm) -> None:
    """What the engine holds when a new agent of site "beijing" starts (job ids 1-6)."""
    for job in (
        SlurmJob(1, "suanli-j9-1", "RUNNING", comment="suanli-site=beijing"),  # the orphan
        SlurmJob(2, "suanli-j9-2", "PENDING", comment="suanli-site=beijing"),  # the orphan, still queued
        SlurmJob(3, "suanli-j8-1", "RUNNING", comment="suanli-site=tianjin"),  # another site's
        SlurmJob(4, "train", "RUNNING", comment="suanli-site=beijing"),  # a user's job, not named by suanli
        SlurmJob(5, "suanli-x-1", "RUNNING"),  # named like ours, no marker (someone else's)
        SlurmJob(6, "suanli-j7-1", "COMPLETED", comment="suanli-site=beijing"),  # ended already
    ):
        slurm.queue[job.job_id] = job


def test_a_starting_agent_cancels_its_sites_orphaned_slurm_jobs_only(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    _leftovers(slurm)
    backend = SlurmBackend(tmp_path / "w", slurm, refresh_s=0)
    client = FakeClient()
    agent = Agent(client, "beijing", backend, tmp_path / "a", agent_id="a")
    assert slurm.cancelled == [1, 2], "its own site's live suanli jobs, and nothing else"
    # The attempts this agent holds are its own: a later sweep leaves them alone.
    client.replies.append(reply(start=[spec(attempt_id=11)]))
    agent.register()
    agent.step()
    [submitted] = slurm.submitted
    assert "--comment=suanli-site=beijing" in submitted.sbatch_args(), "the marker the next agent's sweep reads"
    assert backend.sweep_orphans("beijing") == []
    assert slurm.cancelled == [1, 2]
    # A job of this site that no agent holds is cancelled by the next agent: this one's, once dropped.
    again = Agent(FakeClient(), "beijing", SlurmBackend(tmp_path / "w2", slurm), tmp_path / "b", agent_id="b")
    assert again is not None
    assert slurm.cancelled == [1, 2, 101]


def test_an_engine_away_at_the_start_is_swept_at_registration(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    _leftovers(slurm)
    slurm.unavailable = True
    agent = Agent(FakeClient(), "beijing", SlurmBackend(tmp_path / "w", slurm), tmp_path / "a", agent_id="a")
    assert slurm.cancelled == []
    slurm.unavailable = False
    agent.register()
    assert slurm.cancelled == [1, 2]
    agent.register()  # once per agent process
    assert slurm.cancelled == [1, 2]


def test_squeue_reads_the_comment() -> None:
    [job] = parse_squeue({"jobs": [{"job_id": 1, "name": "suanli-j-1", "comment": "suanli-site=s"}]}).values()
    assert job.comment == "suanli-site=s"


class ScriptedRay:
    """Ray's Job Submission client, with jobs the test lists."""

    def __init__(self) -> None:
        self.listed: list[Any] = []
        self.submitted: list[dict[str, Any]] = []
        self.stopped: list[str] = []

    def submit_job(self, **kwargs: Any) -> str:
        self.submitted.append(kwargs)
        sid = str(kwargs["submission_id"])
        self.listed.append(SimpleNamespace(submission_id=sid, metadata=kwargs["metadata"], status="RUNNING"))
        return sid

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(status="RUNNING", message="", start_time=None, end_time=None)

    def get_job_logs(self, job_id: str) -> str:
        return ""

    def list_jobs(self) -> list[Any]:
        return list(self.listed)

    def stop_job(self, job_id: str) -> bool:
        self.stopped.append(job_id)
        for job in self.listed:
            if job.submission_id == job_id:
                job.status = "STOPPED"
        return True

    def delete_job(self, job_id: str) -> bool:
        return True


def test_a_starting_agent_stops_its_sites_orphaned_ray_jobs_only(tmp_path: Path) -> None:
    ray = ScriptedRay()
    mine = {"suanli_job": "j9", "suanli_attempt": "5", "suanli_site": "beijing"}
    ray.listed = [
        SimpleNamespace(submission_id="suanli-j9-a5-abcdef", metadata=mine, status="RUNNING"),
        SimpleNamespace(submission_id="suanli-j9-a6-abcdef", metadata=mine, status="SUCCEEDED"),
        SimpleNamespace(
            submission_id="suanli-j8-a4-abcdef", metadata={**mine, "suanli_site": "tianjin"}, status="RUNNING"
        ),
        SimpleNamespace(submission_id="raysubmit_123", metadata=mine, status="PENDING"),
        SimpleNamespace(submission_id="suanli-old-a1-abcdef", metadata={}, status="RUNNING"),
        SimpleNamespace(submission_id=None, metadata=None, status="RUNNING"),  # a driver outside the job API
    ]
    backend = RayBackend(tmp_path / "w", jobs=ray, refresh_s=0)
    Agent(FakeClient(), "beijing", backend, tmp_path / "a", agent_id="a")
    assert ray.stopped == ["suanli-j9-a5-abcdef"]
    backend.start(spec(attempt_id=12, gpus=0), None)  # as the agent hands it over (site_name set)
    [submitted] = ray.submitted
    assert submitted["metadata"]["suanli_site"] == "beijing"
    assert backend.sweep_orphans("beijing") == [], "held: never stopped by a sweep"
    assert ray.stopped == ["suanli-j9-a5-abcdef"]


def test_a_partitioned_agent_cancels_its_engine_jobs_itself(slurm: ScriptedSlurm, tmp_path: Path) -> None:
    """The partition fence (``Agent._fence_if_partitioned``) reaches engine jobs: scancel at the
    orphan timeout without a lease renewal, while the agent lives."""
    backend = SlurmBackend(tmp_path / "w", slurm, refresh_s=0)
    client = FakeClient()
    agent = Agent(client, "beijing", backend, tmp_path / "a", agent_id="a")
    client.replies.append(reply(start=[spec(attempt_id=11)]))
    agent.register()
    agent.step()
    agent._fence_if_partitioned()
    assert slurm.cancelled == [], "the lease was just renewed"
    agent._last_ok = time.monotonic() - 25  # the orphan timeout of a 30 s lease is 24 s
    agent._fence_if_partitioned()
    assert slurm.cancelled == [101]
