"""Scheduler v0: fit, gang, priority, regions, reasons, and refusal of what can never fit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from suanli.core.resources import Accelerator
from suanli.core.scheduler import Allocation, NodeState, PendingJob, SiteState, never_fits, schedule
from suanli.core.spec import Priority, Resources

NOW = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)


def node(name: str, gpu: str | None = "H100", gpus: int = 8, cpus: float = 64, memory: float = 512) -> NodeState:
    return NodeState(name, gpu, gpus, cpus, memory, tuple(range(gpus)), cpus, memory)


def site(name: str, region: str, *nodes: NodeState, online: bool = True) -> SiteState:
    return SiteState(name, region, list(nodes), online=online)


def job(job_id: str, seq: int, acc: str | None = "H100:8", nodes: int = 1, cpus: float = 1, **kw: object) -> PendingJob:
    accels = [Accelerator(*a.split(":")[:1], int(a.split(":")[1])) for a in acc.split("|")] if acc else []
    res = Resources(accelerators=accels, cpus=cpus, memory=1, num_nodes=nodes)
    return PendingJob(id=job_id, seq=seq, resources=res, **kw)  # type: ignore[arg-type]


def demo() -> list[SiteState]:
    return [
        site("beijing", "beijing", node("bj-01", "A800", 4)),
        site("tianjin-gaocun", "tianjin", node("tj-01", "H100", 16, 128, 2048)),
        site("ningxia", "ningxia", *(node(f"nx-0{i}", "910B", 8) for i in range(1, 5))),
    ]


def test_places_by_type_and_assigns_gpu_indices() -> None:
    result = schedule([job("a", 1, "H100:4")], demo(), NOW)
    [p] = result.placements
    assert p.site == "tianjin-gaocun"
    assert p.gpu_type == "H100"
    assert p.nodes[0].gpu_indices == (0, 1, 2, 3)


def test_second_big_job_waits_with_reason() -> None:
    result = schedule([job("a", 1, "H100:16"), job("b", 2, "H100:16")], demo(), NOW)
    assert [p.job_id for p in result.placements] == ["a"]
    assert result.reasons["b"].startswith("no site has 16 × H100 free; every H100 is in use")


def test_reason_names_when_capacity_frees() -> None:
    sites = demo()
    tj = sites[1]
    tj.nodes[0].free_gpus = ()
    tj.allocations.append(Allocation("x", "tj-01", 16, 1, 1, NOW + timedelta(minutes=64, seconds=30)))
    result = schedule([job("b", 2, "H100:8")], sites, NOW)
    assert "tianjin-gaocun frees 8 × H100 at ~14:05 UTC" in result.reasons["b"]


def test_gang_all_at_one_site_or_none() -> None:
    sites = demo()
    result = schedule([job("g", 1, "910B:8", nodes=4)], sites, NOW)
    [p] = result.placements
    assert p.site == "ningxia"
    assert sorted(n.node for n in p.nodes) == ["nx-01", "nx-02", "nx-03", "nx-04"]
    assert [n.rank for n in p.nodes] == [0, 1, 2, 3]
    too_many = schedule([job("g", 1, "910B:8", nodes=5)], sites, NOW)
    assert not too_many.placements
    assert "g" in too_many.reasons


def test_priority_then_submit_order() -> None:
    jobs = [
        job("low", 1, "A800:4", priority=Priority.LOW),
        job("n2", 3, "A800:4"),
        job("hi", 5, "A800:4", priority=Priority.HIGH),
    ]
    result = schedule(jobs, demo(), NOW)
    assert [p.job_id for p in result.placements] == ["hi"]
    result = schedule(jobs[:2], demo(), NOW)
    assert [p.job_id for p in result.placements] == ["n2"]


def test_regions_filter_and_reason() -> None:
    result = schedule([job("r", 1, "H100:1", regions=("ningxia",))], demo(), NOW)
    assert not result.placements
    assert "not in placement.regions" in result.reasons["r"]


def test_alternatives_prefer_listed_order() -> None:
    result = schedule([job("alt", 1, "910B:4|A800:4")], demo(), NOW)
    assert result.placements[0].gpu_type == "910B"


def test_offline_site_not_used() -> None:
    sites = demo()
    sites[1].online = False
    result = schedule([job("a", 1, "H100:1")], sites, NOW)
    assert not result.placements
    assert "offline" in result.reasons["a"]


def test_drained_node_named_in_reason() -> None:
    sites = demo()
    n = sites[1].nodes[0]
    n.schedulable, n.unschedulable_reason = False, "drained: repair"
    result = schedule([job("a", 1, "H100:1")], sites, NOW)
    assert "tj-01 drained: repair" in result.reasons["a"]


def test_cpu_job_prefers_small_nodes() -> None:
    sites = [site("s", "r", node("gpu", "H100", 8), node("cpu", None, 0))]
    result = schedule([job("c", 1, None, cpus=4)], sites, NOW)
    assert result.placements[0].nodes[0].node == "cpu"


def test_never_fits_names_largest() -> None:
    msg = never_fits(Resources(accelerators=[Accelerator("H100", 64)]), demo())
    assert msg is not None
    assert "largest H100 node has 16 GPUs (tj-01 at tianjin-gaocun)" in msg
    assert never_fits(Resources(accelerators=[Accelerator("H100", 16)]), demo()) is None
    assert "no site has B200" in (never_fits(Resources(accelerators=[Accelerator("B200", 1)]), demo()) or "")
    assert never_fits(Resources(accelerators=[Accelerator("910B", 8)], num_nodes=5), demo()) is not None
    assert "no site is in regions" in (never_fits(Resources(), demo(), ["mars"]) or "")


def test_inputs_not_mutated() -> None:
    sites = demo()
    schedule([job("a", 1, "H100:16")], sites, NOW)
    assert sites[1].nodes[0].free_gpus == tuple(range(16))


# -- properties ---------------------------------------------------------------------------

gpu_types = st.sampled_from(["H100", "A800"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[SiteState], list[PendingJob]]:
    sites = []
    for s in range(draw(st.integers(1, 3))):
        nodes = [
            node(f"s{s}n{i}", draw(gpu_types), draw(st.sampled_from([4, 8])), draw(st.sampled_from([8, 32])), 256)
            for i in range(draw(st.integers(1, 4)))
        ]
        sites.append(site(f"s{s}", f"r{s}", *nodes))
    jobs = [
        job(
            f"j{i}",
            i,
            f"{draw(gpu_types)}:{draw(st.integers(1, 8))}",
            nodes=draw(st.integers(1, 3)),
            cpus=draw(st.sampled_from([1, 4, 16])),
            priority=draw(st.sampled_from(list(Priority))),
        )
        for i in range(draw(st.integers(0, 25)))
    ]
    return sites, jobs


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_properties(world: tuple[list[SiteState], list[PendingJob]]) -> None:
    sites, jobs = world
    result = schedule(jobs, sites, NOW)
    by_id = {j.id: j for j in jobs}
    nodes = {n.name: (s.name, n) for s in sites for n in s.nodes}
    used_gpus: dict[str, set[int]] = {}
    used_cpus: dict[str, float] = {}
    for p in result.placements:
        j = by_id[p.job_id]
        # gang: exactly num_nodes distinct nodes, all at the placement's site
        assert len({n.node for n in p.nodes}) == j.resources.num_nodes == len(p.nodes)
        for a in p.nodes:
            site_name, n = nodes[a.node]
            assert site_name == p.site
            acc = next(x for x in j.resources.accelerators if x.type == p.gpu_type)
            assert n.gpu_type == acc.type
            assert len(a.gpu_indices) == acc.count
            taken = used_gpus.setdefault(a.node, set())
            assert not taken & set(a.gpu_indices)  # never the same GPU twice
            taken.update(a.gpu_indices)
            used_cpus[a.node] = used_cpus.get(a.node, 0) + a.cpus
            assert used_cpus[a.node] <= n.cpus_total + 1e-9  # no node over-committed
            assert max(a.gpu_indices) < n.gpus_total
    # every job is either placed or has a reason
    assert {p.job_id for p in result.placements} | set(result.reasons) == set(by_id)
    # determinism
    again = schedule(list(reversed(jobs)), sites, NOW)
    assert again.placements == result.placements
