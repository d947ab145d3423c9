"""Metering and billing: usage records from agents' reports, tariff history, bills.

Usage is metered from what the agents report (each attempt's elapsed time at the site), never
from clients. Every report that adds at least ``MIN_RECORD_S`` seconds (or ends the attempt)
becomes a usage record: allocated GPUs, CPUs and memory over that interval, priced by the
tariff versions in force, split at month ends so each month's bill holds exactly its records.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app.access import require, require_role, tenant_filter
from suanli.app.errors import NotFound, Unprocessable
from suanli.core import metering as pricing
from suanli.core.identity import Identity, Role, Scope
from suanli.core.network import NetworkSpec, Tariff
from suanli.core.protocol import AttemptReport
from suanli.core.states import AttemptState
from suanli.store.models import Attempt, Job, Site, TariffVersion, UsageRecord

log = logging.getLogger("suanli.server")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Reports closer together than this accumulate before a record is written.
MIN_RECORD_S = 5.0
#: Attempts that ended this way were lost by the platform: their usage is waived by default.
PLATFORM_FAULTS = (AttemptState.LOST.value, AttemptState.PREEMPTED.value)
GROUPINGS = {
    "site": ("tenant", "site", "gpu_type"),
    "job": ("tenant", "job_id", "job_name", "site", "gpu_type"),
    "gpu-type": ("tenant", "gpu_type"),
    "tenant": ("tenant",),
}


# -- tariffs ------------------------------------------------------------------------------
def sync_tariffs(session: Session, network: NetworkSpec, now: datetime) -> None:
    """A site's declared tariff becomes a new version when it differs from the one in force."""
    for site in network.sites:
        declared = site.tariff.model_dump(mode="json")
        latest = session.scalar(
            select(TariffVersion)
            .where(TariffVersion.site == site.name)
            .order_by(TariffVersion.effective_from.desc())
            .limit(1)
        )
        if latest is not None and latest.tariff == declared:
            continue
        # A site's first tariff covers all time before it; a changed file applies from now on.
        effective = site.tariff.effective_from or (EPOCH if latest is None else now)
        session.add(
            TariffVersion(
                site=site.name, effective_from=effective, tariff=declared, created_at=now, created_by="network file"
            )
        )


def set_tariff(
    session: Session, site: str, tariff: Tariff, effective_from: datetime, now: datetime, by: str
) -> TariffVersion:
    if session.scalar(select(Site.id).where(Site.name == site)) is None:
        raise NotFound(f"no site '{site}'")
    if effective_from < now - timedelta(minutes=1):
        raise Unprocessable("a tariff cannot take effect in the past: bills already made must stay right")
    row = TariffVersion(
        site=site,
        effective_from=effective_from,
        tariff=tariff.model_copy(update={"effective_from": effective_from}).model_dump(mode="json"),
        created_at=now,
        created_by=by,
    )
    session.add(row)
    session.flush()
    return row


def versions(session: Session, site: str) -> list[pricing.TariffVersion]:
    """The site's tariff versions in force order. A stored one that no longer validates (a NaN
    price posted before prices were checked) is left out, with a warning: the version before it
    stays in force until the next valid one, so one bad row never stops metering."""
    rows = session.scalars(
        select(TariffVersion).where(TariffVersion.site == site).order_by(TariffVersion.effective_from)
    )
    out = []
    for row in rows:
        tariff, problem = read_tariff(row)
        if tariff is None:
            log.warning("site %s: the tariff from %s is ignored: %s", site, row.effective_from, problem)
            continue
        out.append(pricing.TariffVersion(row.effective_from, tariff))
    return out


def read_tariff(row: TariffVersion) -> tuple[Tariff | None, str]:
    """The stored version's tariff, or None and why it cannot be used (said in words)."""
    try:
        return Tariff.model_validate(row.tariff), ""
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return None, (
            f"{where}: {first['msg']}; it is not used for pricing (the version before it stays in force): "
            "post a valid tariff"
        )


