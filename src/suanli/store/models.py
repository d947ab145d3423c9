"""ORM models. Times are stored as timezone-aware UTC; money never lives here as floats."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Always hands back aware UTC datetimes, on SQLite (which keeps none) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(16), default="mainland")
    backend: Mapped[str] = mapped_column(String(16), default="local")
    latency_ms: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: SHA-256 of the site's agent token; the token itself is never stored.
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    #: The network file lets the site run jobs that name an ``image:`` (``containers:``; by
    #: default local sites do, Slurm and Ray sites only when declared).
    containers: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    #: What its agent last said it can do (podman and runc found); None: not said.
    containers_reported: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    #: How its agent said it isolates jobs (``bwrap``, ``none``, an engine's name); None: not said.
    sandbox: Mapped[str | None] = mapped_column(String(32), nullable=True)

    @property
    def runs_containers(self) -> bool:
        """Declared, and not denied by its agent."""
        return bool(self.containers) and self.containers_reported is not False


class Tenant(Base):
    """A customer of the network: its users see its jobs and bills and nothing else. It has a
    home region (latency limits are measured from it) and a fair-share weight."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    home_region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    created_at: Mapped[datetime]


class User(Base):
    """Someone who calls the API. One role; members belong to a tenant, operators run sites."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    tenant: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    #: Sites an operator runs.
    sites: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: Where the user is: mainland, bonded or overseas (downloads are decided for it, X7).
    zone: Mapped[str] = mapped_column(String(16), default="mainland", server_default="mainland")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class ApiToken(Base):
    """An API token. Only the SHA-256 of the whole token is kept; the token is shown once."""

    __tablename__ = "api_tokens"

    #: The public part of the token (``sl_<id>_<secret>``): finds the row, safe to show and log.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    token_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class BlobTenant(Base):
    """Which tenants uploaded a workdir: a job may use only its own tenant's uploads."""

    __tablename__ = "blob_tenants"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    gpu_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gpus_total: Mapped[int] = mapped_column(Integer, default=0)
    cpus: Mapped[float] = mapped_column(Float)
    memory: Mapped[float] = mapped_column(Float)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    health_reason: Mapped[str] = mapped_column(Text, default="")
    drained: Mapped[bool] = mapped_column(Boolean, default=False)
    drain_reason: Mapped[str] = mapped_column(Text, default="")
    gpu_source: Mapped[str] = mapped_column(String(16), default="virtual")
    updated_at: Mapped[datetime]


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_state_seq", "state", "seq"),
        Index("ix_jobs_array_state", "array_id", "state"),
        Index("ix_jobs_service_state", "service_id", "state"),
    )

    #: Submit order; also the internal key.
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True, default="default")
    #: The user who submitted it (None: submitted before users were recorded, or by the network).
    user: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The spec's secret values, sealed with the server's key (a Fernet token); the spec itself
    #: keeps only their names. None: the job has no secrets.
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    workdir_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    site: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    current_attempt_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts_count: Mapped[int] = mapped_column(Integer, default=0)
    retries_used: Mapped[int] = mapped_column(Integer, default=0)
    #: After a fault, the requeued job is not placed before this (exponential back-off); None: at once.
    not_before: Mapped[datetime | None] = mapped_column(nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: The array this job is a task of (``job_arrays.id``), and its index there; None: no array.
    array_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    array_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The service this job is a replica of (``services.id``); None: no service.
    service_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class JobArray(Base):
    """A job array (``core.arrays``): one submission, one task (a ``jobs`` row) per index."""

    __tablename__ = "job_arrays"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    #: The expression as the spec wrote it (``0-999:4%50``).
    expression: Mapped[str] = mapped_column(String(255))
    task_count: Mapped[int] = mapped_column(Integer)
    #: The lowest index: that task's row stands for the array in folded listings.
    first_index: Mapped[int] = mapped_column(Integer)
    #: ``%N``: at most this many tasks active at once; None: no limit.
    max_running: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submitted_at: Mapped[datetime]


class Service(Base):
    """A service (``core.services``): its replicas are ``jobs`` rows with its ``service_id``."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_services_tenant_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    #: running | stopped
    state: Mapped[str] = mapped_column(String(16))
    #: The job spec every replica runs (its ``service:`` section included).
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: The spec's secret values, sealed as a job's are; each replica gets a copy.
    secrets_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    workdir_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Replicas wanted now: set by ``service scale`` and by the autoscaler, within min..max.
    desired: Mapped[int] = mapped_column(Integer)
    #: Metered through the front desk: requests answered and the tokens their ``usage`` said.
    requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_request_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Leadership(Base):
    """Which front-desk replica runs the scheduler (``app/leadership.py``). ``epoch`` grows by
    one each time a replica takes the lead; the scheduler's writes check it (fencing)."""

    __tablename__ = "leadership"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(255))
    since: Mapped[datetime]


