"""Shapes of the data chain's replies (``/api/v1/datasets``, ``/transfers``, ``/filings``,
``/ledger``), shared by the server and its OpenAPI document.

They mirror the JSON these endpoints have always answered, field for field: the SDK, the CLI,
the dashboard and users' scripts read them by key. One difference from the compute half's
models (``core.api``) is kept on purpose: times are written as ``datetime.isoformat()`` writes
them (``2026-01-05T09:00:00+00:00``), not as pydantic's default (``…Z``), because that is what
these replies have always said (:data:`IsoTime`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from suanli.core.datasets import Classification
from suanli.core.holds import FilingState
from suanli.core.policy import Counters, Purpose, Route
from suanli.core.states import TransferState


def _iso(when: datetime) -> str:
    return when.isoformat()


#: A time on the wire as ``datetime.isoformat()`` writes it (``+00:00``); a datetime in Python.
IsoTime = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Reply(BaseModel):
    """A reply's model: every field is always present in the JSON, so the OpenAPI document marks
    each one required (null where its type allows), those with defaults too."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


# -- datasets ------------------------------------------------------------------------------------


class DatasetOut(Reply):
    """A registered dataset, its current grade and where its replicas lie."""

    name: str
    #: The tenant that owns it.
    owner: str
    home_site: str
    #: Bytes.
    size: int
    #: Root of its content manifest (BLAKE3 over the chunks).
    root: str
    #: Number of chunks, and their size in bytes (None for a manifest that does not say).
    chunks: int
    chunk_size: int | None = None
    #: The datasets it was derived from (a job's output); empty for a source dataset.
    derived_from: list[str] = Field(default_factory=list)
    #: Version of the grade below (re-grading adds one).
    grade_version: int
    classification: Classification
    #: Sites other than home that hold a verified copy.
    replicas: list[str] = Field(default_factory=list)
    created_at: IsoTime


class GradeOut(Reply):
    """One grade a dataset was given; older ones stay on record."""

    version: int
    classification: Classification
    graded_by: str
    graded_at: IsoTime


class GradeRequestOut(Reply):
    """A grading that lowers something, held until an auditor approves or denies it."""

    id: str
    dataset: str
    #: The grade version it would replace.
    base_version: int
    classification: Classification
    #: What it lowers, in words.
    lowers: list[str]
    #: pending | approved | denied
    state: str
    requested_by: str
    requested_at: IsoTime
    decided_by: str | None = None
    decided_at: IsoTime | None = None
    note: str = ""


class ExportPermissionOut(Reply):
    """An owner's word for exports of a dataset to one destination (``client@<zone>``: downloads)."""

    dataset: str
    destination: str
    #: The PIPL basis the notice gave (``separate_consent``, ``contract``, …).
    basis: str
    #: The PI protection impact assessment's reference.
    pia_ref: str
    #: Whether the scheduler may stage copies there for waiting jobs.
    staging: bool
    granted_by: str
    granted_at: IsoTime


class GradedOut(Reply):
    """``POST /api/v1/datasets/{name}/grade``: applied at once when it only keeps or raises
    (``applied``: true, ``dataset`` the result); held as ``request`` when it lowers anything."""

    applied: bool
    dataset: DatasetOut
    request: GradeRequestOut | None = None


class DatasetDetailOut(DatasetOut):
    """``GET /api/v1/datasets/{name}``: the dataset with every grade it was given, oldest first."""

    grades: list[GradeOut] = Field(default_factory=list)


class DecisionOut(Reply):
    """What the data rules decide for a movement (``core.policy.Decision``)."""

    route: Route
    #: Each rule that applied and why, in words.
    reasons: list[str] = Field(default_factory=list)
    rule_ids: list[str] = Field(default_factory=list)
    ruleset_version: str
    #: SHA-256 of the rule set's canonical form (``RuleSet.sha256``); empty in older records.
    ruleset_sha256: str = ""
    #: It leaves the mainland (an export).
    export: bool
    #: Individuals it adds to the exporter's yearly counters when it goes.
    adds_pi: int = 0
    adds_spi: int = 0
    #: Other routes that would also satisfy it.
    alternatives: list[Route] = Field(default_factory=list)
    #: The exporter's counters once it goes (exports only).
    counters_after: Counters | None = None


