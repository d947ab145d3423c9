"""Pricing across tariff boundaries: time-of-use periods, tariff changes, month ends, Decimal money."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from suanli.app.metering import split_at_month_ends
from suanli.core.metering import Allocation, TariffVersion, cost_micro, from_micro, month_bounds, month_of, price
from suanli.core.network import Tariff

CST = ZoneInfo("Asia/Shanghai")
TARIFF = Tariff(
    gpu_hour={"H100": 28},
    cpu_hour=0.1,
    periods=[{"hours": "08-11,18-23", "factor": 1.5}, {"hours": "23-07", "factor": 0.5}],  # type: ignore[list-item]
    low_priority_discount=0.3,
)
ONE_GPU = Allocation("H100", 1, 0, 0)
V1 = [TariffVersion(datetime(2026, 1, 1, tzinfo=UTC), TARIFF)]


def cny(versions: list[TariffVersion], start: datetime, end: datetime, alloc: Allocation = ONE_GPU) -> Decimal:
    return from_micro(cost_micro(versions, start, end, alloc))


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=CST)  # type: ignore[misc]


def test_flat_hour() -> None:
    assert cny(V1, local(2026, 3, 2, 12), local(2026, 3, 2, 13)) == Decimal("28")


def test_peak_to_valley_change_inside_a_record() -> None:
    # 22:30-23:30 Beijing time: half an hour at peak (×1.5), half in the valley (×0.5).
    assert cny(V1, local(2026, 3, 2, 22, 30), local(2026, 3, 2, 23, 30)) == Decimal("21") + Decimal("7")
    pieces = price(V1, local(2026, 3, 2, 22, 30), local(2026, 3, 2, 23, 30), ONE_GPU)
    assert [p.factor for p in pieces] == [Decimal("1.5"), Decimal("0.5")]


def test_hours_are_read_on_the_sites_clock() -> None:
    # 01:00-02:00 UTC is 09:00-10:00 in Beijing: peak.
    assert cny(V1, datetime(2026, 3, 2, 1, tzinfo=UTC), datetime(2026, 3, 2, 2, tzinfo=UTC)) == Decimal("42")


def test_tariff_change_inside_a_record() -> None:
    v2 = TariffVersion(local(2026, 3, 2, 12, 30), Tariff(gpu_hour={"H100": 40}))
    assert cny([*V1, v2], local(2026, 3, 2, 12), local(2026, 3, 2, 13)) == Decimal("14") + Decimal("20")


def test_before_any_tariff_is_free() -> None:
    late = [TariffVersion(local(2026, 3, 2, 12, 30), TARIFF)]
    assert cny(late, local(2026, 3, 2, 12), local(2026, 3, 2, 13)) == Decimal("14")


def test_cpu_memory_and_exact_decimals() -> None:
    alloc = Allocation(None, 0, 3, 0)
    # 3 CPUs × 0.1 CNY × 1 h is exactly 0.3, not 0.30000000000000004.
    assert cny(V1, local(2026, 3, 2, 12), local(2026, 3, 2, 13), alloc) == Decimal("0.3")


def test_low_priority_discount() -> None:
    alloc = Allocation("H100", 1, 0, 0, low_priority=True)
    assert cny(V1, local(2026, 3, 2, 12), local(2026, 3, 2, 13), alloc) == Decimal("19.6")


def test_many_small_records_add_up_to_one_large_one() -> None:
    start = local(2026, 3, 2, 21, 0)
    step = timedelta(seconds=7)
    small = sum(
        (cny(V1, start + i * step, start + (i + 1) * step) for i in range(1000)),
        Decimal(0),
    )
    whole = cny(V1, start, start + 1000 * step)
    assert abs(small - whole) <= Decimal("0.000001") * 1000  # each record rounds once, to the micro-yuan


def test_month_bounds_and_month_of() -> None:
    start, end = month_bounds("2026-03")
    assert start == local(2026, 3, 1)
    assert end == local(2026, 4, 1)
    assert month_bounds("2026-12")[1] == local(2027, 1, 1)
    # 2026-03-31 17:00 UTC is already April 1st in Beijing.
    assert month_of(datetime(2026, 3, 31, 17, tzinfo=UTC)) == "2026-04"


def test_a_record_over_a_month_end_is_split() -> None:

    start, end = local(2026, 3, 31, 23, 30), local(2026, 4, 1, 0, 45)
    pieces = split_at_month_ends(start, end)
    assert pieces == [(start, local(2026, 4, 1)), (local(2026, 4, 1), end)]
    assert [month_of(a) for a, _ in pieces] == ["2026-03", "2026-04"]
    # Priced separately, the two pieces cost what the whole interval costs (valley hours).
    whole = cny(V1, start, end)
    assert sum((cny(V1, a, b) for a, b in pieces), Decimal(0)) == whole == Decimal("17.5")
