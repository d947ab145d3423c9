"""Shapes of the HTTP API (``/api/v1``), shared by the server and the SDK."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, Field

from suanli.core.overrides import Overrides
from suanli.core.resources import MAX_DURATION_S, MAX_PRICE_CNY_PER_HOUR
from suanli.core.states import AttemptState, JobState

T = TypeVar("T")

#: Bidirectional overrides and isolates: they reorder what a terminal or a page shows.
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _no_controls(value: str) -> str:
    """Labels people read in a terminal may not hold control characters (an ESC sequence in a
    token's name would recolour, move or retitle the terminal of whoever lists it)."""
    bad = next((c for c in value if c in _BIDI or unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ValueError(
            f"may not hold control characters (here U+{ord(bad):04X}); use letters, digits, spaces and punctuation"
        )
    return value


#: Free text a person reads (a token's name, a drain reason): no control characters.
PlainText = Annotated[str, AfterValidator(_no_controls)]


class Page(BaseModel, Generic[T]):
    """One page of a list. Pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = None


#: What the OpenAPI document shows of a spec's bounded numbers; the server validates the whole
#: spec with ``core.spec.JobSpec`` (docs/job-spec.md), these bounds included.
SPEC_BOUNDS_SCHEMA: dict[str, Any] = {
    "properties": {
        "time_limit": {
            "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S}, {"type": "string"}],
            "description": "Seconds, or a duration like 2h or 1.5d; at most 365 days.",
        },
        "placement": {
            "type": "object",
            "properties": {
                "max_price_per_gpu_hour": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PRICE_CNY_PER_HOUR}
            },
        },
    }
}


class JobSubmit(BaseModel):
    #: The job spec as parsed data (the CLI parses the YAML, the server validates again).
    spec: dict[str, Any] = Field(json_schema_extra=SPEC_BOUNDS_SCHEMA)
    #: Digest returned by ``POST /api/v1/workdirs``.
    workdir_digest: str | None = None
    tenant: str | None = None


class JobRerun(BaseModel):
    """``POST /api/v1/jobs/{id}/rerun``: submit the job's stored spec again (its workdir and
    secrets too), with ``overrides`` applied (flag over file)."""

    overrides: Overrides = Field(default_factory=Overrides)
    #: A new workdir (``POST /api/v1/workdirs``); None reuses the job's.
    workdir_digest: str | None = Field(default=None, max_length=64)


class NodeAssignmentOut(BaseModel):
    node: str
    rank: int
    gpu_indices: list[int] = Field(default_factory=list)


class AttemptOut(BaseModel):
    id: int
    number: int
    site: str
    state: AttemptState
    gpu_type: str | None = None
    nodes: list[NodeAssignmentOut] = Field(default_factory=list)
    exit_code: int | None = None
    #: Why it ended (or what it is doing), in words.
    message: str = ""
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class ArrayOut(BaseModel):
    """What a job array's entry adds: its tasks (jobs ``ID_INDEX``) counted by state."""

    #: The expression as submitted (``0-999:4%50``).
    expression: str
    tasks: int
    #: ``%N``: at most this many tasks active at once; None: no limit.
    max_running: int | None = None
    #: State → number of tasks in it (states with none are left out).
    counts: dict[str, int] = Field(default_factory=dict)


class JobOut(BaseModel):
    id: str
    name: str
    tenant: str
    #: Who submitted it (None for jobs submitted before users were recorded).
    user: str | None = None
    state: JobState
    #: Why it is not running now, in words; empty once it runs.
    reason: str = ""
    #: Site of the current (or last) attempt.
    site: str | None = None
    priority: str
    gpus: str = ""
    submitted_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    #: Metered cost so far, CNY as a decimal string (waived usage left out); None before any.
    cost_cny: str | None = None
    attempts: list[AttemptOut] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)
    #: Set on a job array's entry (``suanli status ARRAY``, folded listings); its state is the
    #: tasks' summed up (``core.arrays.array_state``) and its reason their counts. None: a job.
    array: ArrayOut | None = None


class GpuCount(BaseModel):
    total: int
    free: int


class SiteOut(BaseModel):
    name: str
    region: str
    zone: str
    backend: str
    online: bool
    last_heartbeat_at: datetime | None = None
    latency_ms: dict[str, float] = Field(default_factory=dict)
    nodes: int
    gpus: dict[str, GpuCount] = Field(default_factory=dict)
    running_jobs: int = 0
    tariff: dict[str, Any] = Field(default_factory=dict)
    #: Runs jobs that name an ``image:`` (declared, and not denied by its agent).
    containers: bool = True
    #: How the site isolates jobs, as its agent said: ``bwrap`` (each job in a sandbox), ``none``
    #: (declared ``sandbox: none``: jobs see the agent's machine), or the engine's name; None: not said.
    sandbox: str | None = None


class NodeOut(BaseModel):
    name: str
    site: str
    #: idle | mixed | allocated | drained | down
    state: str
    gpu_type: str | None = None
    gpus_total: int
    gpus_free: int
    cpus_total: float
    cpus_free: float
    memory_total: float
    memory_free: float
    healthy: bool
    reason: str = ""


class WorkdirOut(BaseModel):
    digest: str
    size: int


class Problem(BaseModel):
    """RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[dict[str, Any]] = Field(default_factory=list)


class UsageLineOut(BaseModel):
    """Usage grouped by the requested keys; money is CNY as a decimal string (exact)."""

    tenant: str | None = None
    site: str | None = None
    gpu_type: str | None = None
    job_id: str | None = None
    job_name: str | None = None
    #: With ``by=service``: the service, and the requests and tokens the front desk metered for it.
    service: str | None = None
    requests: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float
    gpu_seconds: float
    cpu_seconds: float
    memory_gib_hours: float
    cost_cny: str
    waived_cny: str
    records: int


class InvoiceOut(BaseModel):
    tenant: str
    month: str
    period_start: datetime
    period_end: datetime
    currency: str = "CNY"
    lines: list[UsageLineOut]
    total_cny: str
    waived_cny: str
    #: ``SL-202612-bj-ai``: one per tenant and month, the same on every reprint.
    number: str = ""
    #: Who issues it (the operator's ``SUANLI_INVOICE_ISSUER``) and when it was made.
    issuer: str = ""
    issued_at: datetime | None = None


class TariffVersionOut(BaseModel):
    site: str
    effective_from: datetime
    tariff: dict[str, Any]
    created_at: datetime | None = None
    created_by: str = ""
    #: Why this version is not used for pricing (stored before prices were checked); "" if it is.
    problem: str = ""


class SiteRevenueOut(BaseModel):
    site: str
    revenue_cny: str
    waived_cny: str
    gpu_seconds: float
    gpus: int
    gpu_utilization: float | None
    window_s: float


class SiteExplainOut(BaseModel):
    """What one site offers a job, and why it was or was not chosen."""

    site: str
    #: Policy, data rules, GPU type and online state allow the job here at all.
    allowed: bool
    fits_now: bool = False
    #: Estimated start here (now when it fits now); None when unknown or not allowed.
    start_at: datetime | None = None
    price_per_gpu_hour: float | None = None
    latency_ms: float | None = None
    #: The job runs (or ran last) here.
    chosen: bool = False
    #: One sentence, e.g. "tianjin-gaocun: 8 × H100 free at ~14:05 UTC, 28 CNY/GPU-h".
    text: str


class ExplainOut(BaseModel):
    """``GET /api/v1/jobs/{id}/explain``: the job's state and reason, and each site's verdict."""

    job_id: str
    name: str
    state: JobState
    reason: str = ""
    site: str | None = None
    optimize: str = "balanced"
    #: Where and from when the scheduler holds capacity for it (last full pass), if it does.
    reserved_site: str | None = None
    reserved_start_at: datetime | None = None
    #: A job requeued after a fault is not placed before this (its retry back-off).
    not_before: datetime | None = None
    #: Its dependencies (``after``) and where each stands: "job X (afterok): RUNNING".
    after: list[str] = Field(default_factory=list)
    sites: list[SiteExplainOut] = Field(default_factory=list)


class BudgetOut(BaseModel):
    tenant: str
    budget_cny: str
    spent_cny: str
    #: spent / budget (0-1+)
    used: float
    #: ok | warning (past 80 %) | exhausted
    state: str


class BudgetIn(BaseModel):
    """``PUT /api/v1/budgets/{tenant}``: the monthly budget, CNY as a decimal string (``"2000"``,
    ``"1999.50"``); null removes it."""

    budget_cny: str | None = Field(max_length=32)


class BudgetChangeOut(BaseModel):
    """One change of a tenant's budget: what it became (None: removed), who set it, when."""

    tenant: str
    budget_cny: str | None
    #: A user's name, or ``network file``.
    set_by: str
    set_at: datetime


# -- identities ---------------------------------------------------------------------------


class WhoAmIOut(BaseModel):
    user: str
    role: str
    tenant: str | None = None
    sites: list[str] = Field(default_factory=list)
    #: What this token may do (its scopes within the user's role).
    scopes: list[str]
    token_id: str


class TenantIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    home_region: str | None = Field(default=None, max_length=64)
    weight: float = Field(default=1.0, gt=0, le=1000)


class TenantOut(BaseModel):
    name: str
    home_region: str | None = None
    weight: float
    users: int
    created_at: datetime


class UserIn(BaseModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    role: str = "member"
    tenant: str | None = Field(default=None, max_length=64)
    sites: list[str] = Field(default_factory=list, max_length=256)
    #: Where the user is: mainland, bonded or overseas. Downloads are decided for this zone.
    zone: str = Field(default="mainland", pattern=r"^(mainland|bonded|overseas)$")


class UserOut(BaseModel):
    name: str
    role: str
    tenant: str | None = None
    sites: list[str] = Field(default_factory=list)
    zone: str = "mainland"
    disabled: bool
    tokens: int
    created_at: datetime


class TokenIn(BaseModel):
    #: A label for the token ("laptop", "ci"); no control characters.
    name: PlainText = Field(default="", max_length=64)
    #: Whose token (admin only; default: the caller).
    user: str | None = Field(default=None, max_length=64)
    #: Scopes within the user's role (default: all of them).
    scopes: list[str] | None = Field(default=None, max_length=32)
    #: Lifetime in seconds; None: the default (90 days); 0: never expires.
    expires_in_s: int | None = Field(default=None, ge=0, le=10 * 365 * 86400)


class TokenOut(BaseModel):
    id: str
    user: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class TokenCreatedOut(TokenOut):
    #: The token itself: shown this once, never again.
    token: str