def shown_tariff(data: dict[str, Any]) -> dict[str, Any]:
    """A stored tariff as JSON can carry it: NaN and infinity (stored before prices were
    checked) become null, so listing the history never fails on them."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in data.items()}


def list_tariffs(session: Session, site: str | None) -> list[TariffVersion]:
    query = select(TariffVersion).order_by(TariffVersion.site, TariffVersion.effective_from)
    if site:
        query = query.where(TariffVersion.site == site)
    return list(session.scalars(query))


# -- metering -----------------------------------------------------------------------------
def allocation(attempt: Attempt, job: Job) -> pricing.Allocation:
    nodes = attempt.nodes
    return pricing.Allocation(
        gpu_type=attempt.gpu_type,
        gpus=sum(len(n.get("gpu_indices", [])) for n in nodes),
        cpus=float(sum(float(n.get("cpus", 0)) for n in nodes)),
        memory_gib=float(sum(float(n.get("memory", 0)) for n in nodes)),
        low_priority=job.priority == "low",
    )


def meter(session: Session, attempt: Attempt, report: AttemptReport, now: datetime) -> int:
    """Turn the growth of the attempt's elapsed time into usage records. Returns how many."""
    if report.elapsed_s is None:
        return 0
    delta = report.elapsed_s - attempt.metered_s
    if delta <= 0 or (delta < MIN_RECORD_S and not report.state.is_terminal()):
        return 0
    job = session.get(Job, attempt.job_seq)
    if job is None:
        return 0
    alloc = allocation(attempt, job)
    prices = versions(session, attempt.site)
    try:
        pieces = [(a, b, pricing.cost_micro(prices, a, b, alloc)) for a, b in _interval(now, delta)]
    except (ArithmeticError, ValueError) as exc:  # never fail the heartbeat that carries it
        log.error(
            "attempt %s at %s: %.0f s of usage not metered yet (%s); it is metered once this is fixed",
            attempt.id,
            attempt.site,
            delta,
            exc,
        )
        return 0
    made = 0
    for a, b, cost in pieces:
        session.add(
            UsageRecord(
                attempt_id=attempt.id,
                job_seq=job.seq,
                job_id=job.id,
                job_name=job.name,
                tenant=job.tenant,
                site=attempt.site,
                gpu_type=alloc.gpu_type,
                gpus=alloc.gpus,
                cpus=alloc.cpus,
                memory_gib=alloc.memory_gib,
                low_priority=alloc.low_priority,
                start=a,
                end=b,
                seconds=(b - a).total_seconds(),
                cost_micro=cost,
                created_at=now,
            )
        )
        made += 1
    attempt.metered_s = report.elapsed_s
    return made


def _interval(now: datetime, seconds: float) -> list[tuple[datetime, datetime]]:
    """The ``seconds`` before ``now``, split at month ends. Raises ValueError/OverflowError for a
    span no calendar holds (a NaN or absurd elapsed time in a report)."""
    return split_at_month_ends(now - timedelta(seconds=seconds), now)


