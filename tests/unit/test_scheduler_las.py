"""The default order (least attained service, shortest remaining first, bounded starvation)
and preemption for shorter work."""

from __future__ import annotations

from datetime import timedelta

from suanli.core.network import parse_network
from suanli.core.scheduler import Policy, TenantShare, schedule
from suanli.core.scheduling.order import ordered, shares
from suanli.core.spec import JobSpec, Priority
from tests.unit.test_scheduler_policies import NOW, alloc, busy, job, node, site


def order_of(jobs: list, policy: Policy | None = None, tenants: dict | None = None) -> list[str]:  # type: ignore[type-arg]
    policy = policy or Policy()
    tenants = tenants or {}
    return [j.id for j in ordered(jobs, NOW, policy, shares(tenants, {j.tenant for j in jobs}), tenants)]


def test_less_attained_service_goes_first_then_shorter_remaining_then_submit_order() -> None:
    served = job("served", 1, "H100:2", attained_gpu_s=9 * 3600.0)  # past the 8 GPU-hour threshold
    long = job("long", 2, "H100:2", time_limit_s=5 * 3600)
    short = job("short", 3, "H100:2", time_limit_s=600)
    plain = job("plain", 4, "H100:2")  # no limit, no history: the default estimate (1 h)
    assert order_of([served, long, short, plain]) == ["short", "plain", "long", "served"]
    # The classic order is submit order within a class.
    assert order_of([served, long, short, plain], Policy(order="priority")) == ["served", "long", "short", "plain"]


def test_a_names_history_estimates_its_run_time() -> None:
    tenants = {"t": TenantShare(estimate_s=3600, by_name={"eval": 300, "pretrain": 20 * 3600})}
    pre = job("pre", 1, "H100:1", tenant="t", name="pretrain")
    ev = job("ev", 2, "H100:1", tenant="t", name="eval")
    other = job("other", 3, "H100:1", tenant="t", name="new")
    assert order_of([pre, ev, other], tenants=tenants) == ["ev", "other", "pre"]


def test_priority_class_and_fair_share_come_before_attained_service() -> None:
    high = job("high", 5, "H100:1", priority=Priority.HIGH, attained_gpu_s=100 * 3600.0)
    rich = job("rich", 1, "H100:1", tenant="rich", time_limit_s=60)
    poor = job("poor", 2, "H100:1", tenant="poor", time_limit_s=7200)
    tenants = {"rich": TenantShare(usage={"H100": 1e6}), "poor": TenantShare()}
    assert order_of([rich, poor, high], tenants=tenants) == ["high", "poor", "rich"]


def test_a_job_waiting_past_the_starvation_bound_goes_first_in_its_class() -> None:
    policy = Policy(starvation_factor=4.0)
    old = job("old", 1, "H100:1", time_limit_s=3600, submitted_at=NOW - timedelta(hours=4, minutes=1))
    young = job("young", 2, "H100:1", time_limit_s=3600, submitted_at=NOW - timedelta(hours=3))
    fresh = job("fresh", 3, "H100:1", time_limit_s=60, submitted_at=NOW)
    assert order_of([old, young, fresh], policy) == ["old", "fresh", "young"]
    assert order_of([old, young, fresh], Policy(starvation_factor=0)) == ["fresh", "old", "young"]


def with_alloc(sites: list, a: object) -> list:  # type: ignore[type-arg]
    sites[0].allocations = [a]
    return sites


def long_running(**kw: object) -> object:
    # 8 GPUs for 3 hours: 24 GPU-hours attained, past the 8 GPU-hour threshold, no end known.
    base: dict[str, object] = {"started_at": NOW - timedelta(hours=3), "estimated": True}
    base.update(kw)
    return alloc("long", "n1", 8, -60, **base)


def test_a_fresh_job_preempts_a_checkpointing_long_runner() -> None:
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], long_running())
    result = schedule([job("short", 1, "H100:2", time_limit_s=600)], sites, NOW)
    assert [p.victim for p in result.preemptions] == ["long"]
    assert "less GPU time" in result.preemptions[0].reason
    assert "preempting 1 job(s)" in result.reasons["short"]


def test_no_preemption_for_shorter_work_of_a_job_that_does_not_checkpoint_or_opted_out() -> None:
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], long_running(checkpoints=False))
    assert schedule([job("short", 1, "H100:2", time_limit_s=600)], sites, NOW).preemptions == []


