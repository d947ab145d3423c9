"""The evaluation API's request and reply bodies (``/api/v1/evals``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from suanli.core.evaluation.plan import MAX_SHARDS


class EvalTaskIn(BaseModel):
    #: The task definition (lm-evaluation-harness style, parsed from its YAML); None: the one the
    #: dataset is registered with as a benchmark (a hidden benchmark takes no other).
    definition: dict[str, Any] | None = None
    #: The registered dataset (JSONL) the task reads.
    dataset: str = Field(min_length=1, max_length=64)


class EvalRunIn(BaseModel):
    #: An OpenAI-compatible base URL (ending in ``/v1``) and the model name it serves.
    endpoint: str = Field(min_length=8, max_length=512)
    model: str = Field(min_length=1, max_length=255)
    #: What the tenant calls this version of the model (a tag, a weights digest); on the ledger.
    model_version: str = Field(default="", max_length=128)
    tasks: list[EvalTaskIn] = Field(min_length=1, max_length=32)
    shards: int = Field(default=1, ge=1, le=MAX_SHARDS)
    limit: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    tenant: str | None = None


class EvalUnitOut(BaseModel):
    index: int
    task: str
    task_version: str
    task_digest: str
    dataset: str
    state: str
    shard_jobs: list[str]
    combine_job: str | None
    #: Metric name → score, once combined.
    metrics: dict[str, float] = Field(default_factory=dict)
    samples: int | None = None
    data_digest: str | None = None
    #: The derived dataset that holds the scores and the per-sample log.
    results_dataset: str | None = None
    message: str = ""
    #: A hidden benchmark: jobs and results are its owner's, and are not shown to the run's tenant.
    hidden: bool = False
    #: The ledger entry (kind ``eval.score``) that records these scores.
    ledger_index: int | None = None


class EvalBenchmarkIn(BaseModel):
    dataset: str = Field(min_length=1, max_length=64)
    definition: dict[str, Any]
    hidden: bool = False
    #: Hidden only: URL prefixes of the model endpoints its questions may be sent to.
    allowed_endpoints: list[str] = Field(default_factory=list, max_length=32)


class EvalBenchmarkOut(BaseModel):
    dataset: str
    owner: str
    task: str
    hidden: bool
    #: The definition, for its owner (and for everyone when the benchmark is not hidden).
    definition: dict[str, Any] | None = None
    allowed_endpoints: list[str] = Field(default_factory=list)
    created_at: datetime


class EvalRunOut(BaseModel):
    id: str
    tenant: str
    endpoint: str
    model: str
    model_version: str
    seed: int
    limit: int | None
    shards: int
    harness_version: str
    harness_digest: str
    state: str
    created_at: datetime
    updated_at: datetime
    units: list[EvalUnitOut]


class LeaderboardRow(BaseModel):
    """One run's scores on the leaderboard's tasks, and what makes them checkable on the ledger."""

    run: str
    tenant: str
    model: str
    model_version: str
    endpoint: str
    seed: int
    shards: int
    harness_version: str
    #: Task → its first metric's score (the one the board ranks by).
    scores: dict[str, float]
    #: The mean of ``scores`` over the board's tasks: the suite's score.
    mean: float
    #: Task → the ledger entry (``eval.score``) of its score.
    ledger: dict[str, int]
    #: Task → SHA-256 of the benchmark's bytes, and of the task definition.
    data_sha256: dict[str, str]
    task_sha256: dict[str, str]


class LeaderboardOut(BaseModel):
    tasks: list[str]
    #: Task → the metric ranked by.
    metrics: dict[str, str]
    rows: list[LeaderboardRow]
