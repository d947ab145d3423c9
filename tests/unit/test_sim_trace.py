"""Trace loaders: each public format, and malformed rows named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.sim.trace import TraceError, load_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_philly_sample_rebases_time_and_keeps_vc_as_tenant() -> None:
    trace = load_trace(f"philly:{DATA / 'philly-sample.csv'}")
    assert len(trace.jobs) == 300
    assert trace.jobs[0].submit_s == 0
    assert all(a.submit_s <= b.submit_s for a, b in zip(trace.jobs, trace.jobs[1:], strict=False))
    assert {j.tenant for j in trace.jobs} >= {"6214e9", "11cb48"}
    assert trace.epoch is not None
    assert trace.epoch.year == 2017


def test_philly_bad_row_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.csv",
        "timestamp,duration,num_gpus,gpu_time,cluster\n2017-10-09 07:01:55,66.0,1,66.0,a\n2017-10-09,x,1,1,a\n",
    )
    with pytest.raises(TraceError, match=r"p\.csv:3: .*--skip-bad"):
        load_trace(f"philly:{path}")
    trace = load_trace(f"philly:{path}", skip_bad=True)
    assert (len(trace.jobs), trace.skipped) == (1, 1)


def test_pollux_workload() -> None:
    trace = load_trace(f"pollux:{DATA / 'workloads' / 'workload-toy.csv'}")
    assert [(j.id, j.gpus, j.batch_size, j.application) for j in trace.jobs][1] == ("toy-1", 2, 16, "toy")
    assert trace.jobs[1].duration_s is None


def test_tiresias_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "t.csv",
        "job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n0,1,5,606,vgg19,164,30\n1,8,30,1,x,147,23\n",
    )
    trace = load_trace(f"tiresias:{path}")
    assert [(j.gpus, j.submit_s, j.duration_s) for j in trace.jobs] == [(1, 0.0, 164.0), (8, 25.0, 147.0)]


def test_openb_pods_carry_cpu_and_memory(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "pods.csv",
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
        "p0,12000,16384,1,1000,,LS,Running,0,100,0\np1,6000,2048,0,0,,BE,Failed,10,20,10\n",
    )
    trace = load_trace(f"alibaba-openb:{path}")
    assert [(j.gpus, j.cpus, j.memory_gib, j.duration_s) for j in trace.jobs] == [
        (1, 12.0, 16.0, 100.0),
        (0, 6.0, 2.0, 10.0),
    ]


def test_generic_csv_with_column_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "g.csv", "job,start_time,num_gpus,runtime,user\nj1,100,2,50,alice\nj2,160,1,10,bob\n")
    trace = load_trace(f"csv:{path}", mapping={"submit": "start_time", "id": "job"})
    assert [(j.id, j.submit_s, j.gpus, j.duration_s, j.tenant) for j in trace.jobs] == [
        ("j1", 0.0, 2, 50.0, "alice"),
        ("j2", 60.0, 1, 10.0, "bob"),
    ]
    with pytest.raises(TraceError, match=r"g\.csv:1: no column for 'submit'.*--column submit=NAME"):
        load_trace(f"csv:{path}")


def test_bad_spec_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="KIND:PATH; KIND is one of philly"):
        load_trace("nonsense")
    with pytest.raises(TraceError, match="no such trace file"):
        load_trace(f"philly:{tmp_path / 'absent.csv'}")


def test_a_trace_without_jobs_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.csv", "submit,gpus,duration\n")
    with pytest.raises(TraceError, match=r"empty\.csv: no jobs in this csv trace"):
        load_trace(f"csv:{path}")