def test_no_preemption_of_a_job_in_the_same_queue_or_about_to_end_or_high() -> None:
    young = alloc("long", "n1", 8, 30, started_at=NOW - timedelta(minutes=30))  # 4 GPU-hours: queue 0
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], young)
    assert schedule([job("unknown", 1, "H100:2")], sites, NOW).preemptions == []
    # In the same queue only a job whose run time is known preempts, and only work expected to
    # run more than twice as long (with the restore cost): 30 min left > 2 × (10 min + 1 min).
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], young)
    assert [p.victim for p in schedule([job("k", 1, "H100:2", time_limit_s=600)], sites, NOW).preemptions] == ["long"]
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], young)
    assert schedule([job("k", 1, "H100:2", time_limit_s=1200)], sites, NOW).preemptions == []
    ending = alloc("long", "n1", 8, 0.5, started_at=NOW - timedelta(hours=3))  # time limit ends in 30 s
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], ending)
    assert schedule([job("short", 1, "H100:2")], sites, NOW).preemptions == []
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], long_running(priority=Priority.HIGH))
    assert schedule([job("short", 1, "H100:2", priority=Priority.HIGH)], sites, NOW).preemptions == []


def test_an_overdue_estimate_is_expected_to_run_on_so_backfill_is_not_promised_a_start_now() -> None:
    sites = with_alloc([site("s", "r", busy(node("n1"), 8))], long_running())
    result = schedule([job("big", 1, "H100:8", attained_gpu_s=10 * 3600.0)], sites, NOW)
    # Ran 3 h past a planned end an hour ago: expected to run about as long again (3 h).
    assert result.reservations["big"][1] == NOW + timedelta(hours=3)
    result = schedule(
        [job("big", 1, "H100:8", attained_gpu_s=10 * 3600.0)],
        with_alloc([site("s", "r", busy(node("n1"), 8))], long_running()),
        NOW,
        policy=Policy(order="priority"),
    )
    assert result.reservations["big"][1] == NOW


def test_the_network_file_sets_the_knobs_and_the_spec_opts_out() -> None:
    net = parse_network(
        "scheduling: {order: las, las_thresholds: [16, 1], starvation_factor: 3, restore_cost: 2m,"
        " las_preemption: false}\n"
    )
    policy = Policy.from_decl(net.scheduling)
    assert policy.las_thresholds_gpu_s == (3600.0, 16 * 3600.0)
    assert (policy.starvation_factor, policy.restore_cost_s, policy.las_preemption) == (3.0, 120.0, False)
    assert [policy.las_queue(s) for s in (0, 3600, 1e9)] == [0, 1, 2]
    assert Policy.from_decl(parse_network("regions: []\n").scheduling).las_thresholds_gpu_s == (8 * 3600.0,)
    assert JobSpec.model_validate({"run": "x"}).preemptible is True
    assert JobSpec.model_validate({"run": "x", "preemptible": False}).preemptible is False


def test_past_the_bound_a_starving_job_reserves_and_newer_short_work_no_longer_passes_it() -> None:
    n = busy(node("n1", gpus=16), 8)
    s = site("s", "r", n)
    s.allocations = [alloc(x, "n1", 4, 5, started_at=NOW - timedelta(minutes=5)) for x in ("a", "b")]
    wide = job("wide", 1, "H100:16", time_limit_s=3600, submitted_at=NOW - timedelta(minutes=130))
    short = job("short", 5, "H100:4", time_limit_s=600, submitted_at=NOW)
    policy = Policy(starvation_factor=2, las_preemption=False)
    result = schedule([wide, short], [s], NOW, policy=policy)
    assert result.placements == []
    assert result.reservations["wide"] == ("s", NOW + timedelta(minutes=5))
    assert result.reasons["short"].startswith("waiting behind job wide")
    # Past the bound even work that would end before the reserved start does not pass it (agents
    # start work late; the reservation would slide behind it).
    tiny = job("tiny", 6, "H100:4", time_limit_s=120, submitted_at=NOW)
    result = schedule([wide, tiny], [s], NOW, policy=policy)
    assert "past its starvation bound" in result.reasons["tiny"]
    # Within the bound (2 × 1 h), shortest remaining first lets the newer short job go ahead.
    wide = job("wide", 1, "H100:16", time_limit_s=3600, submitted_at=NOW - timedelta(minutes=110))
    result = schedule([wide, short], [s], NOW, policy=policy)
    assert [p.job_id for p in result.placements] == ["short"]
