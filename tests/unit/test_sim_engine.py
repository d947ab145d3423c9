"""The event loop and the baselines, on networks small enough to work out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import suanli.core.scheduler as core_scheduler
from suanli.app import scheduling as server_scheduling
from suanli.core.metering import Allocation, tariff_cost
from suanli.core.network import Tariff, parse_network
from suanli.sim import engine as sim_engine
from suanli.sim.engine import Simulation
from suanli.sim.metrics import jain, summarize, utilization
from suanli.sim.policies import TiresiasPolicy, make_policy
from suanli.sim.speed import MeasuredDuration
from suanli.sim.state import percentile
from suanli.sim.trace import Trace, TraceJob


def network(gpus: int = 4, nodes: int = 1, tariff: str = "{gpu_hour: {T4: 10}}") -> str:
    return f"""
regions: [r1]
sites:
  - name: s1
    region: r1
    nodes: [{{name: n01, count: {nodes}, gpus: "T4:{gpus}", cpus: 64, memory: 256}}]
    tariff: {tariff}
"""


def trace(*jobs: tuple[float, int, float], tenants: tuple[str, ...] = ()) -> Trace:
    out = []
    for i, (submit, gpus, duration) in enumerate(jobs):
        tenant = tenants[i] if tenants else "default"
        out.append(TraceJob(f"j{i}", submit, gpus, duration, tenant))
    return Trace("csv", Path("t.csv"), out)


def run(tr: Trace, policy: str, net: str, interval: float = 0.0) -> dict[str, TraceJob | float]:
    sim = Simulation(tr, parse_network(net), make_policy(policy), MeasuredDuration(), interval)
    result = sim.run()
    return {j.trace.id: j.finish or -1.0 for j in result.jobs}


JOBS = ((0.0, 2, 1000.0), (1.0, 4, 100.0), (2.0, 1, 100.0))


def test_fifo_blocks_behind_the_first_job_that_does_not_fit() -> None:
    assert run(trace(*JOBS), "fifo", network()) == {"j0": 1000.0, "j1": 1100.0, "j2": 1200.0}


def test_sjf_backfills_what_fits() -> None:
    done = run(trace(*JOBS), "sjf", network())
    assert done["j2"] == 102.0  # started at once beside j0
    assert done["j1"] == 1100.0


def test_the_simulator_drives_the_servers_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sim_engine.schedule is core_scheduler.schedule
    assert server_scheduling.schedule is core_scheduler.schedule
    calls = []

    def spy(*args: object, **kwargs: object) -> core_scheduler.ScheduleResult:
        calls.append(kwargs.get("policy"))
        return core_scheduler.schedule(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sim_engine, "schedule", spy)
    done = run(trace(*JOBS), "default", network())
    assert set(done) == {"j0", "j1", "j2"}
    assert calls
    assert all(isinstance(p, core_scheduler.Policy) for p in calls)
    # suanli's own policy comes from the network file, as the server's does.
    assert calls[0] == core_scheduler.Policy.from_decl(parse_network(network()).scheduling)


def test_tiresias_demotes_past_the_threshold_and_preempts_for_queue_zero() -> None:
    tr = trace((0.0, 1, 1000.0), (10.0, 1, 50.0))
    sim = Simulation(tr, parse_network(network(gpus=1)), TiresiasPolicy(threshold_gpu_s=72.0), MeasuredDuration(), 0)
    result = sim.run()
    by_id = {j.trace.id: j for j in result.jobs}
    assert by_id["j1"].first_start == pytest.approx(72.0)
    assert by_id["j1"].finish == pytest.approx(122.0)
    assert by_id["j0"].finish == pytest.approx(1050.0)
    assert by_id["j0"].restarts == 1


def test_gangs_span_nodes_and_impossible_jobs_are_refused() -> None:
    tr = trace((0.0, 8, 100.0), (0.0, 16, 100.0))
    sim = Simulation(tr, parse_network(network(gpus=4, nodes=2)), make_policy("fifo"), MeasuredDuration(), 0)
    result = sim.run()
    assert [j.trace.id for j in result.jobs] == ["j0"]
    assert result.jobs[0].finish == 100.0
    assert [j.trace.id for j in result.refused] == ["j1"]
    assert summarize(result)["refused_jobs"] == 1


def test_a_tenant_named_like_a_region_stays_in_it() -> None:
    net = """
