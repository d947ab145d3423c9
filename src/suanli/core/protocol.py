"""The agent protocol: pull-based, so sites behind firewalls work.

An agent registers with its site token, then heartbeats with its inventory, node health, the
state of its attempts and new log output. The reply carries attempts to start and to stop.
Every attempt carries a fencing token; reports with a stale token are ignored by the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from suanli.core.states import AttemptState


class NodeReport(BaseModel):
    name: str
    gpu_type: str | None = None
    gpus_total: int = 0
    cpus: float
    memory: float
    healthy: bool = True
    reason: str = ""
    #: An unhealthy verdict that clears by itself (a hot GPU): the server places nothing new on
    #: the node while it is reported, but neither drains the node nor stops what runs there.
    transient: bool = False
    #: Where the GPUs were found: "nvml" (real) or "virtual" (declared slots).
    gpu_source: str = "virtual"


class AttemptReport(BaseModel):
    attempt_id: int
    fencing_token: int
    state: AttemptState
    exit_code: int | None = None
    message: str = ""
    #: Seconds the attempt has held its resources at the site so far, by the agent's clock
    #: (cumulative, frozen once it ended). The server meters the growth between reports.
    elapsed_s: float | None = None


class LogChunk(BaseModel):
    attempt_id: int
    fencing_token: int
    rank: int = 0
    #: Byte offset of ``data`` in that rank's log; lets the server drop re-sent chunks.
    offset: int
    data: str


class RegisterRequest(BaseModel):
    site: str
    agent_id: str
    backend: str = "local"
    version: str = ""
    nodes: list[NodeReport] = Field(default_factory=list)
    #: Whether the agent can run jobs that name an ``image:`` (the local backend: podman and runc
    #: found; Slurm and Ray: the site's agent config says so). None: an older agent, not said.
    containers: bool | None = None
    #: How the site isolates its jobs: ``bwrap`` (the local backend's sandbox), ``none`` (a site
    #: that declared ``sandbox: none``), or the engine's name (Slurm, Ray: the engine's own
    #: isolation). None: an older agent, not said.
    sandbox: str | None = Field(default=None, max_length=32)


class RegisterResponse(BaseModel):
    site: str
    lease_s: float
    heartbeat_s: float
    server_time: datetime


class AssignedNode(BaseModel):
    node: str
    rank: int
    gpu_indices: list[int] = Field(default_factory=list)
    #: CPUs and memory (GiB) the scheduler reserved for this rank on the node; engines that
    #: allocate them themselves (Slurm) ask for exactly this.
    cpus: float | None = None
    memory_gib: float | None = None


class DatasetInput(BaseModel):
    """A registered dataset the job reads: the agent fetches it from its own site's copy."""

    name: str
    #: Where the spec asked for it (``datasets[].mount``).
    mount: str


class AssignedService(BaseModel):
    """The attempt is a replica of a service (``core.services``): the agent gives it a free
    port in ``$PORT``, probes ``probe_path`` and relays requests to it (``agent/service_link.py``)."""

    service_id: str
    port: int
    probe_path: str = "/health"
    probe_timeout_s: float = 300.0


class AttemptAssignment(BaseModel):
    attempt_id: int
    fencing_token: int
    job_id: str
    job_name: str
    attempt_number: int
    setup: str | None = None
    run: str
    envs: dict[str, str] = Field(default_factory=dict)
    #: The job's secrets, in clear: only agents receive them. The agent puts them into the job's
    #: environment and masks their values in the output it ships; never logged, never stored
    #: in clear by the server.
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    #: The tenant the job belongs to (a site may run each tenant's jobs as its own OS user).
    tenant: str = ""
    workdir_digest: str | None = None
    gpu_type: str | None = None
    nodes: list[AssignedNode]
    time_limit_s: float | None = None
    keep_checkpoint: bool = True
    #: The job's latest checkpoint, when another site made it: the agent fetches it
    #: (``GET /api/v1/agents/checkpoints/{digest}?attempt=ID``) and unpacks it into the
    #: checkpoint folder before setup. None: the folder this site keeps (or an empty one).
    checkpoint_digest: str | None = None
    #: Datasets to fetch (from this site's copy) before the job starts.
    datasets: list[DatasetInput] = Field(default_factory=list)
    #: The dataset the job's SUANLI_OUTPUT_DIR becomes when it succeeds: the agent uploads the
    #: folder (``POST /api/v1/agents/outputs?attempt=ID``) before it reports the success.
    output_dataset: str | None = None
    #: The container image the ranks run in (the spec's ``image:``); None: no container.
    image: str | None = None
    #: Set when the attempt is a replica of a service.
    service: AssignedService | None = None
    #: The job's network policy (the spec's ``network:``): ``none`` (its own empty network
    #: namespace, loopback only), ``site`` or ``any``.
    network: str = "any"


class StopOrder(BaseModel):
    attempt_id: int
    reason: str
    grace_s: float = 10.0


class StoreOrder(BaseModel):
    """Take a dataset into this site's store: its sealed chunks come through the relay
    (``/api/v1/agents/relay/{transfer_id}``), sealed with ``key`` (base64), which reaches only
    this agent, never the relay. Repeated in every heartbeat until the transfer ends, so an
    agent that restarts picks it up again and resumes from what its store holds."""

    transfer_id: str
    dataset: str
    #: The dataset's manifest (``suanli.datachain.manifest.Manifest``'s fields).
    manifest: dict[str, Any]
    key: str = Field(repr=False)
    #: Seal the stored copy at rest (its grade asks for it).
    at_rest: bool = True


class HeartbeatRequest(BaseModel):
    site: str
    agent_id: str
    nodes: list[NodeReport] | None = None
    attempts: list[AttemptReport] = Field(default_factory=list)
    logs: list[LogChunk] = Field(default_factory=list)
    #: Long poll: the server may hold the reply up to this long until there is work.
    wait_s: float = Field(default=0.0, ge=0, le=30)


class HeartbeatResponse(BaseModel):
    start: list[AttemptAssignment] = Field(default_factory=list)
    stop: list[StopOrder] = Field(default_factory=list)
    #: Attempts the server no longer considers this agent's (stale fencing token).
    forget: list[int] = Field(default_factory=list)
    #: Datasets to take into this site's store (registrations by upload, copies from a site).
    store: list[StoreOrder] = Field(default_factory=list)
    #: Datasets of this site's store to send to another site through the relay (copies).
    send: list[StoreOrder] = Field(default_factory=list)
    lease_s: float
    server_time: datetime


class CheckpointReceipt(BaseModel):
    """The answer to a checkpoint upload (``POST /api/v1/agents/checkpoints?attempt=ID``)."""

    job_id: str
    attempt_id: int
    digest: str
    size: int
    site: str
    stored_at: datetime
