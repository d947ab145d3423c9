"""The network file: regions, sites with their nodes and tariffs, tenants.

One schema for ``suanli server --network``, ``suanli up --demo`` and the simulator.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from suanli.core.resources import MAX_DURATION_S, MAX_PRICE_CNY_PER_HOUR, Accelerator, check_price, parse_duration
from suanli.core.signednote import COSIGNATURE_V1, Verifier
from suanli.core.spec import NAME_RE, AcceleratorField, StrictModel
from suanli.core.validation import parse_yaml_as

_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")
#: The largest time-of-use factor a tariff period may set (peak prices a hundredfold).
MAX_FACTOR = 100.0
#: A price in CNY per hour: finite, at least 0, at most MAX_PRICE_CNY_PER_HOUR.
Price = Annotated[float, Field(ge=0, le=MAX_PRICE_CNY_PER_HOUR)]


class Zone(StrEnum):
    MAINLAND = "mainland"
    BONDED = "bonded"
    OVERSEAS = "overseas"


class Backend(StrEnum):
    LOCAL = "local"
    SLURM = "slurm"
    RAY = "ray"
    KUBERNETES = "kubernetes"


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"'{value}' is not a valid {what} name: use letters, digits, '.', '_' or '-'")
    return value


class NodeGroup(StrictModel):
    """``{name: tj-01, count: 2, gpus: H100:8}`` declares tj-01 and tj-02."""

    name: str
    count: int = Field(default=1, ge=1, le=10_000)
    gpus: AcceleratorField | None = None
    cpus: float = Field(default=8, gt=0)
    memory: float = Field(default=64, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "node")

    def expand(self) -> list[NodeDecl]:
        """Names: ``tj-01`` with count 3 → tj-01, tj-02, tj-03; a name without a trailing
        number gets ``-1``, ``-2`` … when count > 1."""
        if self.count == 1:
            return [NodeDecl(name=self.name, gpus=self.gpus, cpus=self.cpus, memory=self.memory)]
        m = re.match(r"^(.*?)(\d+)$", self.name)
        if m:
            prefix, start, width = m.group(1), int(m.group(2)), len(m.group(2))
        else:
            prefix, start, width = self.name + "-", 1, 1
        return [
            NodeDecl(name=f"{prefix}{start + i:0{width}d}", gpus=self.gpus, cpus=self.cpus, memory=self.memory)
            for i in range(self.count)
        ]


class NodeDecl(StrictModel):
    name: str
    gpus: AcceleratorField | None = None
    cpus: float
    memory: float

    @property
    def gpu_type(self) -> str | None:
        return self.gpus.type if self.gpus else None

    @property
    def gpu_count(self) -> int:
        return self.gpus.count if self.gpus else 0


def parse_hours(text: str) -> list[int]:
    """``"08-11,18-23"`` → hours 8,9,10,18,...,22; ``"23-07"`` wraps past midnight."""
    hours: list[int] = []
    for part in text.split(","):
        m = _HOURS.match(part.strip())
        if not m:
            raise ValueError(f"'{part.strip()}' is not an hour range; write e.g. 08-11 or 23-07")
        start, end = int(m.group(1)), int(m.group(2))
        if not (0 <= start <= 24 and 0 <= end <= 24) or start == end:
            raise ValueError(f"'{part.strip()}' is not an hour range within 00-24")
        h = start
        while h != end:
            hours.append(h % 24)
            h = (h + 1) % 24
            if end == 24 and h == 0:
                break
    return hours


class TariffPeriod(StrictModel):
    hours: str
    factor: float = Field(gt=0, le=MAX_FACTOR)

    @field_validator("factor", mode="before")
    @classmethod
    def _factor(cls, value: Any) -> Any:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (not math.isfinite(value) or not 0 < value <= MAX_FACTOR):
            raise ValueError(f"a period's factor must be more than 0 and at most {MAX_FACTOR:g}, not {value}")
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        parse_hours(value)
        return value


class Tariff(StrictModel):
    """Prices in CNY. ``periods`` multiply the base price in their hours (peak / valley), which
    are read on the site's local clock (``timezone``, China Standard Time unless declared)."""

    timezone: str = "Asia/Shanghai"
    gpu_hour: dict[str, Price] = Field(default_factory=dict)
    cpu_hour: Price = 0.0
    memory_gib_hour: Price = 0.0
    periods: list[TariffPeriod] = Field(default_factory=list)
    #: Fraction off for ``priority: low`` (preemptible) work, e.g. 0.3 for 30 % off.
    low_priority_discount: float = Field(default=0.0, ge=0, lt=1)
    #: From when these prices apply (aware time); None: from when the server first reads them.
    effective_from: datetime | None = None

    @model_validator(mode="after")
    def _no_overlap(self) -> Tariff:
        seen: dict[int, str] = {}
        for p in self.periods:
            for h in parse_hours(p.hours):
                if h in seen:
                    raise ValueError(f"hour {h:02d} is in two periods ('{seen[h]}' and '{p.hours}')")
                seen[h] = p.hours
        return self

    @field_validator("gpu_hour", mode="before")
    @classmethod
    def _gpu_prices(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for gpu, price in value.items():
                check_price(price, f"gpu_hour of {gpu}")
        return value

    @field_validator("cpu_hour", "memory_gib_hour", mode="before")
    @classmethod
    def _prices(cls, value: Any, info: ValidationInfo) -> Any:
        return check_price(value, str(info.field_name))

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a time zone name like Asia/Shanghai") from None
        return value

    def local_hour(self, when: datetime) -> int:
        return when.astimezone(ZoneInfo(self.timezone)).hour

    def factor_at_hour(self, hour: int) -> float:
        for p in self.periods:
            if hour in parse_hours(p.hours):
                return p.factor
        return 1.0

    def gpu_price(self, gpu_type: str, hour: int) -> float | None:
        base = self.gpu_hour.get(gpu_type)
        return None if base is None else base * self.factor_at_hour(hour)


class SiteDecl(StrictModel):
    name: str
    region: str
    zone: Zone = Zone.MAINLAND
    backend: Backend = Backend.LOCAL
    latency_ms: dict[str, float] = Field(default_factory=dict)
    nodes: list[NodeGroup] = Field(default_factory=list)
    tariff: Tariff = Field(default_factory=Tariff)
    #: Whether the site runs jobs that name an ``image:``. Unset: local sites do (when their
    #: agent finds podman and runc), Slurm and Ray sites do not: they need OCI support set up
    #: (Slurm's oci.conf, podman on Ray's nodes) and say so with ``containers: true``.
    containers: bool | None = None
    #: How a local site's agent isolates jobs: ``bwrap`` (bubblewrap; the default) or ``none``
    #: (jobs see the agent's machine as its user does: only for a machine the jobs' owners own).
    sandbox: Literal["bwrap", "none"] = "bwrap"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "site")

    @property
    def runs_containers(self) -> bool:
        """``containers`` as declared, or the backend's default."""
        return self.containers if self.containers is not None else self.backend == Backend.LOCAL

    def node_decls(self) -> list[NodeDecl]:
        return [n for group in self.nodes for n in group.expand()]


