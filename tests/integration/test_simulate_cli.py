"""`suanli simulate` as a user runs it: a subprocess, real files in, real files out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
NETWORK = """\
regions: [bj]
sites:
  - name: bj
    region: bj
    nodes: [{name: bj-01, count: 2, gpus: "A800:8", cpus: 64, memory: 512}]
    tariff: {gpu_hour: {A800: 22}}
"""


def suanli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "suanli", "simulate", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compare_two_policies_writes_a_report(tmp_path: Path) -> None:
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK)
    out = tmp_path / "out"
    proc = suanli(
        "--trace", f"philly:{DATA / 'philly-sample.csv'}", "--network", str(net), "--compare", "default,tiresias,fifo",
        "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "default" in proc.stdout
    assert "tiresias" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == {"default", "tiresias", "fifo"}
    # What default gains over each other policy, from the same summaries.
    for other in ("tiresias", "fifo"):
        mine, theirs = summary["policies"]["default"], summary["policies"][other]
        gain = mine["avg_jct_s"] / theirs["avg_jct_s"] - 1
        assert f"default vs {other}: avg JCT {gain:+.1%}" in proc.stdout
    # A preemption spends no retry: no job of the trace (which has no faults) ends FAILED.
    assert summary["jobs"] == 300
    assert summary["failed_jobs"] == 0
    assert (out / "report.html").exists()
    assert (out / "default" / "jobs.csv").exists()
    assert "report.html" in proc.stderr


def test_pollux_workload_with_profiles(tmp_path: Path) -> None:
    net = tmp_path / "net.yaml"
    net.write_text("sites: [{name: s, region: r, nodes: [{name: n1, gpus: 'T4:2'}]}]\n")
    proc = suanli(
        "--trace", f"pollux:{DATA / 'workloads' / 'workload-toy.csv'}", "--network", str(net), "--policy", "tiresias",
        "--out", str(tmp_path / "out"), "--no-plots",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["jobs"] == 3


def test_malformed_rows_name_file_and_line_or_are_skipped(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    lines = (DATA / "philly-sample.csv").read_text().splitlines()[:6]
    lines[3] = "2017-10-09 07:01:55,not-a-number,1,1,6214e9"
    bad.write_text("\n".join(lines) + "\n")
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK)
    proc = suanli("--trace", f"philly:{bad}", "--network", str(net), "--out", str(tmp_path / "o"))
    assert proc.returncode == 1
    assert f"{bad}:4: 'duration' is 'not-a-number', not a number" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = suanli("--trace", f"philly:{bad}", "--network", str(net), "--out", str(tmp_path / "o"), "--skip-bad")
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 malformed row" in proc.stderr


def test_scale_sweep(tmp_path: Path) -> None:
    net = tmp_path / "net.yaml"
    net.write_text(NETWORK)
    proc = suanli(
        "--trace", f"philly:{DATA / 'philly-sample.csv'}", "--network", str(net), "--policy", "fifo",
        "--scale-gpus", "0.5,1,2", "--out", str(tmp_path / "sweep"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [line.split("GPUs")[1].split()[0] for line in proc.stdout.splitlines()] == ["8", "16", "32"]
    assert (tmp_path / "sweep" / "jct_vs_scale.png").exists()
    assert (tmp_path / "sweep" / "cost_vs_scale.png").exists()
    # The jobs.csv it says it wrote: one per run.
    assert "each run's jobs.csv under run-N/<policy>/" in proc.stderr
    for n in (1, 2, 3):
        assert (tmp_path / "sweep" / f"run-{n}" / "fifo" / "jobs.csv").exists()


def test_unknown_policy_is_refused_with_the_choices(tmp_path: Path) -> None:
    proc = suanli("--trace", f"philly:{DATA / 'philly-sample.csv'}", "--network", "x.yaml", "--policy", "magic")
    assert proc.returncode == 1
    assert "unknown policy 'magic'; choose from default, fifo, sjf, tiresias" in proc.stderr


def test_gavel_run_times_take_the_network_gpu_type(tmp_path: Path) -> None:
    gavel = DATA / "gavel" / "seed=0" / "0e4a51.trace"
    net = tmp_path / "net.yaml"
    net.write_text("sites: [{name: s, region: r, nodes: [{name: n1, count: 2, gpus: 'P100:8'}]}]\n")
    out = tmp_path / "out"
    proc = suanli(
        "--trace", f"gavel:{gavel}", "--network", str(net), "--policy", "fifo", "--out", str(out), "--no-plots"
    )
    assert proc.returncode == 0, proc.stderr
    rates = json.loads((DATA / "gavel" / "simulation_throughputs.json").read_text())["p100"]
    first = gavel.read_text().splitlines()[0].split("\t")
    rows = (out / "jobs.csv").read_text().splitlines()
    header = rows[0].split(",")
    job = dict(zip(header, next(r for r in rows[1:] if r.startswith("0e4a51-1,")).split(","), strict=True))
    expected = float(first[4]) / rates[repr((first[0], 1))]["null"]
    assert abs(float(job["finish_s"]) - float(job["start_s"]) - expected) < 0.01
    net.write_text("sites: [{name: s, region: r, nodes: [{name: n1, gpus: 'P40:8'}]}]\n")
    proc = suanli("--trace", f"gavel:{gavel}", "--network", str(net), "--out", str(out))
    assert proc.returncode != 0
    assert "GPU types (P40) have no Gavel throughputs" in proc.stderr
