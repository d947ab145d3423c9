"""Scenario tests for each policy of the network scheduler: site choice, aging, fair share,
backfill, preemption, quotas, data rules, and the per-site explanation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from suanli.core.network import Tariff
from suanli.core.resources import Accelerator
from suanli.core.scheduler import (
    Allocation,
    NodeState,
    PendingJob,
    Policy,
    SiteState,
    TenantShare,
    explain_sites,
    schedule,
)
from suanli.core.spec import Priority, Resources

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # 13:00 in Asia/Shanghai: no tariff period


def node(name: str, gpu: str | None = "H100", gpus: int = 8, cpus: float = 64, memory: float = 512) -> NodeState:
    return NodeState(name, gpu, gpus, cpus, memory, tuple(range(gpus)), cpus, memory)


def busy(n: NodeState, gpus: int) -> NodeState:
    n.free_gpus = n.free_gpus[gpus:]
    n.cpus_free -= 1
    n.memory_free -= 1
    return n


def site(name: str, region: str, *nodes: NodeState, price: float | None = None, **lat: float) -> SiteState:
    tariff = Tariff(gpu_hour={n.gpu_type: price for n in nodes if n.gpu_type}) if price is not None else None
    return SiteState(name, region, list(nodes), latency_ms=dict(lat), tariff=tariff)


def job(job_id: str, seq: int, acc: str = "H100:8", nodes: int = 1, **kw: object) -> PendingJob:
    accels = [Accelerator(a.split(":")[0], int(a.split(":")[1])) for a in acc.split("|")]
    return PendingJob(id=job_id, seq=seq, resources=Resources(accelerators=accels, num_nodes=nodes), **kw)  # type: ignore[arg-type]


def alloc(job_id: str, node_name: str, gpus: int, ends_in_min: float | None, **kw: object) -> Allocation:
    ends = NOW + timedelta(minutes=ends_in_min) if ends_in_min is not None else None
    return Allocation(job_id, node_name, gpus, 1, 1, ends, **kw)  # type: ignore[arg-type]


def three() -> list[SiteState]:
    return [
        site("cheap-far", "ningxia", node("c1"), price=10, beijing=28),
        site("dear-near", "beijing", node("d1"), price=40, beijing=0.5),
        site("mid", "tianjin", node("m1"), price=20, beijing=2),
    ]


# -- site choice ----------------------------------------------------------------------------


def test_optimize_cost_latency_time_balanced() -> None:
    def where(optimize: str, acc: str = "H100:8") -> str:
        j = job("j", 1, acc, home_region="beijing", optimize=optimize)
        return schedule([j], three(), NOW).placements[0].site

    assert where("cost") == "cheap-far"
    assert where("latency") == "dear-near"
    # balanced: price/max + latency/max → cheap-far 0.25+1, dear-near 1+0.02, mid 0.5+0.07
    assert where("balanced") == "mid"
    # time: best fit first (all equal here), then price
    assert where("time") == "cheap-far"


def test_time_prefers_best_fit() -> None:
    sites = [site("a", "r", node("a1")), site("b", "r", busy(node("b1"), 6))]
    [p] = schedule([job("j", 1, "H100:2", optimize="time")], sites, NOW).placements
    assert p.site == "b"


def test_ties_break_by_name() -> None:
    sites = [site("zeta", "r", node("z1")), site("alpha", "r", node("a1"))]
    assert schedule([job("j", 1)], sites, NOW).placements[0].site == "alpha"


def test_max_latency_is_a_hard_limit() -> None:
    j = job("j", 1, home_region="beijing", max_latency_ms=5, optimize="cost")
    result = schedule([j], three(), NOW)
    assert result.placements[0].site == "mid"
    sites = three()[:1]
    result = schedule([j], sites, NOW)
    assert "28 ms from beijing is over max_latency_ms 5" in result.reasons["j"]


def test_data_rule_hook_filters_sites() -> None:
    def only_mid(j: PendingJob, s: SiteState) -> str | None:
        return None if s.name == "mid" else f"dataset {j.datasets[0]} may not be read at {s.name}"

    j = job("j", 1, datasets=("notes",), optimize="cost")
    result = schedule([j], three(), NOW, rules=[only_mid])
    assert result.placements[0].site == "mid"
    blocked = schedule([j], three()[:2], NOW, rules=[only_mid])
    assert "dataset notes may not be read at cheap-far" in blocked.reasons["j"]


# -- queue order ----------------------------------------------------------------------------


def test_aging_lets_an_old_low_job_pass_a_fresh_high_one() -> None:
    sites = [site("s", "r", node("n1"))]
    old_low = job("old", 1, priority=Priority.LOW, submitted_at=NOW - timedelta(hours=20))
    fresh_high = job("new", 2, priority=Priority.HIGH, submitted_at=NOW)
    assert [p.job_id for p in schedule([fresh_high, old_low], sites, NOW).placements] == ["old"]
    young_low = job("young", 1, priority=Priority.LOW, submitted_at=NOW - timedelta(hours=1))
    assert [p.job_id for p in schedule([fresh_high, young_low], sites, NOW).placements] == ["new"]


def test_fair_share_orders_the_less_served_tenant_first() -> None:
    sites = [site("s", "r", node("n1"))]
    tenants = {"heavy": TenantShare(usage={"H100": 1e6}), "light": TenantShare(usage={"H100": 1e3})}
    jobs = [job("h", 1, tenant="heavy"), job("l", 2, tenant="light")]
    assert schedule(jobs, sites, NOW, tenants=tenants).placements[0].job_id == "l"
    # Weights count: 'heavy' with 1000 times the weight is under its share.
    weighted = {"heavy": TenantShare(weight=1000, usage={"H100": 1e6}), "light": TenantShare(usage={"H100": 1e5})}
    assert schedule(jobs, sites, NOW, tenants=weighted).placements[0].job_id == "h"


# -- backfill -------------------------------------------------------------------------------


def backfill_world() -> list[SiteState]:
    # 8 GPUs, 6 held until +60 min: a job of 8 waits until then; 2 GPUs are free now.
    s = site("s", "r", busy(node("n1"), 6))
    s.allocations.append(alloc("running", "n1", 6, 60))
    return [s]


def test_backfill_short_job_starts_ahead_long_one_waits() -> None:
    big = job("big", 1, "H100:8", priority=Priority.HIGH)
    long = job("long", 2, "H100:2", time_limit_s=3 * 3600)
    short = job("short", 3, "H100:2", time_limit_s=30 * 60)
    result = schedule([big, short, long], backfill_world(), NOW, policy=Policy(order="priority"))
    assert [p.job_id for p in result.placements] == ["short"]
    assert result.reservations["big"][0] == "s"
    assert "waiting behind job big" in result.reasons["long"]


def test_backfill_uses_tenant_estimate_without_time_limit() -> None:
    big = job("big", 1, "H100:8", priority=Priority.HIGH)
    quick = job("q", 2, "H100:2", tenant="quick")
    slow = job("w", 3, "H100:2", tenant="slow")
    tenants = {"quick": TenantShare(estimate_s=600), "slow": TenantShare(estimate_s=7200)}
    result = schedule([big, quick, slow], backfill_world(), NOW, tenants=tenants)
    assert [p.job_id for p in result.placements] == ["q"]


def test_without_backfill_nothing_passes_a_blocked_job() -> None:
    big = job("big", 1, "H100:8", priority=Priority.HIGH)
    short = job("short", 2, "H100:2", time_limit_s=60)
    result = schedule([big, short], backfill_world(), NOW, policy=Policy(backfill=False))
    assert result.placements == []


# -- preemption -----------------------------------------------------------------------------


def preempt_world(ends_in_min: float | None = None, **kw: object) -> list[SiteState]:
    s = site("s", "r", busy(node("n1"), 8))
    s.allocations.append(alloc("victim", "n1", 8, ends_in_min, tenant="b", started_at=NOW, **kw))
    return [s]


def test_high_job_preempts_low_work_when_nothing_frees_in_time() -> None:
    result = schedule([job("hi", 1, priority=Priority.HIGH, tenant="a")], preempt_world(priority=Priority.LOW), NOW)
    [p] = result.preemptions
    assert (p.victim, p.for_job, p.site) == ("victim", "hi", "s")
    assert p.reason.startswith("preempted by high-priority job hi")
    assert "preempting 1 job(s) at s" in result.reasons["hi"]


def test_no_preemption_when_capacity_frees_soon_or_victim_not_preemptible() -> None:
    hi = job("hi", 1, priority=Priority.HIGH, tenant="a")
    assert not schedule([hi], preempt_world(ends_in_min=2, priority=Priority.LOW), NOW).preemptions
    assert not schedule([hi], preempt_world(priority=Priority.HIGH), NOW).preemptions
    assert not schedule([hi], preempt_world(priority=Priority.NORMAL), NOW).preemptions  # not over share
    assert not schedule([hi], preempt_world(priority=Priority.LOW), NOW, policy=Policy(preemption=False)).preemptions


def test_preemption_cool_down() -> None:
    hi = job("hi", 1, priority=Priority.HIGH, tenant="a")
    recent = preempt_world(priority=Priority.LOW, last_preempted_at=NOW - timedelta(minutes=10))
    assert not schedule([hi], recent, NOW).preemptions
    old = preempt_world(priority=Priority.LOW, last_preempted_at=NOW - timedelta(hours=2))
    assert schedule([hi], old, NOW).preemptions


def test_under_share_tenant_preempts_over_share_work() -> None:
    tenants = {"a": TenantShare(usage={}), "b": TenantShare(usage={"H100": 1e6})}
    result = schedule([job("fair", 1, tenant="a")], preempt_world(), NOW, tenants=tenants)
    [p] = result.preemptions
    assert p.victim == "victim"
    assert "under its fair share" in p.reason


def test_stopping_victim_is_not_preempted_twice() -> None:
    hi = job("hi", 1, priority=Priority.HIGH, tenant="a")
    sites = preempt_world(priority=Priority.LOW, stopping=True)
    result = schedule([hi], sites, NOW)
    assert not result.preemptions
    assert result.reservations["hi"][0] == "s"


# -- quotas ---------------------------------------------------------------------------------


def test_quotas_network_and_per_site() -> None:
    sites = [site("a", "r", node("a1")), site("b", "r", node("b1"))]
    capped = {"t": TenantShare(max_gpus=8)}
    result = schedule([job("1", 1, tenant="t"), job("2", 2, tenant="t")], sites, NOW, tenants=capped)
    assert [p.job_id for p in result.placements] == ["1"]
    assert result.reasons["2"].startswith("over quota: tenant t holds 8 GPUs and may hold 8 at once")
    per_site = {"t": TenantShare(max_gpus_per_site=8)}
    result = schedule([job("1", 1, tenant="t"), job("2", 2, tenant="t")], sites, NOW, tenants=per_site)
    assert sorted(p.site for p in result.placements) == ["a", "b"]


# -- explain --------------------------------------------------------------------------------


def test_explain_sites_says_why_per_site() -> None:
    tj = site("tianjin-gaocun", "tianjin", busy(node("tj-01", "H100", 8), 8), price=28, beijing=1.5)
    tj.allocations.append(alloc("x", "tj-01", 8, 64.5))
    nx = site("ningxia", "ningxia", node("nx-01", "910B"), beijing=28)
    j = job("j", 1, "H100:8", home_region="beijing")
    texts = [v.text for v in explain_sites(j, [tj, nx], NOW)]
    assert texts == [
        "ningxia: 910B does not match H100",
        "tianjin-gaocun: 8 × H100 free at ~06:05 UTC, 28 CNY/GPU-h, 1.5 ms from beijing",
    ]
