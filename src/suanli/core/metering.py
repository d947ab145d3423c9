"""Pricing metered usage like a utility: time-of-use periods, tariff history, exact money.

Money is ``Decimal`` end to end, stored as integer micro-yuan (1e-6 CNY). A usage interval is
split wherever the price can change — at every local hour boundary (periods are whole hours),
and at every tariff version's effective time — and each piece is priced by the tariff and the
period factor in force for it. A record's cost is rounded once, to the micro-yuan; invoices are
sums of records, so their lines always add up to the usage records exactly.

Prices are declared as decimal literals in the network file; they become Decimals through
their shortest text form (``Decimal(str(28.0))``), so 0.1 is exactly one tenth.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from suanli.core.network import Tariff, TariffPeriod

MICRO = Decimal("0.000001")
HOUR = Decimal(3600)


def dec(value: float | int | str | Decimal) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def to_micro(amount: Decimal) -> int:
    return int(amount.quantize(MICRO, rounding=ROUND_HALF_EVEN) / MICRO)


def from_micro(micro: int) -> Decimal:
    return (Decimal(micro) * MICRO).quantize(MICRO)


@dataclass(frozen=True)
class TariffVersion:
    """A tariff and the moment it takes effect; the newest one not after a time applies."""

    effective_from: datetime
    tariff: Tariff


@dataclass(frozen=True)
class Allocation:
    """What an attempt holds while it runs, per node summed over its nodes."""

    gpu_type: str | None
    gpus: int
    cpus: float
    memory_gib: float
    low_priority: bool = False


@dataclass(frozen=True)
class Piece:
    start: datetime
    end: datetime
    tariff_index: int
    factor: Decimal
    cost: Decimal

    @property
    def seconds(self) -> Decimal:
        return dec((self.end - self.start).total_seconds())


def version_at(versions: Sequence[TariffVersion], when: datetime) -> int | None:
    """Index of the version in force at ``when`` (versions sorted by effective_from)."""
    found = None
    for i, v in enumerate(versions):
        if v.effective_from <= when:
            found = i
        else:
            break
    return found


def hourly_rate(tariff: Tariff, alloc: Allocation) -> Decimal:
    """CNY per hour at factor 1 for this allocation (before the low-priority discount)."""
    gpu_hour = tariff.gpu_hour.get(alloc.gpu_type, 0) if alloc.gpu_type and alloc.gpus else None
    return _hourly_rate(tariff.cpu_hour, tariff.memory_gib_hour, alloc.cpus, alloc.memory_gib, gpu_hour, alloc.gpus)


@functools.lru_cache(maxsize=1024, typed=True)
def _hourly_rate(
    cpu_hour: float, memory_gib_hour: float, cpus: float, memory_gib: float, gpu_hour: float | None, gpus: int
) -> Decimal:
    """:func:`hourly_rate` of plain numbers, remembered: a replay prices every run, and a
    handful of shapes and prices recur (``typed``: 1 and 1.0 become different Decimals)."""
    rate = dec(cpu_hour) * dec(cpus) + dec(memory_gib_hour) * dec(memory_gib)
    if gpu_hour is not None:
        rate += dec(gpu_hour) * gpus
    return rate


def _boundaries(start: datetime, end: datetime, versions: Sequence[TariffVersion]) -> Iterator[datetime]:
    """Every instant in (start, end) where the price may change."""
    cuts = {v.effective_from for v in versions if start < v.effective_from < end}
    for name in {v.tariff.timezone for v in versions}:
        zone = ZoneInfo(name)
        hour = start.astimezone(zone).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        at = hour.astimezone(UTC)
        while at < end:
            cuts.add(at)
            hour = (hour + timedelta(hours=1)).astimezone(zone)
            at = hour.astimezone(UTC)
    yield from sorted(cuts)


def price(versions: Sequence[TariffVersion], start: datetime, end: datetime, alloc: Allocation) -> list[Piece]:
    """The interval [start, end) cut where prices change, each piece priced (unrounded)."""
    if end <= start:
        return []
    ordered = sorted(versions, key=lambda v: v.effective_from)
    pieces: list[Piece] = []
    edges = [start, *_boundaries(start, end, ordered), end]
    # Each version's hourly rate at factor 1, and its factor by local hour: the same for every piece.
    base: dict[int, Decimal] = {}
    factors: dict[tuple[int, int], Decimal] = {}
    for a, b in itertools.pairwise(edges):
        index = version_at(ordered, a)
        if index is None:
            pieces.append(Piece(a, b, -1, Decimal(0), Decimal(0)))  # before any tariff: free
            continue
        tariff = ordered[index].tariff
        if index not in base:
            base[index] = hourly_rate(tariff, alloc)
        hour = tariff.local_hour(a)
        factor = factors.get((index, hour))
        if factor is None:
            factor = factors[index, hour] = dec(tariff.factor_at_hour(hour))
        rate = base[index] * factor
        if alloc.low_priority:
            rate *= 1 - dec(tariff.low_priority_discount)
        seconds = dec((b - a).total_seconds())
        pieces.append(Piece(a, b, index, factor, rate * seconds / HOUR))
    return pieces


def cost_micro(versions: Sequence[TariffVersion], start: datetime, end: datetime, alloc: Allocation) -> int:
    """The cost of one usage record, rounded once to the micro-yuan."""
    return to_micro(sum((p.cost for p in price(versions, start, end, alloc)), Decimal(0)))


#: The billing months anything accepts (``?month=``, invoices): wide enough for any real bill,
#: narrow enough that no date arithmetic on them can overflow.
FIRST_MONTH, LAST_MONTH = "2000-01", "2999-12"
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``"2026-03"`` → [2026-03-01, 2026-04-01) in Asia/Shanghai, as UTC instants. Raises
    ValueError, in words, for anything but a month from FIRST_MONTH to LAST_MONTH."""
    m = _MONTH.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12 or not FIRST_MONTH <= month <= LAST_MONTH:
        shown = f"'{month}'" if len(month) <= 20 and month.isprintable() else repr(month[:20])
        raise ValueError(f"month must be one from {FIRST_MONTH} to {LAST_MONTH}, written like 2026-03, not {shown}")
    year, mon = int(m.group(1)), int(m.group(2))
    zone = ZoneInfo("Asia/Shanghai")
    first = datetime(year, mon, 1, tzinfo=zone)
    nxt = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=zone)
    return first.astimezone(UTC), nxt.astimezone(UTC)


