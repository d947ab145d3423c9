"""What owning the network costs in a replay: busy and idle GPU-hours, revenue, per tenant, sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli.core.errors import SuanliError
from suanli.core.network import parse_network
from suanli.sim.costs import parse_capacity_cost
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize
from suanli.sim.policies import make_policy
from suanli.sim.runner import ReplayOptions, run_sweep, scaled
from suanli.sim.speed import MeasuredDuration
from suanli.sim.trace import Trace, TraceJob

NETWORK = """
regions: [r1]
sites:
  - name: s1
    region: r1
    nodes: [{name: n01, count: 2, gpus: "T4:4", cpus: 64, memory: 256}]
    tariff: {gpu_hour: {T4: 10}}
"""


def trace(*jobs: tuple[float, int, float, str]) -> Trace:
    return Trace("csv", Path("t.csv"), [TraceJob(f"j{i}", s, g, d, t) for i, (s, g, d, t) in enumerate(jobs)])


def test_idle_gpus_are_counted_in_the_cost() -> None:
    # 8 GPUs owned for the hour the replay lasts; one 4-GPU job holds half of them: 40 CNY busy,
    # 40 CNY idle, and the tenant pays 40 CNY at the tariff.
    result = Simulation(
        trace((0.0, 4, 3600.0, "a")), parse_network(NETWORK), make_policy("fifo"), MeasuredDuration()
    ).run()
    s = summarize(result)
    assert s["makespan_s"] == 3600.0
    assert s["total_cost_cny"] == pytest.approx(80.0)
    assert s["busy_cost_cny"] == pytest.approx(40.0)
    assert s["idle_cost_cny"] == pytest.approx(40.0)
    assert s["revenue_cny"] == pytest.approx(40.0)
    assert s["owned_gpu_hours"] == pytest.approx(8.0)
    # A price per GPU-hour owned of the planner's own, for every site.
    s = summarize(result, parse_capacity_cost(["*=2.5"]))
    assert (s["total_cost_cny"], s["idle_cost_cny"]) == (pytest.approx(20.0), pytest.approx(10.0))
    assert s["revenue_cny"] == pytest.approx(40.0)
    with pytest.raises(SuanliError, match="names no site of the network: nowhere"):
        summarize(result, {"nowhere": 1.0})
    with pytest.raises(ValueError, match="'s1' is not SITE=CNY"):
        parse_capacity_cost(["s1"])


def test_per_tenant_breakdown() -> None:
    jobs = trace((0.0, 8, 3600.0, "a"), (0.0, 4, 1800.0, "b"), (0.0, 4, 1800.0, "b"))
    s = summarize(Simulation(jobs, parse_network(NETWORK), make_policy("fifo"), MeasuredDuration()).run())
    a, b = s["tenants"]["a"], s["tenants"]["b"]
    assert (a["jobs"], b["jobs"]) == (1, 2)
    assert a["gpu_hours"] == pytest.approx(8.0)
    assert b["gpu_hours"] == pytest.approx(4.0)
    assert a["revenue_cny"] + b["revenue_cny"] == pytest.approx(s["revenue_cny"])
    # FIFO: a runs first for an hour, then b's two jobs side by side for half an hour.
    assert b["avg_jct_s"] == pytest.approx(5400.0)
    assert b["avg_queue_s"] == pytest.approx(3600.0)


def test_a_sweep_shows_cost_rising_as_jct_falls_and_writes_each_runs_jobs(tmp_path: Path) -> None:
    # A 4-GPU, one-hour job every half hour: 8 GPUs keep up; fewer queue, more stand idle.
    jobs = trace(*[(i * 1800.0, 4, 3600.0, "a") for i in range(8)])
    rows = run_sweep(
        jobs, scaled(parse_network(NETWORK), "net", [0.5, 1, 2, 4]), ReplayOptions(["fifo"], plots=False), tmp_path
    )
    assert [r["total_gpus"] for r in rows] == [4, 8, 16, 32]
    costs = [r["total_cost_cny"] for r in rows]
    jcts = [r["avg_jct_s"] for r in rows]
    assert costs == sorted(costs)
    assert costs[0] < costs[-1]
    assert jcts == sorted(jcts, reverse=True)
    assert jcts[0] > jcts[-1]
    # 4 GPUs: one job after another, never idle, 8 h; 32 GPUs: 4.5 h, 32 GPU-hours of 144 busy.
    assert (costs[0], rows[0]["idle_cost_cny"]) == (pytest.approx(320.0), pytest.approx(0.0))
    assert (costs[-1], rows[-1]["idle_cost_cny"]) == (pytest.approx(1440.0), pytest.approx(1120.0))
    # JCT stops falling at 8 GPUs: the knee.
    assert [r["knee"] for r in rows] == [False, True, False, False]
    for r in rows:
        lines = (tmp_path / r["jobs_csv"]).read_text().splitlines()
        assert len(lines) == 1 + 8
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["total_cost_cny"] for r in summary["sweep"]] == costs
