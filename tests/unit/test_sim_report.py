"""Replays to files: summary.json, jobs.csv, plots and a self-contained report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from suanli.core.network import parse_network
from suanli.sim.networks import named_network, parse_scales, philly_network, scale_network
from suanli.sim.runner import ReplayOptions, run_compare, run_sweep, scaled
from suanli.sim.trace import load_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "sim"
NETWORK = parse_network(
    """
regions: [bj]
sites:
  - name: bj
    region: bj
    nodes: [{name: bj-01, count: 4, gpus: "A800:8", cpus: 64, memory: 512}]
    tariff: {gpu_hour: {A800: 22}, periods: [{hours: "08-11", factor: 1.5}]}
"""
)
REQUIRED = (
    "jobs",
    "avg_jct_s",
    "median_jct_s",
    "p99_jct_s",
    "avg_queue_s",
    "makespan_s",
    "gpu_utilization",
    "jain_fairness",
    "cost_cny",
)


def test_compare_writes_every_output(tmp_path: Path) -> None:
    trace = load_trace(f"philly:{DATA / 'philly-sample.csv'}")
    run_compare(trace, NETWORK, "test.yaml", ReplayOptions(["default", "tiresias"]), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in REQUIRED:
        assert key in summary
        assert key in summary["policies"]["tiresias"]
    assert summary["policy"] == "default"
    assert 0 < summary["gpu_utilization"] <= 1
    assert summary["jobs"] == 300
    with (tmp_path / "tiresias" / "jobs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300
    assert float(rows[0]["jct_s"]) >= float(rows[0]["queue_s"])
    for png in ("utilization.png", "queue.png", "jct_cdf.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http://" not in page
    assert "https://" not in page


def test_sweep_scales_node_counts(tmp_path: Path) -> None:
    trace = load_trace(f"philly:{DATA / 'philly-sample.csv'}")
    rows = run_sweep(trace, scaled(NETWORK, "bj", [0.5, 1, 2]), ReplayOptions(["fifo"]), tmp_path)
    assert [r["total_gpus"] for r in rows] == [16, 32, 64]
    assert rows[0]["avg_jct_s"] >= rows[2]["avg_jct_s"]
    assert (tmp_path / "jct_vs_scale.png").exists()
    assert (tmp_path / "utilization_vs_scale.png").exists()
    assert len(json.loads((tmp_path / "summary.json").read_text())["sweep"]) == 3


def test_networks_helpers(tmp_path: Path) -> None:
    assert parse_scales("0.5,1,2") == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError, match="positive"):
        parse_scales("1,-2")
    assert scale_network(NETWORK, 0.1).sites[0].nodes[0].count == 1
    vc = tmp_path / "vc.csv"
    vc.write_text("vc,node num\n6214e9,2\n11cb48,1\n")
    net = philly_network(vc)
    assert [(s.name, s.region, len(s.node_decls())) for s in net.sites] == [
        ("6214e9", "6214e9", 2),
        ("11cb48", "11cb48", 1),
    ]


def test_openb_node_list_becomes_one_site(tmp_path: Path) -> None:

    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,32000,262144,0,\nn1,96000,786432,8,G2\n")
    net = named_network(f"openb-nodes:{nodes}")
    decls = net.sites[0].node_decls()
    assert [(n.name, n.gpu_type, n.gpu_count, n.cpus, n.memory) for n in decls] == [
        ("n0", None, 0, 32.0, 256.0),
        ("n1", "G2", 8, 96.0, 768.0),
    ]
    assert net.sites[0].tariff.gpu_hour == {"G2": 8.0}