class CheckOut(DecisionOut):
    """``POST /api/v1/datasets/{name}/check``: a dry run, recorded nowhere."""

    #: The decision in words.
    explain: str
    #: The filings on record let it go now.
    may_move_now: bool
    #: Why it may not go now ("" when it may).
    hold: str


# -- transfers -----------------------------------------------------------------------------------


class TransferOut(Reply):
    """A copy of a dataset to another site: decided when asked for, run by the transfer runner."""

    id: str
    dataset: str
    source_site: str
    dest_site: str
    #: The tenant that sends (the dataset's owner).
    exporter: str
    purpose: Purpose
    state: TransferState
    #: Why it is in this state, in words (what it waits for, why it broke off).
    reason: str = ""
    #: What the rules decided when it was asked for.
    decision: DecisionOut
    #: The accepted filing it goes under, or the one it waits for.
    filing_id: str | None = None
    bytes_done: int = 0
    #: Chunks the receiver refused (a checksum failed) and the sender sent again.
    chunks_resent: int = 0
    #: The job the scheduler started this copy for (None: a user asked for it).
    for_job: str | None = None
    created_at: IsoTime
    #: When its last run began, and when it ended.
    started_at: IsoTime | None = None
    finished_at: IsoTime | None = None


# -- filings -------------------------------------------------------------------------------------


class FilingOut(Reply):
    """A filing with the regulator for a route that needs one; its package is served apart."""

    id: str
    dataset: str
    exporter: str
    destination: str
    route: Route
    state: FilingState
    #: The certificate an accepted certification filing names.
    certificate_id: str | None = None
    note: str = ""
    #: The auditor who accepted or rejected it.
    decided_by: str | None = None
    #: When an accepted filing stops covering movements (None: it does not expire).
    expires_at: IsoTime | None = None
    created_at: IsoTime
    updated_at: IsoTime


class FilingMovedOut(FilingOut):
    """A filing after it was submitted, accepted or rejected."""

    #: Held transfers its acceptance let go (now ``ready``).
    released_transfers: list[str] = Field(default_factory=list)


# -- ledger --------------------------------------------------------------------------------------


class LedgerKeyOut(Reply):
    """The checkpoint-signing public key: a regulator should pin it."""

    algorithm: str
    #: Raw Ed25519 public key, hex.
    public_key: str
    #: The log's origin line, which is also its key's name.
    origin: str = ""
    #: The log's verifier key in the C2SP signed-note form (``suanli ledger verify --key``).
    vkey: str = ""
    #: The witnesses' verifier keys the network file lists (``--witness-key``).
    witnesses: list[str] = Field(default_factory=list)


class CheckpointOut(Reply):
    """A signed checkpoint over the first ``size`` entries: ``note`` is the C2SP signed note
    (checkpoint text, the log's signature line, each witness's cosignature/v1 line); the other
    fields repeat it for reading (root in hex, signature in base64)."""

    size: int
    root: str
    timestamp: str
    key_id: str
    signature: str
    note: str = ""
    witnessed_by: list[str] = Field(default_factory=list)


class CosignatureIn(BaseModel):
    """A witness's cosignature of the checkpoint at ``size``: its signed-note line."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=1, le=2**62)
    cosignature: str = Field(min_length=10, max_length=1024)


class NoCheckpointOut(Reply):
    """An empty object: the log has no signed checkpoint yet."""

    model_config = ConfigDict(extra="forbid")


class InclusionProofOut(Reply):
    """RFC 9162 inclusion proof of entry ``index`` in the log of ``size`` entries (hashes in hex)."""

    index: int
    size: int
    leaf_hash: str
    root: str
    proof: list[str]


class ConsistencyProofOut(Reply):
    """RFC 9162 consistency proof: the log of ``first`` entries is a prefix of the log of ``second``."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class LedgerEntryOut(Reply):
    """One entry as stored: what ``suanli ledger verify`` hashes and checks."""

    index: int
    kind: str
    #: The entry's canonical JSON, exactly the bytes that were hashed (kept a string: re-encoding
    #: it would change the hash). Its ``body`` is free-form metadata, one shape per ``kind``.
    data: str
    leaf_hash: str


