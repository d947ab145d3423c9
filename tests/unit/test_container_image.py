"""``image:``: the spec's check of its shape, the podman command line a rank runs under (no
secret in it), the sites' ``containers`` flag and the scheduler's constraint with its reason."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from suanli.agent.backends.container import (
    PODMAN_ENV,
    PRELUDE,
    ContainerRank,
    container_name,
    podman_argv,
    remove_command,
)
from suanli.agent.backends.ray import RayBackend
from suanli.agent.backends.slurm import SlurmBackend
from suanli.core.errors import SpecError
from suanli.core.images import parse_image
from suanli.core.network import parse_network
from suanli.core.scheduler import NodeState, PendingJob, SiteState, explain_sites, schedule
from suanli.core.spec import Resources, parse_job_spec
from tests.unit.test_engine_backends import ScriptedSlurm
from tests.unit.test_engine_backends import spec as slurm_spec
from tests.unit.test_secrets import _RecordingRay

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
SECRET = "s3cret-value-never-in-argv"


# -- the spec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "docker.io/pytorch/pytorch:2.4-cuda12",
        "localhost/suanli-test:1",
        "busybox",
        "registry.example.com:5000/team/train:v1.2",
        "localhost/x@sha256:" + "a" * 64,
        "oci-archive:/srv/images/train.tar",
        "docker-archive:/srv/images/train.tar:train:1",
    ],
)
def test_image_shapes_accepted(text: str) -> None:
    spec = parse_job_spec(f"run: echo hi\nimage: '{text}'\n")
    assert spec.image == text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Docker.io/UPPER/Case:1", "not an image reference"),
        ("https://docker.io/library/busybox:1", "without a scheme"),
        ("localhost/x:1 --privileged", "not an image reference"),
        ("oci-archive:relative/path.tar", "absolute path"),
        ("oci-archive:/srv/../etc/shadow", "absolute path"),
        ("docker-archive:/srv/a,b.tar", "absolute path"),
        ("", "1-255 characters"),
        ("a" * 300, "1-255 characters"),
    ],
)
def test_garbage_images_refused_with_the_fix(text: str, words: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_job_spec(f"run: echo hi\nimage: '{text}'\n")
    assert words in str(err.value)
    assert "image" in str(err.value)


def test_archive_kinds() -> None:
    ref = parse_image("oci-archive:/srv/images/train.tar")
    assert (ref.kind, ref.path, ref.is_archive) == ("oci-archive", "/srv/images/train.tar", True)
    assert parse_image("localhost/a:1").kind == "reference"


# -- the podman command line -------------------------------------------------------------------


def _rank(tmp_path: Path, **kw: object) -> ContainerRank:
    work, ckpt, out, data = (tmp_path / d for d in ("workdir", "ckpt", "out", "datasets"))
    env = {
        "PATH": "/host/venv/bin:/usr/bin",
        "HOME": "/root",
        "AGENT_ONLY": "x",
        "LR": "1e-4",
        "HF_TOKEN": SECRET,
        "SUANLI_JOB_ID": "j-1",
        "SUANLI_CHECKPOINT_DIR": str(ckpt),
        "SUANLI_OUTPUT_DIR": str(out),
        "SUANLI_DATASETS_DIR": str(data),
        "SUANLI_DATASET_NOTES": str(data / "notes"),
        "CUDA_VISIBLE_DEVICES": "1,3",
        "SUANLI_NODE_RANK": "0",
    }
    fields: dict[str, object] = {
        "image": "localhost/suanli-test:1",
        "name": container_name(12, 0),
        "workdir": work,
        "checkpoint_dir": ckpt,
        "env": env,
        "job_env_names": ("LR", "HF_TOKEN"),
        "dataset_mounts": {"notes": "/data/notes"},
        "memory_gib": 2.0,
        "cpus": 1.5,
        "gpu_indices": (1, 3),
    }
    fields.update(kw)
    return ContainerRank(**fields)  # type: ignore[arg-type]


def test_argv_runs_runc_never_pulls_mounts_folders_and_hides_values(tmp_path: Path) -> None:
    devices = {"/dev/nvidia1", "/dev/nvidia3", "/dev/nvidiactl", "/dev/nvidia0"}
    argv, env = podman_argv(_rank(tmp_path), podman="/usr/bin/podman", exists=devices.__contains__)
    joined = " ".join(argv)
    assert argv[:5] == ["/usr/bin/podman", "--runtime", "runc", "run", "--rm"]
    assert argv[-5:] == ["localhost/suanli-test:1", "/bin/sh", "-c", PRELUDE, "suanli-env"]
    for flag in ("--pull never", "--init", "--name suanli-a12-r0", "--ulimit nofile=1024:1024", "--network host"):
        assert flag in joined
    assert "--ulimit nproc=" in joined
    assert "--memory 2048m" in joined
    assert "--cpus 1.5" in joined
    assert f"type=bind,source={tmp_path / 'workdir'},target=/workdir" in joined
    assert f"type=bind,source={tmp_path / 'ckpt'},target=/suanli/checkpoint" in joined
    assert f"type=bind,source={tmp_path / 'out'},target=/suanli/output" in joined
    assert f"type=bind,source={tmp_path / 'datasets'},target=/suanli/datasets,ro" in joined
    assert f"type=bind,source={tmp_path / 'datasets' / 'notes'},target=/data/notes,ro" in joined
    # Only this rank's GPUs and the control device that exists; never another job's GPU 0.
    assert "--device /dev/nvidia1 --device /dev/nvidia3 --device /dev/nvidiactl" in joined
    assert "/dev/nvidia0" not in joined
    # No value of any variable is on the command line; carried names only, and only the job's.
    assert SECRET not in joined
    assert "1e-4" not in joined
    for name in ("HF_TOKEN", "LR", "SUANLI_NODE_RANK", "CUDA_VISIBLE_DEVICES"):
        assert f"--env SUANLI_ENV__{name}" in joined
    assert "--env SUANLI_ENV_NAMES" in joined
    # podman (root) gets a clean environment: nothing the job named, nothing of the host's.
    assert {k for k in env if not k.startswith("SUANLI_ENV")} == set(PODMAN_ENV)
    assert "AGENT_ONLY" not in " ".join(env)
    assert env["PATH"] == PODMAN_ENV["PATH"]
    assert set(env["SUANLI_ENV_NAMES"].split()) >= {"HF_TOKEN", "LR", "SUANLI_CHECKPOINT_DIR"}
    assert "PATH" not in env["SUANLI_ENV_NAMES"].split()
    assert "AGENT_ONLY" not in env["SUANLI_ENV_NAMES"]
    # Values travel in podman's environment, host paths rewritten to the paths inside.
    assert env["SUANLI_ENV__HF_TOKEN"] == SECRET
    assert env["SUANLI_ENV__SUANLI_CHECKPOINT_DIR"] == "/suanli/checkpoint"
    assert env["SUANLI_ENV__SUANLI_OUTPUT_DIR"] == "/suanli/output"
    assert env["SUANLI_ENV__SUANLI_DATASETS_DIR"] == "/suanli/datasets"
    assert env["SUANLI_ENV__SUANLI_DATASET_NOTES"] == "/data/notes"


def test_a_job_variable_podman_would_obey_never_reaches_podman(tmp_path: Path) -> None:
    rank = _rank(tmp_path)
    env_in = {**rank.env, "LD_PRELOAD": "/tmp/evil.so", "CONTAINERS_CONF": "/tmp/evil.conf"}
    names = (*rank.job_env_names, "LD_PRELOAD", "CONTAINERS_CONF")
    _, env = podman_argv(replace(rank, env=env_in, job_env_names=names), exists=lambda _p: False)
    assert "LD_PRELOAD" not in env
    assert "CONTAINERS_CONF" not in env
    assert env["SUANLI_ENV__LD_PRELOAD"] == "/tmp/evil.so"  # it reaches the job, inside, as LD_PRELOAD


def test_prelude_exports_values_exactly(tmp_path: Path) -> None:
    value = 'a b $(id) "q" \\ `z`\nline2'
    env = {"PATH": "/usr/bin:/bin", "SUANLI_ENV_NAMES": "A B", "SUANLI_ENV__A": value, "SUANLI_ENV__B": ""}
    out = subprocess.run(
        ["/bin/sh", "-c", PRELUDE, "suanli-env", "/bin/sh", "-c", 'printf "[%s]" "$A" "$B"; env | grep -c SUANLI_ENV'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert out == f"[{value}][]0\n"


def test_argv_network_none_user_and_cdi(tmp_path: Path) -> None:
    rank = _rank(tmp_path, network="none", user="1001:1001", memory_gib=None, cpus=None)
    argv, _ = podman_argv(rank, exists=lambda p: p == "/etc/cdi/nvidia.yaml")
    joined = " ".join(argv)
    assert "--network none" in joined
    assert "--user 1001:1001" in joined
    assert "--memory" not in joined
    assert "--cpus" not in joined
    assert "--device nvidia.com/gpu=1 --device nvidia.com/gpu=3" in joined


@pytest.mark.parametrize("mount", ["/data/x,target=/etc", "/data/../etc", "/data/a:b"])
def test_argv_refuses_a_mount_that_could_split_the_option(tmp_path: Path, mount: str) -> None:
    with pytest.raises(ValueError, match="cannot be mounted"):
        podman_argv(_rank(tmp_path, dataset_mounts={"notes": mount}), exists=lambda _p: False)


def test_remove_command_is_forceful_and_ignores_missing() -> None:
    assert remove_command("podman", ["suanli-a1-r0"]) == [
        "podman",
        "rm",
        "--force",
        "--ignore",
        "--time",
        "0",
        "suanli-a1-r0",
    ]


# -- sites that run containers, and the scheduler ------------------------------------------------


def test_network_file_containers_defaults_by_backend() -> None:
    net = parse_network(
        """