class TenantDecl(StrictModel):
    name: str
    home_region: str | None = None
    weight: float = Field(default=1.0, gt=0)
    #: Most GPUs the tenant may hold at once, network-wide and at any one site (quotas).
    max_gpus: int | None = Field(default=None, ge=0)
    max_gpus_per_site: int | None = Field(default=None, ge=0)
    #: CNY a month (Asia/Shanghai months); new work waits once it would pass it.
    monthly_budget_cny: float | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name(value, "tenant")


def _duration(value: Any, info: ValidationInfo) -> Any:
    """A duration of at most MAX_DURATION_S (a year)."""
    return None if value is None else parse_duration(value, str(info.field_name))


def _duration_or_off(value: Any, info: ValidationInfo) -> Any:
    """A duration, or 0 (``0``, ``0s``): the feature is off."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and value.strip() in ("0", "0s"):
        return 0.0
    return _duration(value, info)


#: Seconds, at most a year (the bound is in the schema too).
Duration = Annotated[float, Field(gt=0, le=MAX_DURATION_S)]


_GpuHours = Annotated[float, Field(gt=0, le=1e9)]


class SchedulingDecl(StrictModel):
    """The network's scheduling policy (``scheduling:`` in the network file); durations take
    ``30m`` / ``2h`` / ``7d`` or seconds."""

    #: Priority points per hour waited; a priority class is 1 point.
    aging_per_hour: float = Field(default=0.125, ge=0)
    #: Points the fair-share factor is worth (0 turns fair share off).
    fair_share_weight: float = Field(default=0.5, ge=0)
    #: Half-life of the usage fair share counts.
    usage_half_life: Duration = 7 * 86400.0
    backfill: bool = True
    #: Run time assumed for jobs with no time limit when the tenant has no history.
    default_estimate: Duration = 3600.0
    preemption: bool = True
    #: Preempt only when nothing frees for the job within this long.
    preempt_after: Duration = 300.0
    #: SIGTERM to SIGKILL for a preempted job.
    preempt_grace: Duration = 30.0
    #: Never preempt a job twice within this long.
    preempt_cooldown: Duration = 3600.0
    #: Wait before the first retry after a fault; each further retry doubles it (0: no back-off).
    retry_backoff: float = Field(default=10.0, ge=0, le=MAX_DURATION_S)
    #: The longest back-off.
    retry_backoff_cap: Duration = 600.0
    #: Copy a waiting job's datasets to a site where it can start sooner, where the rules let
    #: the copy run now (compute to data; ``false``: jobs wait for copies users make).
    stage_data: bool = True
    #: MB/s a copy into a site is assumed to run at until copies there have been measured.
    transfer_rate: float = Field(default=100.0, gt=0)
    #: Queue order: ``las`` (least attained service, shortest remaining first) or ``priority``.
    order: Literal["las", "priority"] = "las"
    #: LAS queue thresholds, GPU-hours of attained service.
    las_thresholds: list[_GpuHours] = Field(default_factory=lambda: [8.0], max_length=16)
    #: A job waiting more than this × its estimated run time goes first in its class (0: off).
    starvation_factor: float = Field(default=100.0, ge=0)
    #: Preempt checkpointing jobs of a later LAS queue for jobs of an earlier one.
    las_preemption: bool = True
    #: What restoring a preempted job from its checkpoint costs (preemption must be worth it).
    restore_cost: Duration = 60.0

    _durations = field_validator(
        "usage_half_life",
        "default_estimate",
        "preempt_after",
        "preempt_grace",
        "preempt_cooldown",
        "retry_backoff_cap",
        "restore_cost",
        mode="before",
    )(_duration)
    _durations_or_off = field_validator("retry_backoff", mode="before")(_duration_or_off)


class DataRulesDecl(StrictModel):
    """``data_rules:`` in the network file: the operator's own data-movement rule set."""

    #: The rule set (YAML, like the shipped ``datachain/rules/ruleset.yaml``); unset: the shipped one.
    ruleset: str | None = None
    #: Free-trade-zone negative lists (YAML files); unset: the shipped ones.
    negative_lists: list[str] | None = None