class IdempotencyKey(Base):
    """A submission's ``Idempotency-Key``: a retry with the same key gets the first job back.

    The primary key is the unique constraint that makes concurrent duplicates one job. Rows
    older than the retention (24 h, docs in README's API section) are swept hourly."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: Who sent it: another user of the tenant reusing the key is refused, not answered.
    user: Mapped[str] = mapped_column(String(64))
    #: SHA-256 of the request body in canonical form: the same key with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(index=True)


class Attempt(Base):
    __tablename__ = "attempts"

    #: Also the attempt's fencing token: ids only grow, so a newer attempt always outranks an older one.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_seq: Mapped[int] = mapped_column(ForeignKey("jobs.seq", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64), index=True)
    gpu_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: [{"node": "tj-01", "rank": 0, "gpu_indices": [0, 1], "cpus": 4, "memory": 16}, ...]
    nodes: Mapped[list[Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_reason: Mapped[str] = mapped_column(Text, default="")
    #: How the attempt ends once its stop order is carried out: PREEMPTED or LOST (a platform
    #: decision: the job is requeued), or None for a user's cancel.
    stop_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: Sent to the agent at least once (so it is not handed out again).
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: Seconds of this attempt already turned into usage records (from the agent's reports).
    metered_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class LogChunkRow(Base):
    __tablename__ = "log_chunks"
    __table_args__ = (UniqueConstraint("attempt_id", "rank", "offset", name="uq_log_chunk"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_seq: Mapped[int] = mapped_column(ForeignKey("jobs.seq", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    offset: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Blob(Base):
    """A workdir archive, content-addressed; the bytes live in the blob store (``app/blobstore.py``)."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class BlobChunk(Base):
    """1 MiB of an archive kept in the database every replica shares (``app/blobstore.py``);
    ``seq`` counts from 0. An archive's chunks are written in one transaction."""

    __tablename__ = "blob_chunks"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime]


class ServerKey(Base):
    """Which key every front-desk replica on this database must hold (``app/serverkeys.py``):
    the ledger's public key, the SHA-256 of the secrets' sealing key. Never a key itself."""

    __tablename__ = "server_keys"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class JobCheckpoint(Base):
    """The latest SUANLI_CHECKPOINT_DIR of a job, as its agents uploaded it (a .tar.gz stored by
    SHA-256 beside the workdirs, under $SUANLI_HOME/blobs). One row per job: each upload from
    the job's current attempt replaces it. Only agents running the job's attempts fetch it."""

    __tablename__ = "job_checkpoints"

    job_seq: Mapped[int] = mapped_column(ForeignKey("jobs.seq", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    #: Where it was made: an attempt at another site gets it; one at this site keeps its own folder.
    site: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class TariffVersion(Base):
    """A site's prices from ``effective_from`` on. Never updated: a change is a new row, so old
    bills are always priced by the tariff that was in force."""

    __tablename__ = "tariff_versions"
    __table_args__ = (Index("ix_tariff_versions_site_from", "site", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64))
    effective_from: Mapped[datetime]
    tariff: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64), default="network file")


