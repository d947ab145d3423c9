"""Networks for replays: read a network file, scale it, or build Philly's virtual clusters."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from suanli.core.network import NetworkSpec, NodeGroup, SiteDecl, Tariff, parse_network
from suanli.sim.trace import TraceError


def read_network(path: Path) -> NetworkSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the network file ({exc.strerror or exc})") from None
    return parse_network(text, str(path))


def scale_network(spec: NetworkSpec, factor: float) -> NetworkSpec:
    """Every node group's count × ``factor`` (rounded, at least 1 node per group)."""
    if factor <= 0:
        raise ValueError(f"a scale factor must be more than 0, not {factor:g}")
    sites = []
    for site in spec.sites:
        groups = [g.model_copy(update={"count": max(1, round(g.count * factor))}) for g in site.nodes]
        sites.append(site.model_copy(update={"nodes": groups}))
    return spec.model_copy(update={"sites": sites})


def philly_network(vc_csv: Path, gpus_per_node: int = 8, gpu_type: str = "P40", price: float = 8.0) -> NetworkSpec:
    """One site per Philly virtual cluster (``vc,node num``), nodes of 8 GPUs; the site's region
    is the VC's name, so a philly job (tenant = its VC) runs only in its own VC."""
    sites: list[SiteDecl] = []
    try:
        with vc_csv.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise TraceError(f"{vc_csv}: cannot read ({exc.strerror or exc})") from None
    for line, row in enumerate(rows, start=2):
        try:
            name, nodes = row["vc"].strip(), int(row["node num"])
        except (KeyError, ValueError):
            raise TraceError(f"{vc_csv}:{line}: expected columns 'vc' and 'node num'") from None
        group = NodeGroup(name=f"{name}-n001", count=nodes, gpus=f"{gpu_type}:{gpus_per_node}", cpus=64, memory=512)
        sites.append(SiteDecl(name=name, region=name, nodes=[group], tariff=Tariff(gpu_hour={gpu_type: price})))
    return NetworkSpec(regions=[s.region for s in sites], sites=sites)


def openb_network(nodes_csv: Path, price: float = 8.0) -> NetworkSpec:
    """One site holding the nodes of an Alibaba openb node list (``sn,cpu_milli,memory_mib,gpu,model``)."""
    try:
        with nodes_csv.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise TraceError(f"{nodes_csv}: cannot read ({exc.strerror or exc})") from None
    groups: list[NodeGroup] = []
    types: set[str] = set()
    for line, row in enumerate(rows, start=2):
        try:
            gpus, model = int(row["gpu"]), (row.get("model") or "").strip()
            cpus, memory = float(row["cpu_milli"]) / 1000, float(row["memory_mib"]) / 1024
            accel = f"{model}:{gpus}" if gpus and model else None
            groups.append(NodeGroup(name=row["sn"].strip(), gpus=accel, cpus=cpus, memory=memory))
        except (KeyError, ValueError) as exc:
            raise TraceError(f"{nodes_csv}:{line}: not a node row (sn,cpu_milli,memory_mib,gpu,model): {exc}") from None
        if accel:
            types.add(model)
    tariff = Tariff(gpu_hour=dict.fromkeys(sorted(types), price))
    return NetworkSpec(sites=[SiteDecl(name="openb", region="openb", nodes=groups, tariff=tariff)])


def named_network(name: str) -> NetworkSpec:
    """A network file, or ``philly-vc:CSV`` / ``openb-nodes:CSV`` built from a trace's cluster list."""
    if name.startswith("philly-vc:"):
        return philly_network(Path(name.removeprefix("philly-vc:")))
    if name.startswith("openb-nodes:"):
        return openb_network(Path(name.removeprefix("openb-nodes:")))
    return read_network(Path(name))


def parse_scales(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        value = float(part)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"'{part}' is not a positive scale factor")
        out.append(value)
    return out