sites:
  - {name: a, region: r, backend: local}
  - {name: b, region: r, backend: local, containers: false}
  - {name: c, region: r, backend: slurm}
  - {name: d, region: r, backend: slurm, containers: true}
  - {name: e, region: r, backend: ray}
"""
    )
    assert [s.runs_containers for s in net.sites] == [True, False, False, True, False]


def _site(name: str, containers: bool) -> SiteState:
    node = NodeState(f"{name}-01", None, 0, 16, 64, (), 16, 64)
    return SiteState(name, "tianjin", [node], containers=containers)


def test_scheduler_sends_image_jobs_only_to_sites_that_run_containers() -> None:
    sites = [_site("tianjin-gaocun", False), _site("wuqing", True)]
    res = Resources(cpus=1, memory=1)
    jobs = [PendingJob("img", 1, res, image="localhost/suanli-test:1"), PendingJob("plain", 2, res)]
    result = schedule(jobs, sites, NOW)
    placed = {p.job_id: p.site for p in result.placements}
    assert placed["img"] == "wuqing"
    assert "plain" in placed
    only = schedule([jobs[0]], [sites[0]], NOW)
    assert not only.placements
    assert only.reasons["img"] == (
        "no site may take it: tianjin-gaocun runs no containers (the job runs in image localhost/suanli-test:1)"
    )


def test_explain_names_the_site_that_runs_no_containers() -> None:
    sites = [_site("tianjin-gaocun", False), _site("wuqing", True)]
    job = PendingJob("img", 1, Resources(cpus=1, memory=1), image="localhost/suanli-test:1")
    verdicts = {v.site: v for v in explain_sites(job, sites, NOW)}
    assert not verdicts["tianjin-gaocun"].allowed
    assert verdicts["tianjin-gaocun"].text.startswith("tianjin-gaocun runs no containers")
    assert verdicts["wuqing"].allowed
    plain = PendingJob("plain", 2, Resources(cpus=1, memory=1))
    assert all(v.allowed for v in explain_sites(plain, sites, NOW))


# -- Slurm: --container with a bundle, refused without ---------------------------------------------


def test_slurm_bundle_lookup_and_refusal(tmp_path: Path) -> None:
    bundles = tmp_path / "oci"
    (bundles / "localhost_train_1").mkdir(parents=True)
    (bundles / "localhost_train_1" / "config.json").write_text("{}")
    with_oci = SlurmBackend(tmp_path / "w1", api=object(), oci_bundles=bundles)  # type: ignore[arg-type]
    assert with_oci.containers_available() is None  # the network file decides
    assert with_oci.bundle_for("localhost/train:1") == bundles / "localhost_train_1"
    assert with_oci.bundle_for("localhost/other:1") is None
    without = SlurmBackend(tmp_path / "w2", api=object())  # type: ignore[arg-type]
    assert without.containers_available() is False


def test_slurm_passes_the_bundle_as_srun_container(tmp_path: Path) -> None:
    bundles = tmp_path / "oci"
    (bundles / "localhost_train_1").mkdir(parents=True)
    (bundles / "localhost_train_1" / "config.json").write_text("{}")
    slurm = ScriptedSlurm()
    backend = SlurmBackend(tmp_path / "w", slurm, oci_bundles=bundles)
    backend.site_name = "tianjin-gaocun"
    backend.start(slurm_spec(1, image="localhost/train:1"), None)
    [job] = slurm.submitted
    batch = Path(job.sbatch_args()[-1]).read_text()
    assert f"--container={bundles / 'localhost_train_1'}" in batch
    backend.start(slurm_spec(2, image="localhost/other:1"), None)
    [missing] = [r for r in backend.poll() if r.attempt_id == 2]
    assert missing.state.value == "FAILED"
    assert missing.message.startswith("image localhost/other:1 not found at site tianjin-gaocun")
    plain = SlurmBackend(tmp_path / "w2", ScriptedSlurm())
    plain.start(slurm_spec(3), None)
    assert "--container" not in Path(plain.api.submitted[0].sbatch_args()[-1]).read_text()  # type: ignore[attr-defined]


def test_ray_puts_the_image_in_runtime_env(tmp_path: Path) -> None:
    ray = _RecordingRay()
    backend = RayBackend(tmp_path / "w", jobs=ray, containers=True)
    assert backend.containers_available() is None
    backend.start(slurm_spec(1, nodes=1, gpus=0, image="localhost/train:1", run="echo hi"), None)
    assert ray.kwargs["runtime_env"]["image_uri"] == "localhost/train:1"
    refusing = RayBackend(tmp_path / "w2", jobs=_RecordingRay())
    assert refusing.containers_available() is False
    refusing.start(slurm_spec(2, nodes=1, gpus=0, image="localhost/train:1"), None)
    [report] = [r for r in refusing.poll() if r.attempt_id == 2]
    assert report.state.value == "FAILED"
    assert "runs no containers" in report.message