class BudgetVersion(Base):
    """A tenant's monthly budget from ``set_at`` on (None: no budget), and who set it (a user,
    or ``network file``). Never updated: the newest row per tenant is the budget in force, and
    the rows are the audit trail of every change."""

    __tablename__ = "budget_versions"
    __table_args__ = (Index("ix_budget_versions_tenant_id", "tenant", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64))
    #: CNY as a decimal string; None: the budget was removed.
    budget_cny: Mapped[str | None] = mapped_column(String(32), nullable=True)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime]


class UsageRecord(Base):
    """Metered consumption of one attempt over one interval, priced when recorded.
    Money is integer micro-yuan (1e-6 CNY): exact on every database. Whether a record is
    waived is not stored here: it follows from how its attempt ended (lost or preempted by
    the platform) and the operator's policy, read when bills are made."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_tenant_start", "tenant", "start"),
        Index("ix_usage_site_start", "site", "start"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attempt_id: Mapped[int] = mapped_column(Integer, index=True)
    job_seq: Mapped[int] = mapped_column(Integer, index=True)
    job_id: Mapped[str] = mapped_column(String(32))
    job_name: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64))
    gpu_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    gpus: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[float] = mapped_column(Float)
    memory_gib: Mapped[float] = mapped_column(Float)
    low_priority: Mapped[bool] = mapped_column(Boolean, default=False)
    start: Mapped[datetime]
    end: Mapped[datetime]
    seconds: Mapped[float] = mapped_column(Float)
    cost_micro: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


# --- the data chain (issue 9) ----------------------------------------------------------------


class Dataset(Base):
    """A registered dataset: its home site, owner and content manifest. The classification lives
    in :class:`DatasetGrade` (versioned); replicas in :class:`Replica`."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    home_site: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    #: {"size", "chunk_size", "chunks": [blake3 hex...], "root"}.
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    root: Mapped[str] = mapped_column(String(64))
    #: Names of the datasets this one was derived from (job outputs), empty for a source dataset.
    derived_from: Mapped[list[Any]] = mapped_column(JSON, default=list)
    grade_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    #: The home copy's bytes rest in the home site agent's store (registered there by upload),
    #: not in the site's store on the control plane's machine.
    home_at_agent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class DatasetGrade(Base):
    __tablename__ = "dataset_grades"
    __table_args__ = (UniqueConstraint("dataset", "version", name="uq_dataset_grade"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    #: A core.datasets.Classification as JSON.
    classification: Mapped[dict[str, Any]] = mapped_column(JSON)
    graded_by: Mapped[str] = mapped_column(String(64))
    graded_at: Mapped[datetime]


class GradeRequest(Base):
    """A grading that lowers something (level, a category, a PI or SPI count): held until an
    auditor approves or denies it; the dataset keeps its grade meanwhile."""

    __tablename__ = "grade_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    #: The grade version it would replace (approving after another re-grade is refused).
    base_version: Mapped[int] = mapped_column(Integer)
    #: The proposed core.datasets.Classification as JSON.
    classification: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: What it lowers, in words.
    lowers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: pending | approved | denied
    state: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")


class ExportPermission(Base):
    """An owner's word for exports of a dataset to one destination (a site, or ``client@<zone>``
    for downloads): the PIPL basis and PI impact-assessment reference recorded with each PI
    export there, and whether the scheduler may stage copies there on the owner's behalf."""

    __tablename__ = "export_permissions"

    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: core.policy.PiplBasis: the lawful basis (separate consent, contract, …) the notice gave.
    basis: Mapped[str] = mapped_column(String(32))
    #: The owner's PI protection impact assessment (PIPL art. 55) for this export: its reference.
    pia_ref: Mapped[str] = mapped_column(String(128))
    #: Whether the scheduler may copy the dataset there for a waiting job.
    staging: Mapped[bool] = mapped_column(Boolean, default=False)
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime]


class Replica(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("dataset", "site", name="uq_replica"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(String(64))
    transfer_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime]
    #: The copy's bytes rest in the site agent's store (copied there agent to agent).
    at_agent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class PrivacyBudget(Base):
    """A dataset's differential-privacy budget, as its owner set it (core.privacy.Budget)."""

    __tablename__ = "privacy_budgets"

    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime]


class PrivacySpend(Base):
    """One use of a dataset's privacy budget: a DP release, or a federated job's DP rounds."""

    __tablename__ = "privacy_spends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    #: ``query`` (a DP release) or ``federated`` (a federated job's rounds).
    purpose: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(String(200), default="")
    spent_by: Mapped[str] = mapped_column(String(64))
    spent_at: Mapped[datetime]
    #: The ledger entry that records it.
    ledger_index: Mapped[int] = mapped_column(Integer)


class FederatedGrant(Base):
    """A dataset owner's consent that another tenant's federated jobs may train on the dataset
    (at its site, exchanging only masked updates)."""

    __tablename__ = "federated_grants"

    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    granted_by: Mapped[str] = mapped_column(String(64))
    granted_at: Mapped[datetime]


class Federation(Base):
    """A federated training run: its datasets, strategy, DP settings, current round and the
    global parameters (the only output that leaves)."""

    __tablename__ = "federations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    datasets: Mapped[list[str]] = mapped_column(JSON)
    strategy: Mapped[str] = mapped_column(String(16))
    mu: Mapped[float] = mapped_column(Float)
    rounds: Mapped[int] = mapped_column(Integer)
    #: ``{clip, noise_multiplier, delta}`` when updates are made differentially private; else null.
    dp: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    #: The round in progress (0-based); equal to ``rounds`` when done.
    round: Mapped[int] = mapped_column(Integer, default=0)
    #: ``keys`` → ``updates`` → ``reveals`` (only when a client dropped) → next round's ``keys``.
    phase: Mapped[str] = mapped_column(String(16))
    params: Mapped[list[float]] = mapped_column(JSON)


class FederatedMessage(Base):
    """What one client sent the aggregator in one round: its public key, its masked update (with
    its example count) or the seeds it reveals for dropped clients. Never a plaintext update."""

    __tablename__ = "federated_messages"

    federation: Mapped[str] = mapped_column(ForeignKey("federations.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: ``key``, ``update`` or ``reveal``.
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    payload: Mapped[Any] = mapped_column(JSON)
    n: Mapped[int] = mapped_column(Integer, default=0)


class ExporterProfile(Base):
    """What the policy engine needs to know about a data exporter (a tenant)."""

    __tablename__ = "exporter_profiles"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciio: Mapped[bool] = mapped_column(Boolean, default=False)
    ftz: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime]


class ExportCounter(Base):
    """X6: individuals exported per exporter per calendar year."""

    __tablename__ = "export_counters"

    exporter: Mapped[str] = mapped_column(String(64), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    pi: Mapped[int] = mapped_column(Integer, default=0)
    spi: Mapped[int] = mapped_column(Integer, default=0)


class DataTransfer(Base):
    __tablename__ = "data_transfers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    source_site: Mapped[str] = mapped_column(String(64))
    dest_site: Mapped[str] = mapped_column(String(64))
    exporter: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32), default="none")
    #: held | ready | running | done | failed | denied
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    decision: Mapped[dict[str, Any]] = mapped_column(JSON)
    filing_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: Whether this transfer's individuals were added to the exporter's counters (once only).
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    bytes_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_resent: Mapped[int] = mapped_column(Integer, default=0)
    bandwidth_bps: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: The job the scheduler started this copy for (None: a user asked for it).
    for_job: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    #: When its last run began (a copy's rate is measured from it to ``finished_at``).
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Filing(Base):
    __tablename__ = "filings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), index=True)
    exporter: Mapped[str] = mapped_column(String(64), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: The generated package (HTML): facts, PI impact assessment outline, counters.
    package: Mapped[str] = mapped_column(Text, default="")
    #: The facts that package was rendered from (``suanli.datachain.package.PackageFacts`` as
    #: JSON); the PDF is rendered from them. None for filings made before migration 0010.
    package_facts: Mapped[str | None] = mapped_column(Text, nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class LedgerEntry(Base):
    """One entry of the append-only Merkle log; ``data`` is the canonical JSON that was hashed."""

    __tablename__ = "ledger_entries"

    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    data: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    #: The ledger service's HMAC of the leaf hash: a row written into the database by anyone
    #: else has none that checks, and the service refuses to sign over it.
    mac: Mapped[str | None] = mapped_column(String(64))


class LedgerCheckpoint(Base):
    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root: Mapped[str] = mapped_column(String(64))
    timestamp: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(16))
    #: base64(key ID || Ed25519 signature), the log's line of the C2SP signed note.
    signature: Mapped[str] = mapped_column(String(128))


class LedgerCosignature(Base):
    """A witness's cosignature/v1 of the checkpoint at ``size`` (its signed-note line, base64)."""

    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(128), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(8), primary_key=True)
    signature: Mapped[str] = mapped_column(String(128))
    received_at: Mapped[datetime]


class EvalRun(Base):
    """One ``suanli eval run``: a model, its tasks, and how they are split (``app/evals.py``)."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    submitted_by: Mapped[str] = mapped_column(String(128))
    #: The OpenAI-compatible base URL and the model name it serves; the version the tenant names.
    endpoint: Mapped[str] = mapped_column(String(512))
    model: Mapped[str] = mapped_column(String(255))
    model_version: Mapped[str] = mapped_column(String(128), default="")
    seed: Mapped[int] = mapped_column(Integer)
    limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shards: Mapped[int] = mapped_column(Integer)
    harness_version: Mapped[str] = mapped_column(String(16))
    #: SHA-256 of the harness files shipped into the jobs (``evaljob.bundle.digest``).
    harness_digest: Mapped[str] = mapped_column(String(64))
    #: running | succeeded | failed
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EvalUnit(Base):
    """One task of an eval run: its shard jobs, its combine job, and its scores once combined."""

    __tablename__ = "eval_units"

    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("eval_runs.id"), primary_key=True)
    #: Position of the task in the run (names the shard outputs: ``ev-<run>-<index>-s<k>``).
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    task: Mapped[str] = mapped_column(String(64), index=True)
    task_version: Mapped[str] = mapped_column(String(32))
    task_digest: Mapped[str] = mapped_column(String(64))
    #: The task definition (``TaskSpec.to_dict``) and the benchmark dataset it reads.
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    dataset: Mapped[str] = mapped_column(String(64))
    #: Job ids of the shards, in shard order; the combine job's once submitted.
    shard_jobs: Mapped[list[Any]] = mapped_column(JSON)
    combine_job: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: running | combining | succeeded | failed
    state: Mapped[str] = mapped_column(String(16))
    #: What the combine step printed: metrics, samples and the run identity (data digest …).
    scores: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    #: The tenant whose jobs score this task: the run's, or a hidden benchmark's owner.
    runs_as: Mapped[str] = mapped_column(String(64))
    #: A hidden benchmark: its jobs, logs and results are its owner's; the run's tenant sees scores.
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The ledger entry (``eval.score``) that records the scores, once combined.
    ledger_index: Mapped[int | None] = mapped_column(Integer, nullable=True)


class EvalBenchmark(Base):
    """A dataset registered as a benchmark: the task definition it is graded with, and whether
    the tenants evaluated on it may read it (``hidden``: they may not, ``app/evalbenchmarks.py``)."""

    __tablename__ = "eval_benchmarks"

    dataset: Mapped[str] = mapped_column(String(64), ForeignKey("datasets.name"), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    task: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    hidden: Mapped[bool] = mapped_column(Boolean)
    #: Model endpoints (URL prefixes) a hidden benchmark's questions may be sent to.
    allowed_endpoints: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