def split_at_month_ends(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    pieces = []
    while True:
        _, month_end = pricing.month_bounds(pricing.month_of(start))
        if end <= month_end:
            pieces.append((start, end))
            return pieces
        pieces.append((start, month_end))
        start = month_end


# -- reading usage ------------------------------------------------------------------------
@dataclass
class UsageLine:
    key: dict[str, Any]
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0
    memory_gib_hours: float = 0.0
    cost_micro: int = 0
    waived_micro: int = 0
    records: int = 0
    jobs: set[str] = field(default_factory=set)

    def out(self) -> dict[str, Any]:
        return {
            **self.key,
            "seconds": round(self.seconds, 3),
            "gpu_seconds": round(self.gpu_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "memory_gib_hours": round(self.memory_gib_hours, 6),
            "cost_cny": str(pricing.from_micro(self.cost_micro)),
            "waived_cny": str(pricing.from_micro(self.waived_micro)),
            "records": self.records,
        }


def usage_rows(
    session: Session,
    *,
    tenant: str | None = None,
    site: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    job_seq: int | None = None,
) -> list[tuple[UsageRecord, str]]:
    query = (
        select(UsageRecord, Attempt.state).join(Attempt, Attempt.id == UsageRecord.attempt_id).order_by(UsageRecord.id)
    )
    if tenant:
        query = query.where(UsageRecord.tenant == tenant)
    if site:
        query = query.where(UsageRecord.site == site)
    if start:
        query = query.where(UsageRecord.start >= start)
    if end:
        query = query.where(UsageRecord.start < end)
    if job_seq is not None:
        query = query.where(UsageRecord.job_seq == job_seq)
    return [(r, s) for r, s in session.execute(query)]


def usage_for(
    session: Session,
    who: Identity,
    *,
    tenant: str | None = None,
    site: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[tuple[UsageRecord, str]]:
    """Usage the caller may read: a member its own tenant's (another tenant's: none), the admin
    anyone's. Operators read revenue per site instead (:func:`revenue_sites`)."""
    require(who, Scope.USAGE_READ)
    require_role(who, Role.ADMIN, Role.MEMBER)
    scope = tenant_filter(who)
    if scope is not None:
        if tenant is not None and tenant != scope:
            return []
        tenant = scope
    return usage_rows(session, tenant=tenant, site=site, start=start, end=end)


def revenue_sites(who: Identity, sites: Iterable[str]) -> list[str]:
    """The sites whose revenue the caller may read: all for the admin, its own for an operator."""
    require(who, Scope.USAGE_READ)
    require_role(who, Role.ADMIN, Role.OPERATOR)
    return [s for s in sites if who.runs_site(s)]


def aggregate(rows: Iterable[tuple[UsageRecord, str]], by: str, waive_faults: bool) -> list[UsageLine]:
    by = {"gpu": "gpu-type", "gpu_type": "gpu-type"}.get(by, by)
    if by not in GROUPINGS:
        raise Unprocessable(f"--by must be one of {', '.join(GROUPINGS)} (per-user bills are not there yet)")
    lines: dict[tuple[Any, ...], UsageLine] = {}
    for record, attempt_state in rows:
        key = tuple(getattr(record, k) for k in GROUPINGS[by])
        line = lines.setdefault(key, UsageLine(dict(zip(GROUPINGS[by], key, strict=True))))
        line.seconds += record.seconds
        line.gpu_seconds += record.seconds * record.gpus
        line.cpu_seconds += record.seconds * record.cpus
        line.memory_gib_hours += record.seconds * record.memory_gib / 3600
        line.records += 1
        line.jobs.add(record.job_id)
        if waive_faults and attempt_state in PLATFORM_FAULTS:
            line.waived_micro += record.cost_micro
        else:
            line.cost_micro += record.cost_micro
    return [lines[k] for k in sorted(lines, key=lambda k: tuple(str(x) for x in k))]


def job_cost(session: Session, job_seqs: Sequence[int], waive_faults: bool) -> dict[int, Decimal]:
    """Cost so far of each job (waived usage left out)."""
    if not job_seqs:
        return {}
    query = (
        select(UsageRecord.job_seq, Attempt.state, func.sum(UsageRecord.cost_micro))
        .join(Attempt, Attempt.id == UsageRecord.attempt_id)
        .where(UsageRecord.job_seq.in_(list(job_seqs)))
        .group_by(UsageRecord.job_seq, Attempt.state)
    )
    return _unwaived_totals(session.execute(query), waive_faults)


def array_cost(session: Session, array_ids: Sequence[str], waive_faults: bool) -> dict[str, Decimal]:
    """Cost so far of each job array: its tasks' costs summed in one grouped query."""
    if not array_ids:
        return {}
    query = (
        select(Job.array_id, Attempt.state, func.sum(UsageRecord.cost_micro))
        .join(Job, Job.seq == UsageRecord.job_seq)
        .join(Attempt, Attempt.id == UsageRecord.attempt_id)
        .where(Job.array_id.in_(list(array_ids)))
        .group_by(Job.array_id, Attempt.state)
    )
    return _unwaived_totals(session.execute(query), waive_faults)


def _unwaived_totals(rows: Iterable[Any], waive_faults: bool) -> dict[Any, Decimal]:
    """``(key, attempt state, micro-CNY)`` rows summed per key, platform faults left out when waived."""
    totals: dict[Any, int] = defaultdict(int)
    for key, state, micro in rows:
        if not (waive_faults and state in PLATFORM_FAULTS):
            totals[key] += int(micro or 0)
    return {key: pricing.from_micro(micro) for key, micro in totals.items()}