class NetworkSpec(StrictModel):
    regions: list[str] = Field(default_factory=list)
    sites: list[SiteDecl] = Field(default_factory=list)
    tenants: list[TenantDecl] = Field(default_factory=list)
    scheduling: SchedulingDecl = Field(default_factory=SchedulingDecl)
    data_rules: DataRulesDecl = Field(default_factory=DataRulesDecl)
    #: The ledger's witnesses, as the vkey lines ``suanli witness init`` prints.
    witnesses: list[str] = Field(default_factory=list)

    @field_validator("witnesses")
    @classmethod
    def _witness_keys(cls, v: list[str]) -> list[str]:
        for line in v:
            if Verifier.parse(line).kind != COSIGNATURE_V1:
                raise ValueError(f"witness key '{line}' is not a cosignature key (type 0x04)")
        if len({Verifier.parse(line).name for line in v}) != len(v):
            raise ValueError("witness names must be unique")
        return v

    def witness_keys(self) -> list[Verifier]:
        return [Verifier.parse(line) for line in self.witnesses]

    @model_validator(mode="after")
    def _consistent(self) -> NetworkSpec:
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique; repeated: {', '.join(dupes)}")
        if self.regions:
            known = set(self.regions)
            for s in self.sites:
                if s.region not in known:
                    raise ValueError(
                        f"site '{s.name}' is in region '{s.region}', which is not in regions: {', '.join(self.regions)}"
                    )
            for t in self.tenants:
                if t.home_region and t.home_region not in known:
                    raise ValueError(f"tenant '{t.name}' has home_region '{t.home_region}', which is not in regions")
        node_names: dict[str, str] = {}
        for s in self.sites:
            for n in s.node_decls():
                if n.name in node_names:
                    raise ValueError(f"node '{n.name}' is declared at both '{node_names[n.name]}' and '{s.name}'")
                node_names[n.name] = s.name
        return self

    def site(self, name: str) -> SiteDecl | None:
        return next((s for s in self.sites if s.name == name), None)


def parse_network(text: str, source: str | None = None) -> NetworkSpec:
    return parse_yaml_as(NetworkSpec, text, source)


def accelerator_of(node: NodeDecl) -> Accelerator | None:
    return node.gpus


def network_from_data(data: Any) -> NetworkSpec:
    return NetworkSpec.model_validate(data)
