"""Gavel traces: run times from Gavel's measured throughputs, and both line formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli.sim.engine import Simulation
from suanli.sim.gavel import GavelError, Throughputs, parse_line
from suanli.sim.metrics import summarize
from suanli.sim.networks import philly_network
from suanli.sim.policies import make_policy
from suanli.sim.speed import MeasuredDuration
from suanli.sim.trace import TraceError, load_trace

GAVEL = Path(__file__).resolve().parent.parent / "data" / "sim" / "gavel"
RATES = json.loads((GAVEL / "simulation_throughputs.json").read_text(encoding="utf-8"))


def rate(worker: str, job_type: str, gpus: int) -> float:
    return float(RATES[worker][repr((job_type, gpus))]["null"])


def lines(name: str) -> list[list[str]]:
    return [line.split("\t") for line in (GAVEL / "seed=0" / name).read_text(encoding="utf-8").splitlines()]


def test_run_time_is_total_steps_over_the_v100_throughput() -> None:
    trace = load_trace(f"gavel:{GAVEL / 'seed=0' / '0e4a51.trace'}")
    rows = lines("0e4a51.trace")
    assert len(trace.jobs) == len(rows) == 6
    by_line = {int(j.id.rsplit("-", 1)[1]): j for j in trace.jobs}
    for n, cols in enumerate(rows, start=1):
        job = by_line[n]
        gpus = int(cols[6])
        assert (job.application, job.gpus, job.tenant) == (cols[0], gpus, "0e4a51")
        assert job.duration_s == pytest.approx(float(cols[4]) / rate("v100", cols[0], gpus))
    # Line 1: Transformer (batch size 128), 95,121 steps at 5.446 steps/s on one V100: 17,466 s.
    assert by_line[1].duration_s == pytest.approx(17466.0, abs=1.0)
    assert "v100 throughput" in trace.notes[0]


def test_another_worker_type_gives_other_run_times() -> None:
    path = GAVEL / "seed=0" / "0e4a51.trace"
    v100 = load_trace(f"gavel:{path}").jobs
    p100 = load_trace(f"gavel:{path}", gavel_worker="p100").jobs
    assert [j.id for j in v100] == [j.id for j in p100]
    for a, b in zip(v100, p100, strict=True):
        assert b.duration_s == pytest.approx(
            a.duration_s * rate("v100", a.application or "", a.gpus) / rate("p100", b.application or "", b.gpus)
        )
    with pytest.raises(GavelError, match="no throughputs for worker type 'k80'"):
        load_trace(f"gavel:{path}", gavel_worker="k80")


def test_ten_column_lines_parse_to_the_same_jobs() -> None:
    seven = load_trace(f"gavel:{GAVEL / 'seed=0' / '0e4a51.trace'}").jobs
    ten = load_trace(f"gavel:{GAVEL / 'seed=0' / 'ten.trace'}").jobs
    assert [(j.submit_s, j.gpus, j.duration_s, j.application) for j in ten] == [
        (j.submit_s, j.gpus, j.duration_s, j.application) for j in seven
    ]


def test_a_missing_throughput_names_the_job_type_and_line() -> None:
    path = GAVEL / "seed=0" / "big.trace"
    with pytest.raises(TraceError, match=r"big\.trace:3: .*'Recommendation \(batch size 2048\)' at 16 GPU\(s\)"):
        load_trace(f"gavel:{path}")
    trace = load_trace(f"gavel:{path}", skip_bad=True)
    assert (len(trace.jobs), trace.skipped) == (2, 1)


def test_malformed_lines_are_refused_with_their_line_number(tmp_path: Path) -> None:
    good = (GAVEL / "seed=0" / "0e4a51.trace").read_text(encoding="utf-8").splitlines()[0]
    cols = good.split("\t")
    eight = "\t".join([*cols, "x"])
    path = tmp_path / "seed=0" / "vc.trace"
    path.parent.mkdir()
    path.write_text(f"{good}\n{eight}\n", encoding="utf-8")
    throughputs = GAVEL / "simulation_throughputs.json"
    with pytest.raises(TraceError, match=r"vc\.trace:2: expected 7 or 10 tab-separated columns.*found 8"):
        load_trace(f"gavel:{path}", throughputs=throughputs)
    ten_bad = "\t".join([cols[0], cols[1], "dir", cols[2], cols[3], cols[4], "one", "1", "-1", "0"])
    path.write_text(f"{ten_bad}\n", encoding="utf-8")
    with pytest.raises(TraceError, match=r"vc\.trace:1: .*'one'.* must be numbers"):
        load_trace(f"gavel:{path}", throughputs=throughputs)
    with pytest.raises(GavelError, match=r"cannot read Gavel's throughputs.*--throughputs"):
        load_trace(f"gavel:{path}")


def test_parse_line_reads_both_column_orders() -> None:
    seven = parse_line(["LM (batch size 5)", "cmd", "-n", "1", "500", "30.0", "4"])
    ten = parse_line(["LM (batch size 5)", "cmd", "dir", "-n", "1", "500", "4", "1", "-1", "30.0"])
    assert seven == ten
    assert (seven.total_steps, seven.arrival_s, seven.scale_factor) == (500.0, 30.0, 4)


def test_the_network_gpu_type_picks_the_worker_type() -> None:
    table = Throughputs(GAVEL / "simulation_throughputs.json")
    assert table.worker_for(["A100", "P100", "V100"]) == "p100"
    with pytest.raises(GavelError, match=r"GPU types \(P40\) have no Gavel throughputs.*--gavel-gpu"):
        table.worker_for(["P40"])


def test_a_gavel_trace_replays_with_its_run_times() -> None:
    trace = load_trace(f"gavel:{GAVEL / 'seed=0' / '0e4a51.trace'}")
    network = philly_network(
        Path(__file__).resolve().parent.parent / "data" / "sim" / "philly-vc-0e4a51.csv", gpu_type="V100"
    )
    result = Simulation(trace, network, make_policy("fifo"), MeasuredDuration(), 60.0).run()
    assert summarize(result)["jobs"] == 6
    for job in result.jobs:
        assert job.finish is not None
        assert job.first_start is not None
        assert job.finish - job.first_start == pytest.approx(job.trace.duration_s)