def month_of(when: datetime) -> str:
    """The billing month (Asia/Shanghai) an instant falls in, as ``"YYYY-MM"``."""
    return when.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")


#: Longest interval :func:`tariff_cost` prices in closed form (a zone could change its offset
#: and change it back within a longer one); longer ones are priced piece by piece.
_CLOSED_FORM_MAX = timedelta(days=90)


@functools.lru_cache(maxsize=256)
def _day_factors(periods: tuple[tuple[str, float], ...]) -> tuple[tuple[Decimal, ...], tuple[Decimal, ...]]:
    """The factor of each local hour and their running sums (prefix[h] = Σ factors before h)."""
    probe = Tariff(periods=[TariffPeriod(hours=hours, factor=factor) for hours, factor in periods])
    factors = tuple(dec(probe.factor_at_hour(h)) for h in range(24))
    return factors, tuple(itertools.accumulate(factors, initial=Decimal(0)))


def tariff_cost(tariff: Tariff, start: datetime, end: datetime, alloc: Allocation) -> Decimal:
    """What ``alloc`` costs over [start, end) under one tariff in force throughout, unrounded:
    the integral :func:`price` sums piece by piece (rate × the factor of each local hour ×
    seconds, less the low-priority discount), here in closed form over whole days and hours
    when the zone keeps one UTC offset throughout. The simulator prices every run with it."""
    if end <= start:
        return Decimal(0)
    zone = ZoneInfo(tariff.timezone)
    local = start.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    offsets = {local.utcoffset(), midnight.utcoffset(), end.astimezone(zone).utcoffset()}
    if end - start > _CLOSED_FORM_MAX or len(offsets) > 1:
        versions = [TariffVersion(datetime.min.replace(tzinfo=UTC), tariff)]
        return sum((p.cost for p in price(versions, start, end, alloc)), Decimal(0))
    factors, prefix = _day_factors(tuple((p.hours, p.factor) for p in tariff.periods))

    def hours_since_midnight(when: datetime) -> Decimal:
        """∫ factor dt from local midnight of ``start``'s day to ``when``, in factor-hours."""
        days, rest = divmod((when - midnight).total_seconds(), 86400.0)
        hour = int(rest // 3600)
        return (int(days) * prefix[24] + prefix[hour]) + factors[hour] * dec(rest - hour * 3600) / HOUR

    rate = hourly_rate(tariff, alloc) * (hours_since_midnight(end) - hours_since_midnight(start))
    return rate * (1 - dec(tariff.low_priority_discount)) if alloc.low_priority else rate
