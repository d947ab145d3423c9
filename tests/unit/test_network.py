"""The network file: node groups expand, names are unique, tariffs are well-formed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from suanli.core.errors import SpecError
from suanli.core.network import parse_hours, parse_network

NETWORK = """\
regions: [beijing, tianjin, ningxia]
sites:
  - name: tianjin-gaocun
    region: tianjin
    zone: mainland
    backend: local
    latency_ms: {beijing: 0.5, tianjin: 0.2, ningxia: 25}
    nodes:
      - {name: tj-01, count: 2, gpus: H100:8, cpus: 64, memory: 512}
    tariff:
      gpu_hour: {H100: 28}
      cpu_hour: 0.1
      periods: [{hours: "08-11,18-23", factor: 1.5}, {hours: "23-07", factor: 0.5}]
tenants:
  - {name: bj-ai, home_region: beijing, weight: 1}
"""


def test_design_example() -> None:
    net = parse_network(NETWORK)
    site = net.sites[0]
    assert [n.name for n in site.node_decls()] == ["tj-01", "tj-02"]
    assert site.node_decls()[0].gpu_count == 8
    assert site.tariff.gpu_price("H100", 9) == pytest.approx(42)
    assert site.tariff.gpu_price("H100", 2) == pytest.approx(14)
    assert site.tariff.gpu_price("H100", 12) == pytest.approx(28)
    assert site.tariff.gpu_price("A800", 12) is None


def test_hours_wrap_midnight() -> None:
    assert parse_hours("23-07") == [23, 0, 1, 2, 3, 4, 5, 6]
    assert parse_hours("08-11,18-23") == [8, 9, 10, 18, 19, 20, 21, 22]


def test_overlapping_periods_refused() -> None:
    text = NETWORK.replace('{hours: "23-07", factor: 0.5}', '{hours: "10-12", factor: 0.5}')
    with pytest.raises(SpecError, match="hour 10 is in two periods"):
        parse_network(text)


def test_unknown_region_refused() -> None:
    with pytest.raises(SpecError, match="not in regions"):
        parse_network(NETWORK.replace("region: tianjin", "region: shanghai"))


def test_unknown_field_in_site() -> None:
    with pytest.raises(SpecError, match="did you mean 'backend'"):
        parse_network(NETWORK.replace("backend: local", "backnd: local"))


def test_duplicate_node_names_across_sites() -> None:
    twice = NETWORK.replace(
        "tenants:",
        "  - name: other\n    region: beijing\n    nodes: [{name: tj-02}]\ntenants:",
    )
    with pytest.raises(SpecError, match="tj-02"):
        parse_network(twice)


def test_group_without_number_suffix() -> None:
    net = parse_network("sites:\n  - name: s\n    region: r\n    nodes: [{name: gpu, count: 3}]\n")
    assert [n.name for n in net.sites[0].node_decls()] == ["gpu-1", "gpu-2", "gpu-3"]


def test_tariff_hours_are_local_time() -> None:
    tariff = parse_network(NETWORK).sites[0].tariff
    assert tariff.timezone == "Asia/Shanghai"
    # 01:00 UTC is 09:00 in Beijing: peak hours.
    assert tariff.local_hour(datetime(2026, 3, 2, 1, 0, tzinfo=UTC)) == 9
    with pytest.raises(SpecError, match="time zone"):
        parse_network(NETWORK.replace("cpu_hour: 0.1", "cpu_hour: 0.1\n      timezone: Mars/Olympus"))
