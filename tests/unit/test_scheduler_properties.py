"""Property-based tests (Hypothesis) of the network scheduler's invariants, and long synthetic
runs for aging (no starvation) and fair share (usage converges to the weights)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.core.network import Tariff
from suanli.core.resources import Accelerator
from suanli.core.scheduler import (
    Allocation,
    NodeState,
    PendingJob,
    Policy,
    ScheduleResult,
    SiteState,
    TenantShare,
    schedule,
)
from suanli.core.spec import Priority, Resources

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)
TYPES = ["H100", "A800"]
TENANTS = ["a", "b", "c"]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[SiteState], list[PendingJob], dict[str, TenantShare], Policy]:
    sites: list[SiteState] = []
    running = 0
    for s in range(draw(st.integers(1, 3))):
        nodes: list[NodeState] = []
        allocs: list[Allocation] = []
        for i in range(draw(st.integers(1, 4))):
            total = draw(st.sampled_from([4, 8]))
            used = draw(st.integers(0, total))
            cpus = draw(st.sampled_from([16, 64]))
            name = f"s{s}n{i}"
            nodes.append(
                NodeState(
                    name, draw(st.sampled_from(TYPES)), total, cpus, 256, tuple(range(used, total)), cpus - 1, 255
                )
            )
            if used:
                running += 1
                ends = draw(st.one_of(st.none(), st.integers(1, 600).map(lambda m: NOW + timedelta(minutes=m))))
                allocs.append(
                    Allocation(
                        f"r{running}",
                        name,
                        used,
                        1,
                        1,
                        ends,
                        tenant=draw(st.sampled_from(TENANTS)),
                        priority=draw(st.sampled_from(list(Priority))),
                        started_at=NOW - timedelta(minutes=5),
                        stopping=draw(st.booleans()),
                    )
                )
        tariff = Tariff(gpu_hour={t: float(draw(st.integers(5, 40))) for t in TYPES})
        latency = {"r0": float(draw(st.integers(0, 30)))}
        sites.append(
            SiteState(f"s{s}", f"r{s}", nodes, online=True, latency_ms=latency, tariff=tariff, allocations=allocs)
        )
    jobs: list[PendingJob] = []
    for i in range(draw(st.integers(0, 25))):
        options = draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True))
        count = draw(st.integers(1, 8))
        jobs.append(
            PendingJob(
                id=f"j{i}",
                seq=i,
                resources=Resources(
                    accelerators=[Accelerator(t, count) for t in options],
                    cpus=draw(st.sampled_from([1, 4, 16])),
                    memory=1,
                    num_nodes=draw(st.integers(1, 3)),
                ),
                priority=draw(st.sampled_from(list(Priority))),
                tenant=draw(st.sampled_from(TENANTS)),
                home_region="r0",
                time_limit_s=draw(st.one_of(st.none(), st.integers(60, 36000).map(float))),
                optimize=draw(st.sampled_from(["balanced", "time", "cost", "latency"])),
                submitted_at=NOW - timedelta(minutes=draw(st.integers(0, 600))),
            )
        )
    tenants = {
        t: TenantShare(weight=draw(st.integers(1, 3)), usage={"H100": draw(st.integers(0, 10**6))}) for t in TENANTS
    }
    policy = Policy(
        backfill=draw(st.booleans()), preemption=draw(st.booleans()), preempt_after_s=draw(st.sampled_from([0, 600]))
    )
    return sites, jobs, tenants, policy


def check(sites: list[SiteState], jobs: list[PendingJob], result: ScheduleResult) -> None:
    by_id = {j.id: j for j in jobs}
    nodes = {n.name: (s.name, n) for s in sites for n in s.nodes}
    used_gpus: dict[str, set[int]] = {}
    used_cpus: dict[str, float] = {}
    for p in result.placements:
        j = by_id[p.job_id]
        # gang: all or nothing, distinct nodes, one site
        assert len(p.nodes) == len({a.node for a in p.nodes}) == j.resources.num_nodes
        acc = next(a for a in j.resources.accelerators if a.type == p.gpu_type)  # a placed job fits its ask
        for a in p.nodes:
            site_name, n = nodes[a.node]
            assert site_name == p.site
            assert n.gpu_type == acc.type
            assert len(a.gpu_indices) == acc.count
            taken = used_gpus.setdefault(a.node, set())
            assert set(a.gpu_indices) <= set(n.free_gpus)  # only GPUs free now
            assert not taken & set(a.gpu_indices)  # never the same GPU twice: no over-commit
            taken.update(a.gpu_indices)
            used_cpus[a.node] = used_cpus.get(a.node, 0.0) + a.cpus
            assert used_cpus[a.node] <= n.cpus_free + 1e-9
    assert {p.job_id for p in result.placements} | set(result.reasons) == set(by_id)
    assert all(result.reasons[j] for j in result.reasons)  # every wait has words
    running = {a.job_id: a for s in sites for a in s.allocations}
    for pre in result.preemptions:
        victim = running[pre.victim]
        assert victim.priority != Priority.HIGH
        assert not victim.stopping
        assert pre.for_job in by_id
        assert pre.for_job not in {p.job_id for p in result.placements}


@settings(max_examples=200, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_invariants_and_determinism(
    world: tuple[list[SiteState], list[PendingJob], dict[str, TenantShare], Policy], rnd: random.Random
) -> None:
    sites, jobs, tenants, policy = world
    result = schedule(jobs, sites, NOW, policy=policy, tenants=tenants)
    check(sites, jobs, result)
    shuffled_jobs, shuffled_sites = list(jobs), list(sites)
    rnd.shuffle(shuffled_jobs)
    rnd.shuffle(shuffled_sites)
    again = schedule(shuffled_jobs, shuffled_sites, NOW, policy=policy, tenants=tenants)
    assert again.placements == result.placements
    assert again.preemptions == result.preemptions
    assert again.reasons == result.reasons


def one_node() -> list[SiteState]:
    return [SiteState("s", "r", [NodeState("n", "H100", 8, 64, 512, tuple(range(8)), 64, 512)])]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([0.05, 0.125, 0.5, 1.0]))
def test_no_starvation_under_aging(aging: float) -> None:
    """A stream of fresh high jobs, one per hour, each taking the whole node for an hour: the
    one low job still starts within (2 classes / aging) hours."""
    policy = Policy(aging_per_hour=aging, preemption=False)
    low = PendingJob("low", 0, Resources(accelerators=[Accelerator("H100", 8)]), Priority.LOW, submitted_at=NOW)
    queue = [low]
    bound = int(2 / aging) + 2
    for hour in range(bound + 1):
        now = NOW + timedelta(hours=hour)
        fresh = PendingJob(
            f"h{hour}", hour + 1, Resources(accelerators=[Accelerator("H100", 8)]), Priority.HIGH, submitted_at=now
        )
        queue.append(fresh)
        placed = [p.job_id for p in schedule(queue, one_node(), now, policy=policy).placements]
        if "low" in placed:
            return
        queue = [j for j in queue if j.id not in placed]
    raise AssertionError(f"the low job did not start within {bound} hours")


def test_fair_share_converges_to_weights() -> None:
    """Two tenants with endless 1-GPU work, weights 1 and 3, on 8 GPUs for 600 hours: their
    GPU-hours over the last 400 hours are within 10 % of 1:3."""
    weights = {"a": 1.0, "b": 3.0}
    half_life_h = 24.0
    usage = {"a": 0.0, "b": 0.0}
    served = {"a": 0, "b": 0}
    seq = 0
    for hour in range(600):
        now = NOW + timedelta(hours=hour)
        queue: list[PendingJob] = []
        for t in ("a", "b"):
            for _ in range(8):
                seq += 1
                queue.append(PendingJob(f"{t}{seq}", seq, Resources(accelerators=[Accelerator("H100", 1)]), tenant=t))
        tenants = {t: TenantShare(weight=weights[t], usage={"H100": usage[t]}) for t in weights}
        result = schedule(queue, one_node(), now, policy=Policy(preemption=False), tenants=tenants)
        by_id = {j.id: j.tenant for j in queue}
        for t in usage:
            usage[t] *= 0.5 ** (1 / half_life_h)
        for p in result.placements:
            usage[by_id[p.job_id]] += 3600.0
            if hour >= 200:
                served[by_id[p.job_id]] += 1
    ratio = served["b"] / max(served["a"], 1)
    assert abs(ratio - 3.0) / 3.0 < 0.10, served
