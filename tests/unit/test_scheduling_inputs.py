"""The scheduler's inputs, computed once for the server and the simulator (``core/scheduling/inputs.py``)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from suanli.core.metering import Allocation as Held
from suanli.core.metering import TariffVersion, price, tariff_cost
from suanli.core.network import Tariff
from suanli.core.scheduler import Allocation, Policy, SiteState, TenantShare
from suanli.core.scheduling import inputs
from suanli.core.scheduling.model import PendingJob
from suanli.core.spec import Resources

H = 3600.0


def test_decayed_gpu_seconds_is_the_integral_of_the_halving_weight() -> None:
    assert inputs.decayed_gpu_seconds(8, 0.0, H, H, 1e12) == pytest.approx(8 * H, rel=1e-6)
    # One hour that ended one half-life ago, with a half-life of an hour.
    assert inputs.decayed_gpu_seconds(1, 0.0, H, 2 * H, H) == pytest.approx(H / math.log(2) * 0.25)
    assert inputs.decayed_gpu_seconds(4, H, 0.0, H, H) == 0.0
    assert inputs.decayed_gpu_seconds(4, 0.0, H, H, 0.0) == 0.0


def test_usage_meter_equals_the_sum_over_finished_and_running_attempts() -> None:
    rng = random.Random(3)
    half_life = 5 * H
    meter = inputs.UsageMeter(half_life)
    finished: list[tuple[int, float, float]] = []
    running: list[tuple[int, float]] = []
    for _ in range(60):
        start = rng.uniform(0, 50 * H)
        gpus = rng.randint(1, 8)
        if rng.random() < 0.7:
            end = start + rng.uniform(1, 10 * H)
            meter.hold("a", "H100", gpus, start)
            meter.release("a", "H100", gpus, start, end)
            finished.append((gpus, start, end))
        else:
            meter.hold("a", "H100", gpus, start)
            running.append((gpus, start))
    now = 70 * H
    expected = sum(inputs.decayed_gpu_seconds(g, s, e, now, half_life) for g, s, e in finished)
    expected += sum(inputs.decayed_gpu_seconds(g, s, now, now, half_life) for g, s in running)
    assert meter.usage(now)["a"]["H100"] == pytest.approx(expected, rel=1e-9)


def test_a_running_attempt_counts_decayed_not_at_full_weight() -> None:
    meter = inputs.UsageMeter(H)
    meter.hold("a", "A800", 4, 0.0)
    # Ten half-lives in, an attempt running all along counts ≈ 4 GPUs × H / ln 2, not 4 × 10 H.
    assert meter.usage(10 * H)["a"]["A800"] == pytest.approx(4 * H / math.log(2), rel=1e-3)


def test_run_time_estimate_is_the_mean_of_the_recent_successful_attempts() -> None:
    runs = inputs.RunTimes(window=3)
    assert runs.estimate("a") is None
    for order, seconds in [(1, 100.0), (2, 200.0), (3, 300.0), (4, 400.0)]:
        runs.succeeded("a", order, seconds)
    assert runs.estimate("a") == pytest.approx(300.0)  # 200, 300, 400: the oldest left the window
    runs.succeeded("a", 0, 10_000.0)  # an attempt placed before all of them: not recent
    assert runs.estimate("a") == pytest.approx(300.0)
    runs.succeeded("b", 1, 0.2)
    assert runs.estimate("b") == 1.0  # at least a second


def test_allocation_ends_come_from_time_limit_estimate_or_default() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    policy = Policy(default_estimate_s=600.0)
    tenants = {"a": TenantShare(estimate_s=120.0), "b": TenantShare()}
    allocs = [Allocation("j1", "n1", 1, 1, 1, None, tenant="a", started_at=now)]
    allocs.append(Allocation("j2", "n1", 1, 1, 1, None, tenant="b", started_at=now))
    fixed = now + timedelta(seconds=5)
    allocs.append(Allocation("j3", "n1", 1, 1, 1, fixed, tenant="a", started_at=now))
    inputs.fill_estimates([SiteState("s", "r", [], allocations=allocs)], tenants, policy)
    assert [a.ends_at for a in allocs] == [now + timedelta(seconds=120), now + timedelta(seconds=600), fixed]
    job = PendingJob("j", 1, Resources(), tenant="a")
    assert inputs.job_seconds(job, tenants, policy) == 120.0
    limited = PendingJob("k", 2, Resources(), tenant="a", time_limit_s=60.0)
    assert inputs.job_seconds(limited, tenants, policy) == 60.0


def test_tenant_shares_name_every_known_tenant() -> None:
    shares = inputs.tenant_shares(
        {"a": 2.0}, {"b": {"H100": 5.0}}, {"a": 30.0}, {"c": inputs.Quota(max_gpus=4)}, extra=["d"]
    )
    assert sorted(shares) == ["a", "b", "c", "d"]
    assert shares["a"].weight == 2.0
    assert shares["a"].estimate_s == 30.0
    assert shares["b"].usage == {"H100": 5.0}
    assert shares["c"].max_gpus == 4
    assert shares["d"].weight == 1.0


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin"])
def test_tariff_cost_is_the_billing_integral(zone: str) -> None:
    tariff = Tariff(
        gpu_hour={"A": 7.5},
        cpu_hour=0.1,
        memory_gib_hour=0.01,
        timezone=zone,
        periods=[{"hours": "08-11", "factor": 2}, {"hours": "18-22", "factor": 1.5}],  # type: ignore[list-item]
        low_priority_discount=0.3,
    )
    versions = [TariffVersion(datetime(2000, 1, 1, tzinfo=UTC), tariff)]
    rng = random.Random(7)
    for _ in range(300):
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 365 * 86400))
        end = start + timedelta(seconds=rng.choice([rng.uniform(0, 7200), rng.uniform(0, 5 * 86400)]))
        held = Held("A", rng.randint(1, 8), 4, 32, rng.random() < 0.3)
        pieces = sum((p.cost for p in price(versions, start, end, held)), Decimal(0))
        assert float(tariff_cost(tariff, start, end, held)) == pytest.approx(float(pieces), rel=1e-9, abs=1e-9)


def test_usage_meter_stays_finite_over_many_half_lives() -> None:
    meter = inputs.UsageMeter(60.0)
    meter.hold("a", "T4", 1, 0.0)
    for k in range(1, 200):  # 200 hours of one-minute half-lives: 2^12000 without rebasing
        meter.hold("a", "T4", 1, k * H)
        meter.release("a", "T4", 1, (k - 1) * H, k * H)
    now = 200 * H
    expected = inputs.decayed_gpu_seconds(1, 199 * H, now, now, 60.0)  # the one running; the rest ≈ 0
    expected += sum(inputs.decayed_gpu_seconds(1, (k - 1) * H, k * H, now, 60.0) for k in range(1, 200))
    used = meter.usage(now)["a"]["T4"]
    assert math.isfinite(used)
    assert used == pytest.approx(expected, rel=1e-6)
