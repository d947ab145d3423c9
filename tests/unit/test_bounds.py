"""Issue 16 items 2, 5 and 7 (months): every duration, price and month an input can carry is
bounded where it is parsed, and one job the scheduler cannot compute never stops a pass."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from suanli.core.clock import check_instant
from suanli.core.errors import SpecError
from suanli.core.metering import month_bounds
from suanli.core.network import Tariff, parse_network
from suanli.core.resources import Accelerator, parse_duration
from suanli.core.scheduler import Allocation, NodeState, PendingJob, Policy, SiteState, schedule
from suanli.core.spec import JobSpec, Resources, job_spec_from_data, parse_job_spec

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("3000000d", "time_limit 3000000d is over the limit of 365d"),
        (1e308, "time_limit 1e+308 is over the limit of 365d"),
        (float("inf"), "time_limit inf is over the limit of 365d"),
        (float("nan"), "not NaN"),
        ("366d", "time_limit 366d is over the limit of 365d"),
    ],
)
def test_a_duration_past_a_year_or_not_finite_is_refused(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_duration(value, "time_limit")


def test_a_duration_up_to_a_year_is_accepted() -> None:
    assert parse_duration("365d") == 365 * 86400
    assert parse_duration("2h30m") == 9000
    assert parse_duration("90d", limit_s=10 * 365 * 86400) == 90 * 86400


@pytest.mark.parametrize(
    ("yaml", "words"),
    [
        ("run: x\ntime_limit: 3000000d\n", "time_limit 3000000d is over the limit of 365d"),
        ("run: x\ntime_limit: .nan\n", "time_limit must be a duration like"),
        ("run: x\nplacement: {max_price_per_gpu_hour: .nan}\n", "max_price_per_gpu_hour must be a price"),
        ("run: x\nplacement: {max_price_per_gpu_hour: 2000000}\n", "over the limit of 1,000,000 CNY per hour"),
        ("run: x\nresources: {cpus: .inf}\n", "cpus must be a number"),
    ],
)
def test_the_job_spec_refuses_unbounded_numbers(yaml: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_job_spec(yaml)


def test_the_job_spec_refuses_nan_and_huge_limits_in_json() -> None:
    """Python's json reads NaN and 1e308; the API hands such bodies to the same validation."""
    for body in ('{"run": "x", "time_limit": NaN}', '{"run": "x", "time_limit": 1e308}'):
        with pytest.raises(SpecError, match="time_limit"):
            job_spec_from_data(json.loads(body))
    with pytest.raises(SpecError, match="max_latency_ms"):
        job_spec_from_data(json.loads('{"run": "x", "placement": {"max_latency_ms": Infinity}}'))
    assert job_spec_from_data({"run": "x", "time_limit": "365d"}).time_limit == 365 * 86400


