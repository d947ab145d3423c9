"""Services: a job spec's ``service:`` section, and what the API shows of a service.

A service is a long-running job whose *replicas* are jobs of one spec, each placed by the
scheduler like any job (and given new attempts after platform faults); a replica that ends is
replaced while the service runs. Each replica listens on ``$PORT`` on its host's loopback and is
reached only through its site agent's outbound link to the front desk (docs/serving.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from suanli.core.resources import parse_duration

#: Most replicas one service may ask for.
MAX_REPLICAS = 64
#: Longest a replica may take to answer its readiness probe, and longest idle_stop.
MAX_READY_S = 3600.0
MAX_IDLE_S = 7 * 86400.0
_STRICT = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class ReadinessProbe(BaseModel):
    """A replica takes requests once ``GET path`` answers 2xx; one that has not within
    ``timeout`` seconds of starting is stopped (and replaced)."""

    model_config = _STRICT
    path: str = "/health"
    timeout: float = 300.0

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value) or len(value) > 512:
            raise ValueError(f"readiness_probe.path must be a URL path like /health, not '{value[:40]}'")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return parse_duration(value, "readiness_probe.timeout", MAX_READY_S)


class Replicas(BaseModel):
    """How many replicas: between ``min`` (0 scales to zero when idle) and ``max``."""

    model_config = _STRICT
    min: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max: int = Field(default=1, ge=1, le=MAX_REPLICAS)

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"replicas.min ({self.min}) is more than replicas.max ({self.max})")
        return self


class ServiceSpec(BaseModel):
    model_config = _STRICT
    #: The port the service listens on inside its sandbox. Replicas that share a host's network
    #: (the local backend) are each given a free port in ``$PORT`` and must listen on it.
    port: int = Field(ge=1, le=65535)
    readiness_probe: ReadinessProbe = Field(default_factory=ReadinessProbe)
    replicas: Replicas = Field(default_factory=Replicas)
    #: Scale out when requests waiting or in flight per ready replica pass this.
    target_queue_per_replica: float | None = Field(default=None, gt=0, le=10_000)
    #: Or when completion tokens per second per ready replica pass this.
    target_tokens_per_s: float | None = Field(default=None, gt=0, le=1e7)
    #: With ``replicas.min: 0``: stop the last replica after this many seconds without a request.
    idle_stop: float | None = None
    #: The names the OpenAI-compatible routes know it by (``model`` in a request); default: its name.
    models: list[str] = Field(default_factory=list, max_length=16)

    @field_validator("readiness_probe", mode="before")
    @classmethod
    def _probe(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @field_validator("replicas", mode="before")
    @classmethod
    def _replicas(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"min": value, "max": max(value, 1)}
        return value

    @field_validator("idle_stop", mode="before")
    @classmethod
    def _idle_stop(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value, "idle_stop", MAX_IDLE_S)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name or len(name) > 128 or any(c.isspace() or ord(c) < 32 for c in name):
                raise ValueError(f"'{name[:40]}' is not a model name: 1-128 characters, no spaces")
        return value

    @model_validator(mode="after")
    def _scaling(self) -> ServiceSpec:
        if self.target_queue_per_replica is not None and self.target_tokens_per_s is not None:
            raise ValueError("scale on target_queue_per_replica or on target_tokens_per_s, not both")
        r = self.replicas
        if r.max > max(r.min, 1) and self.target_queue_per_replica is None and self.target_tokens_per_s is None:
            raise ValueError(
                f"replicas may range from {r.min} to {r.max}: say what to scale on, "
                "target_queue_per_replica (e.g. 4) or target_tokens_per_s (e.g. 500)"
            )
        if self.idle_stop is not None and r.min != 0:
            raise ValueError("idle_stop scales a service to zero, which needs replicas.min: 0")
        if r.min == 0 and self.idle_stop is None:
            self.idle_stop = 300.0
        return self


@dataclass(frozen=True)
class Load:
    """What the front desk sees of a service now (``app/servicedesk.py``)."""

    ready: int = 0
    #: Requests being answered, and requests waiting for a ready replica.
    in_flight: int = 0
    waiting: int = 0
    #: Completion tokens per second answered over the last half minute.
    tokens_per_s: float = 0.0


def wanted_replicas(spec: ServiceSpec, desired: int, load: Load, idle_s: float) -> int:
    """The replicas a service should have now: enough that each ready one carries at most its
    target (requests in flight or waiting, or tokens per second), within ``min..max``; one as
    soon as a request waits at zero; zero (with ``min: 0``) once no request came for
    ``idle_stop`` seconds and none is in flight. It scales in one replica a pass, and never
    below what the load needs."""
    r = spec.replicas
    busy = load.in_flight + load.waiting
    if spec.target_queue_per_replica is not None:
        need = math.ceil(busy / spec.target_queue_per_replica)
    elif spec.target_tokens_per_s is not None:
        need = math.ceil(load.tokens_per_s / spec.target_tokens_per_s)
    else:
        need = desired
    if busy > 0:
        need = max(need, 1)
    elif r.min == 0 and spec.idle_stop is not None and idle_s >= spec.idle_stop:
        return 0
    else:
        need = max(need, 1 if desired > 0 else 0)
    if need < desired:
        need = desired - 1  # scale in gently: one replica a pass
    return max(r.min, min(r.max, need))


class ServiceState:
    RUNNING = "running"
    STOPPED = "stopped"


class ReplicaOut(BaseModel):
    #: The replica's job (``suanli logs JOB`` shows its output).
    job_id: str
    state: str
    site: str | None = None
    attempt_id: int | None = None
    #: Whether the replica answered its readiness probe and takes requests now.
    ready: bool = False
    #: Requests it is answering now.
    outstanding: int = 0


class ServiceOut(BaseModel):
    id: str
    name: str
    tenant: str
    state: str
    #: Replicas wanted now (the autoscaler moves it between min and max).
    desired: int
    min_replicas: int
    max_replicas: int
    ready: int = 0
    #: What the front desk serves it at (``/serve/TENANT/NAME/``) and the ``model`` names it answers to.
    endpoint: str
    models: list[str] = Field(default_factory=list)
    replicas: list[ReplicaOut] = Field(default_factory=list)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_request_at: datetime | None = None
    created_at: datetime
    spec: dict[str, Any] | None = None


class ServiceScale(BaseModel):
    replicas: int = Field(ge=0, le=MAX_REPLICAS)
