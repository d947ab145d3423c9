"""Speed models: the Pollux-profile model on a hand-made profile, and the published fidelity."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from suanli.core.network import parse_network
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize
from suanli.sim.policies import make_policy
from suanli.sim.speed import MeasuredDuration, PolluxProfiles
from suanli.sim.trace import TraceError, TraceJob, load_trace

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sim"
POLLUX = ROOT.parent / "shared" / "traces" / "pollux-osdi21"


def toy(gpus: int, bsz: int) -> TraceJob:
    return TraceJob("t", 0.0, gpus, None, application="toy", batch_size=bsz)


@pytest.fixture
def model() -> PolluxProfiles:
    return PolluxProfiles(DATA / "profiles")


def test_one_gpu_at_the_initial_batch_size(model: PolluxProfiles) -> None:
    job = toy(1, 8)
    assert model.total(job) == 200.0
    assert model.time_to_finish(job, 0.0, (1,)) == pytest.approx(200.0)
    assert model.time_to_finish(job, 150.0, (1,)) == pytest.approx(50.0)


def test_spreading_over_nodes_costs_what_the_profile_says(model: PolluxProfiles) -> None:
    job = toy(2, 16)  # scale 2 → gain (1 + 1) / (1 / 2 + 1) = 4/3 progress per step
    assert model.time_to_finish(job, 0.0, (2,)) == pytest.approx(150.0)  # 1 s per step on one node
    assert model.time_to_finish(job, 0.0, (1, 1)) == pytest.approx(300.0)  # 2 s per step across two
    assert model.advance(job, 0.0, (1, 1), 100.0) == pytest.approx(100 * (4 / 3) / 2)
    assert model.advance(job, 0.0, (2,), 1000.0) == pytest.approx(200.0)


def test_unprofiled_placements_use_the_scalability_table(model: PolluxProfiles) -> None:
    job = toy(4, 16)  # (2, 2) is not in placements.csv; scalability (2 nodes, 4 replicas): 3 s per step
    assert model.time_to_finish(job, 0.0, (2, 2)) == pytest.approx(200 / ((4 / 3) / 3.0))


def test_unknown_application_is_a_clear_error(model: PolluxProfiles) -> None:
    with pytest.raises(TraceError, match=r"no profile for application 'bert'.*have: toy"):
        model.total(TraceJob("b", 0.0, 1, None, application="bert", batch_size=12))


def test_measured_duration_is_the_trace_run_time() -> None:
    job = TraceJob("j", 0.0, 4, 500.0)
    m = MeasuredDuration()
    assert (m.total(job), m.time_to_finish(job, 100.0, (4,)), m.advance(job, 0.0, (4,), 900.0)) == (
        500.0,
        400.0,
        500.0,
    )


def test_restart_cost_and_the_scheduling_grid() -> None:
    net = parse_network("sites: [{name: s, region: r, nodes: [{name: n1, gpus: 'T4:2'}]}]")
    tr = load_trace(f"pollux:{DATA / 'workloads' / 'workload-toy.csv'}")
    sim = Simulation(tr, net, make_policy("fifo"), PolluxProfiles(DATA / "profiles"), 60.0)
    done = {j.trace.id: j for j in sim.run().jobs}
    assert done["toy-0"].finish == pytest.approx(0 + 30 + 200)  # 30 s restart, then 200 s
    # toy-1 arrives at 10 s but needs both GPUs: it starts at the first pass after toy-0 ends (240 s).
    assert done["toy-1"].first_start == 240.0
    assert done["toy-1"].finish == pytest.approx(240 + 30 + 150)


@pytest.mark.skipif(not POLLUX.is_dir(), reason="needs ../shared/traces/pollux-osdi21")
def test_tiresias_lands_within_15_percent_of_the_published_pollux_figure() -> None:
    net = parse_network((ROOT / "examples" / "sim" / "pollux-16x4.yaml").read_text())
    model = PolluxProfiles(POLLUX / "profiles")
    avgs = []
    for i in range(1, 9):
        tr = load_trace(f"pollux:{POLLUX / 'workloads' / f'workload-{i}.csv'}")
        avgs.append(summarize(Simulation(tr, net, make_policy("tiresias"), model, 60.0).run())["avg_jct_s"])
    published = json.loads((POLLUX / "results-jobload" / "tiresias-1.0" / "summary.json").read_text())["mean"]
    assert statistics.fmean(avgs) == pytest.approx(published, rel=0.15)