@pytest.mark.parametrize(
    ("tariff", "words"),
    [
        ("{gpu_hour: {H100: .nan}}", "gpu_hour of H100 must be a price in CNY per hour, like 28, not NaN"),
        ("{gpu_hour: {H100: -1}}", "gpu_hour of H100 must be at least 0"),
        ("{gpu_hour: {H100: 1.0e+7}}", "gpu_hour of H100 1e[+]07 is over the limit of 1,000,000 CNY per hour"),
        ("{cpu_hour: .inf}", "cpu_hour inf is over the limit"),
        ("{memory_gib_hour: .nan}", "memory_gib_hour must be a price"),
        ("{periods: [{hours: 08-11, factor: .inf}]}", "factor must be more than 0 and at most 100"),
        ("{periods: [{hours: 08-11, factor: 1000}]}", "factor must be more than 0 and at most 100"),
        ("{low_priority_discount: .nan}", "low_priority_discount"),
    ],
)
def test_the_network_file_refuses_bad_prices(tariff: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_network(f"sites: [{{name: a, region: r, tariff: {tariff}}}]\n")


def test_a_tariff_from_json_refuses_nan() -> None:
    with pytest.raises(ValueError, match="not NaN"):
        Tariff.model_validate(json.loads('{"gpu_hour": {"H100": NaN}}'))
    assert Tariff.model_validate({"gpu_hour": {"H100": 1_000_000}}).gpu_hour == {"H100": 1_000_000}


@pytest.mark.parametrize(
    "field", ["usage_half_life", "default_estimate", "preempt_after", "preempt_cooldown", "retry_backoff_cap"]
)
def test_the_network_files_durations_are_bounded(field: str) -> None:
    with pytest.raises(SpecError, match=f"{field} 3000000d is over the limit of 365d"):
        parse_network(f"scheduling: {{{field}: 3000000d}}\n")
    with pytest.raises(SpecError, match=field):
        parse_network(f"scheduling: {{{field}: .nan}}\n")


def test_the_bounds_are_in_the_json_schema() -> None:
    schema = Tariff.model_json_schema()
    assert schema["properties"]["cpu_hour"]["maximum"] == 1_000_000
    assert schema["properties"]["gpu_hour"]["additionalProperties"]["maximum"] == 1_000_000
    limit = JobSpec.model_json_schema()["properties"]["time_limit"]["anyOf"][0]
    assert limit["maximum"] == 365 * 86400


@pytest.mark.parametrize("month", ["0001-01", "9999-12", "1999-12", "3000-01", "2026-13", "2026-3", "x"])
def test_months_outside_2000_to_2999_are_refused_in_words(month: str) -> None:
    with pytest.raises(ValueError, match="month must be one from 2000-01 to 2999-12"):
        month_bounds(month)


def test_months_at_the_edges_are_accepted() -> None:
    assert month_bounds("2000-01")[0] == datetime(1999, 12, 31, 16, tzinfo=UTC)
    assert month_bounds("2999-12")[1] == datetime(2999, 12, 31, 16, tzinfo=UTC)


def test_instants_outside_the_years_2000_to_2999_are_refused() -> None:
    far = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
    for when in (datetime(1, 1, 1, tzinfo=UTC), far, datetime(3000, 1, 1, tzinfo=UTC)):
        with pytest.raises(ValueError, match="must lie in the years 2000 to 2999"):
            check_instant(when, "from")
    assert check_instant(NOW) == NOW


# -- one bad job never stops a pass ------------------------------------------------------------
def _site(gpus: int = 16, allocations: list[Allocation] | None = None) -> SiteState:
    free = tuple(range(gpus - sum(a.gpus for a in allocations or [])))
    node = NodeState("tj-01", "H100", gpus, 128, 2048, free, 128, 2048)
    return SiteState("tianjin", "tianjin", [node], allocations=list(allocations or []))


def _job(job_id: str, seq: int, gpus: int = 8, **kw: object) -> PendingJob:
    res = Resources(accelerators=[Accelerator("H100", gpus)], cpus=1, memory=1)
    return PendingJob(id=job_id, seq=seq, resources=res, **kw)  # type: ignore[arg-type]


def test_a_job_whose_rule_raises_gets_a_reason_and_the_rest_are_placed() -> None:
    def rule(job: PendingJob, site: SiteState) -> str | None:
        if job.id == "bad":
            raise ArithmeticError("a stored value no rule can read")
        return None

    jobs = [_job("bad", 1), _job("a", 2), _job("b", 3)]
    result = schedule(jobs, [_site()], NOW, rules=[rule])
    assert sorted(p.job_id for p in result.placements) == ["a", "b"]
    assert result.reasons["bad"].startswith("cannot be scheduled: ArithmeticError: a stored value no rule can read")
    assert set(result.errors) == {"bad"}


def test_a_job_with_a_run_time_past_the_calendar_breaks_no_pass() -> None:
    """A time limit of 3000000 days (stored before limits were checked) is placed; the next job
    reserves behind it, from a start no datetime can hold, and the pass completes."""
    jobs = [_job("huge", 1, gpus=16, time_limit_s=3e6 * 86400), _job("next", 2, gpus=16)]
    # Submission order (the default's shortest-remaining-first would start "next" first).
    result = schedule(jobs, [_site()], NOW, policy=Policy(order="priority"))
    assert [p.job_id for p in result.placements] == ["huge"]
    assert result.reservations["next"] == ("tianjin", datetime.max.replace(tzinfo=UTC))
    assert "next" in result.reasons
    assert not result.errors