class ExportCounterOut(Reply):
    """X6: individuals whose (sensitive) personal information an exporter sent abroad in a year."""

    exporter: str
    year: int
    pi: int
    spi: int


class EpsDelta(Reply):
    """An amount of differential privacy: ε and δ."""

    epsilon: float
    delta: float


class PrivacySpendOut(Reply):
    """One use of a dataset's privacy budget."""

    id: int
    dataset: str
    epsilon: float
    delta: float
    #: ``query`` (a DP release) or ``federated`` (a federated job's DP rounds).
    purpose: str
    job_id: str | None
    note: str
    spent_by: str
    spent_at: IsoTime
    #: The ledger entry that records the spend.
    ledger_index: int


class PrivacyOut(Reply):
    """A dataset's privacy budget, what is spent and left, and its federated uses."""

    dataset: str
    #: The budget the owner set; null when none is set (then nothing may be spent).
    budget: EpsDelta | None
    spent: EpsDelta
    remaining: EpsDelta
    #: How many federated jobs have used the dataset (a ``federated.round`` names it).
    federated_uses: int
    spends: list[PrivacySpendOut]


class DpIn(BaseModel):
    """DP-SGD-style settings for a federated run's updates."""

    #: Every site's update is clipped to this L2 norm.
    clip: float = Field(gt=0)
    #: Gaussian noise of standard deviation ``noise_multiplier × clip`` is added at the site.
    noise_multiplier: float = Field(gt=0)
    #: δ each dataset spends for the whole run (ε follows from the rounds, zCDP).
    delta: float = Field(gt=0, lt=1)


class FederationIn(BaseModel):
    """A federated run: the datasets (each trains at its own site), the strategy, the rounds."""

    datasets: list[str] = Field(min_length=1, max_length=64)
    #: ``fedavg`` or ``fedprox``.
    strategy: str = Field(default="fedavg", pattern="^(fedavg|fedprox)$")
    #: FedProx's proximal weight μ (0 for FedAvg).
    mu: float = Field(default=0.0, ge=0)
    rounds: int = Field(ge=1, le=1000)
    #: The model's initial parameters.
    params: list[float] = Field(min_length=1, max_length=1_000_000)
    dp: DpIn | None = None


class FederationOut(Reply):
    """A federated run as its clients and aggregator see it: never a site's plaintext update."""

    id: str
    tenant: str
    datasets: list[str]
    strategy: str
    mu: float
    rounds: int
    dp: DpIn | None
    #: The round in progress; equal to ``rounds`` when done.
    round: int
    #: ``keys``, ``updates``, ``reveals`` or ``done``.
    phase: str
    #: The global parameters: the only output of the run.
    params: list[float]
    #: This round's published X25519 public keys (hex), by client, once the round has started.
    keys: dict[str, str]
    #: Clients whose masked update has arrived this round.
    sent: list[str]
    #: Clients declared dropped this round.
    dropped: list[str]
    #: ε each dataset spends for the whole run (0 without DP).
    epsilon_per_dataset: float


class RoundMessagesOut(Reply):
    """What the aggregator receives for the current round: keys, masked updates, revealed seeds."""

    round: int
    keys: dict[str, str]
    #: Masked updates: hex of little-endian 64-bit ring elements.
    masked: dict[str, str]
    sizes: dict[str, int]
    #: ``survivor → dropped client → seed (hex)``.
    reveals: dict[str, dict[str, str]]