regions: [vc-a, vc-b]
sites:
  - {name: a, region: vc-a, nodes: [{name: a1, gpus: "T4:1"}]}
  - {name: b, region: vc-b, nodes: [{name: b1, gpus: "T4:1"}]}
"""
    tr = trace((0.0, 1, 100.0), (0.0, 1, 100.0), tenants=("vc-a", "vc-a"))
    assert run(tr, "fifo", net) == {"j0": 100.0, "j1": 200.0}


def test_summary_metrics() -> None:
    tr = trace((0.0, 2, 100.0), (0.0, 2, 300.0))
    sim = Simulation(tr, parse_network(network(gpus=4)), make_policy("fifo"), MeasuredDuration(), 0)
    result = sim.run()
    s = summarize(result)
    assert s["jobs"] == 2
    assert s["avg_jct_s"] == 200.0
    assert s["makespan_s"] == 300.0
    assert s["avg_queue_s"] == 0.0
    assert s["gpu_utilization"] == pytest.approx((4 * 100 + 2 * 200) / (4 * 300))
    assert s["cost_cny"] == pytest.approx(10 * (2 * 100 + 2 * 300) / 3600)
    assert utilization(result, 0, 100) == pytest.approx(1.0)


def test_jain_and_percentile() -> None:
    assert jain([1.0, 1.0, 1.0]) == 1.0
    assert jain([1.0, 0.0]) == 0.5
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_sim_prices_runs_with_the_billing_integral() -> None:
    """The simulator's cost of a run is ``core.metering``'s, time-of-use periods included."""
    tariff = Tariff(gpu_hour={"T4": 10}, periods=[{"hours": "08-11", "factor": 2}])  # type: ignore[list-item]
    midnight = datetime(2026, 1, 4, 16, 0, tzinfo=UTC)  # 00:00 in Asia/Shanghai

    def cost(start_h: float, end_h: float, gpus: int) -> float:
        held = Allocation("T4", gpus, 0, 0)
        start, end = midnight + timedelta(hours=start_h), midnight + timedelta(hours=end_h)
        return float(tariff_cost(tariff, start, end, held))

    assert cost(7, 9, 1) == pytest.approx(10 + 20)
    assert cost(0, 24, 2) == pytest.approx(2 * (21 * 10 + 3 * 20))
    assert cost(24 + 8, 24 + 8.5, 1) == pytest.approx(10)


def test_default_policy_preempts_for_an_under_share_tenant_as_the_server_would() -> None:
    net = network(gpus=1) + "tenants: [{name: a}, {name: b}]\n"
    tr = trace((0.0, 1, 10_000.0), (10.0, 1, 100.0), tenants=("a", "b"))
    sim = Simulation(tr, parse_network(net), make_policy("default"), MeasuredDuration(), 60.0)
    by_id = {j.trace.id: j for j in sim.run().jobs}
    # b's job sees nothing free for an hour (a's estimate), so a, over its share, is preempted
    # at the pass after b arrives (60 s) and stops after its grace (30 s, working meanwhile);
    # b starts at the next pass and a resumes after it.
    assert by_id["j1"].first_start == 120.0
    assert by_id["j1"].finish == 220.0
    assert by_id["j0"].restarts == 1
    assert by_id["j0"].finish == pytest.approx(240.0 + 10_000.0 - 90.0)


def test_faults_are_retried_after_the_servers_back_off_until_retries_run_out() -> None:
    tr = trace((0.0, 1, 1000.0), (0.0, 1, 1000.0))
    tr.jobs[0].faults = (100.0,)
    tr.jobs[1].faults = (50.0, 50.0, 50.0, 50.0)
    sim = Simulation(tr, parse_network(network(gpus=2)), make_policy("default"), MeasuredDuration(), 60.0)
    result = sim.run()
    (done,) = result.jobs
    # Fault at 100 s; the back-off of the first retry (10 s) ends at 110; placed at the 120 s pass,
    # with 900 s of work left (it kept what it had done).
    assert done.finish == pytest.approx(120.0 + 900.0)
    assert done.retries_used == 1
    (failed,) = result.failed
    assert failed.trace.id == "j1"
    assert failed.retries_used == 3  # max_retries: the fourth fault ends it FAILED
