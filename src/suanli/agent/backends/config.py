"""The agent's engine config file, and the one place that builds a backend from it.

An operator writes it once per site (``suanli agent --backend slurm --config agent.yaml``)::

    backend: slurm                 # local | slurm | ray (--backend overrides)
    work_dir: /shared/suanli/tj    # attempts and checkpoints; on Slurm, a file system every node mounts
    local:
      run_as: {bj-ai: suanli-bjai} # tenant -> OS user its jobs run as (the agent must run as root)
      run_as_default: nobody       # optional: the user for every other tenant
      sandbox: bwrap               # bwrap (default) | none: run jobs unsandboxed (warned at start)
      sandbox_user: nobody         # root agent: who sandboxed jobs run as when run_as names none
    slurm:
      partition: gpu               # where suanli's jobs go
      account: suanli              # optional
      gpu_type: H100               # the type of nodes whose gres has none (Gres=gpu:8)
      cpus_per_task: 16            # optional, asked for every job
      mem_per_node_gib: 256        # optional; else Slurm's DefMemPerCPU
      oci_bundles: /shared/oci     # optional: OCI bundles for `image:` jobs (srun --container)
      rest_url: http://127.0.0.1:6820   # optional: slurmrestd instead of the CLI
      rest_user: suanli
      rest_token_file: /etc/suanli/slurm.jwt   # from `scontrol token username=suanli lifespan=...`
    ray:
      address: http://127.0.0.1:8265   # the head node's dashboard
      gpu_resource: GPU
      gpu_type: A800
      containers: true             # optional: podman on every node, for `image:` jobs (image_uri)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from suanli.agent.backends.base import Backend
from suanli.agent.backends.local import LocalBackend
from suanli.agent.backends.ray import RayBackend
from suanli.agent.backends.slurm import SlurmBackend
from suanli.agent.backends.slurm_api import SlurmCli, SlurmRest
from suanli.core.errors import SuanliError
from suanli.core.network import NodeDecl
from suanli.core.spec import StrictModel
from suanli.core.validation import parse_yaml_as

BACKENDS = ("local", "slurm", "ray")


class LocalConfig(StrictModel):
    #: Tenant → OS user (name or uid) whose jobs run as that user; needs the agent to run as root.
    run_as: dict[str, str] = Field(default_factory=dict)
    #: The OS user of every tenant ``run_as`` does not name (None: the agent's own user).
    run_as_default: str | None = None
    #: ``bwrap``: every rank runs in a bubblewrap sandbox (the default; see agent/backends/sandbox.py);
    #: ``none``: unsandboxed, with a warning at start (the network file's ``sandbox: none``).
    sandbox: Literal["bwrap", "none"] = "bwrap"
    #: The OS user sandboxed jobs run as when the agent is root and ``run_as`` names none.
    sandbox_user: str = "nobody"


class SlurmConfig(StrictModel):
    partition: str | None = None
    account: str | None = None
    gpu_type: str | None = None
    cpus_per_task: float | None = Field(default=None, gt=0)
    mem_per_node_gib: float | None = Field(default=None, gt=0)
    pin_nodes: bool = True
    extra_args: list[str] = Field(default_factory=list)
    #: A folder every node mounts with one OCI bundle per image, for ``srun --container``
    #: (Slurm 22.05+ with oci.conf); unset: jobs that name an ``image:`` are not run here.
    oci_bundles: Path | None = None
    rest_url: str | None = None
    rest_user: str | None = None
    rest_token: str | None = None
    rest_token_file: Path | None = None


class RayConfig(StrictModel):
    address: str = "http://127.0.0.1:8265"
    gpu_resource: str = "GPU"
    gpu_type: str | None = None
    cpus_per_job: float | None = Field(default=None, gt=0)
    #: Every node has podman: jobs' ``image:`` goes to Ray as ``runtime_env.image_uri``.
    containers: bool = False


class AgentConfig(StrictModel):
    backend: Literal["local", "slurm", "ray"] = "local"
    work_dir: Path | None = None
    local: LocalConfig = Field(default_factory=LocalConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


def read_agent_config(path: Path) -> AgentConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuanliError(f"cannot read the agent config {path}: {exc.strerror or exc}") from exc
    return parse_yaml_as(AgentConfig, text, str(path))


def make_backend(
    name: str, work_dir: Path, config: AgentConfig | None = None, nodes: Sequence[NodeDecl] | None = None
) -> Backend:
    """The backend ``name`` with its section of ``config``. ``nodes`` declares the local backend's
    virtual nodes; an engine reports its own."""
    config = config or AgentConfig()
    if name == "local":
        return LocalBackend(
            work_dir,
            nodes=nodes or None,
            run_as=config.local.run_as,
            run_as_default=config.local.run_as_default,
            sandbox=config.local.sandbox,
            sandbox_user=config.local.sandbox_user,
        )
    if name == "slurm":
        s = config.slurm
        return SlurmBackend(
            work_dir,
            _slurm_api(s),
            partition=s.partition,
            account=s.account,
            gpu_type=s.gpu_type,
            cpus_per_task=s.cpus_per_task,
            mem_per_node_gib=s.mem_per_node_gib,
            pin_nodes=s.pin_nodes,
            extra_args=s.extra_args,
            oci_bundles=s.oci_bundles,
        )
    if name == "ray":
        r = config.ray
        return RayBackend(
            work_dir,
            r.address,
            gpu_resource=r.gpu_resource,
            gpu_type=r.gpu_type,
            cpus_per_job=r.cpus_per_job,
            containers=r.containers,
        )
    raise SuanliError(f"there is no backend '{name}'; choose one of: {', '.join(BACKENDS)}")


def _slurm_api(s: SlurmConfig) -> SlurmCli | SlurmRest:
    if not s.rest_url:
        return SlurmCli()
    token = s.rest_token or os.environ.get("SLURM_JWT")
    if s.rest_token_file is not None:
        try:
            token = s.rest_token_file.read_text().strip().removeprefix("SLURM_JWT=")
        except OSError as exc:
            raise SuanliError(f"cannot read slurm.rest_token_file {s.rest_token_file}: {exc.strerror}") from exc
    if not token or not s.rest_user:
        raise SuanliError(
            "slurm.rest_url needs rest_user and a token (rest_token_file, rest_token or $SLURM_JWT); "
            "make one with: scontrol token username=USER lifespan=SECONDS"
        )
    return SlurmRest(s.rest_url, s.rest_user, token)
