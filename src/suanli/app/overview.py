"""Read models of the dashboard's network pages: sites, their regions and latencies, GPUs,
health, queue, utilisation over time, and the nodes table operators act on."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import false, func, or_, select

from suanli.app.access import tenant_filter
from suanli.app.control import ControlPlane
from suanli.app.jobs import job_gpus
from suanli.app.sites import capacity_view, node_outs, site_outs
from suanli.core.api import NodeOut, SiteOut
from suanli.core.identity import Identity
from suanli.core.states import JobState
from suanli.store.models import Attempt, Job

#: The utilisation chart: this long a window, in this many steps.
UTIL_WINDOW = timedelta(hours=1)
UTIL_STEPS = 60


@dataclass
class SiteCard:
    site: SiteOut
    nodes_up: int
    nodes_drained: int
    nodes_down: int
    gpus_used: int
    gpus_total: int

    @property
    def health(self) -> str:
        """ok | degraded | offline"""
        if not self.site.online:
            return "offline"
        return "degraded" if self.nodes_down or self.nodes_drained else "ok"


@dataclass
class GraphNode:
    region: str
    x: float
    y: float
    sites: list[str]
    online: bool


@dataclass
class GraphEdge:
    a: GraphNode
    b: GraphNode
    latency_ms: float

    @property
    def mid(self) -> tuple[float, float]:
        return (self.a.x + self.b.x) / 2, (self.a.y + self.b.y) / 2


@dataclass
class Utilisation:
    """GPUs in use over the last hour, per GPU type, as percentages of the type's total."""

    times: list[datetime]
    series: dict[str, list[float]]
    totals: dict[str, int]


#: How many waiting jobs the network page lists (the jobs page lists them all).
WAITING_SHOWN = 20


@dataclass
class WaitingJob:
    id: str
    name: str
    tenant: str
    gpus: str
    submitted_at: datetime
    reason: str


@dataclass
class Overview:
    cards: list[SiteCard]
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    #: GPU type -> (used, free, total), free counting only schedulable GPUs at online sites.
    gpus: dict[str, tuple[int, int, int]]
    pending: int
    running: int
    utilisation: Utilisation
    #: The oldest waiting jobs the viewer may see, with why each waits (at most WAITING_SHOWN).
    waiting: list[WaitingJob] = field(default_factory=list)
    width: int = 520
    height: int = 300
    notes: list[str] = field(default_factory=list)


def overview(control: ControlPlane, identity: Identity) -> Overview:
    now = control.clock.now()
    with control.db.read() as session:
        view = capacity_view(session, now, control.settings.lease_s)
        counts = session.execute(
            _scoped(select(Job.state, func.count()).group_by(Job.state), identity).where(
                Job.state.in_([JobState.PENDING.value, JobState.RUNNING.value])
            )
        ).all()
        oldest = _scoped(select(Job), identity).where(Job.state == JobState.PENDING.value)
        waiting = [
            WaitingJob(j.id, j.name, j.tenant, job_gpus(j), j.submitted_at, j.reason)
            for j in session.scalars(oldest.order_by(Job.seq).limit(WAITING_SHOWN))
        ]
        since = now - UTIL_WINDOW
        attempts = list(
            session.scalars(
                select(Attempt).where(
                    Attempt.started_at.is_not(None), or_(Attempt.ended_at.is_(None), Attempt.ended_at >= since)
                )
            )
        )
    sites = site_outs(view, now, control.settings.lease_s)
    nodes = node_outs(view)
    by_state: dict[str, int] = {state: n for state, n in counts}  # noqa: C416 (rows, not pairs, to mypy)
    cards = [_card(s, [n for n in nodes if n.site == s.name]) for s in sites]
    gpus: dict[str, tuple[int, int, int]] = {}
    for n in nodes:
        if n.gpu_type:
            used, free, total = gpus.get(n.gpu_type, (0, 0, 0))
            free_now = n.gpus_free if n.state not in ("drained", "down") else 0
            gpus[n.gpu_type] = (used + n.gpus_total - n.gpus_free, free + free_now, total + n.gpus_total)
    graph_nodes, edges = region_graph(sites)
    return Overview(
        cards=cards,
        nodes=graph_nodes,
        edges=edges,
        gpus=dict(sorted(gpus.items())),
        pending=by_state.get(JobState.PENDING.value, 0),
        running=by_state.get(JobState.RUNNING.value, 0),
        utilisation=utilisation(attempts, {t: v[2] for t, v in gpus.items()}, now),
        waiting=waiting,
    )


def _scoped(query: Any, identity: Identity) -> Any:
    scope = tenant_filter(identity)
    if scope is not None and scope != identity.tenant:
        return query.where(false())  # sees no tenant's jobs (PostgreSQL refuses the NUL placeholder)
    return query if scope is None else query.where(Job.tenant == scope)


def _card(site: SiteOut, nodes: list[NodeOut]) -> SiteCard:
    total = sum(g.total for g in site.gpus.values())
    used = sum(n.gpus_total - n.gpus_free for n in nodes)
    return SiteCard(
        site=site,
        nodes_up=sum(1 for n in nodes if n.state not in ("drained", "down")),
        nodes_drained=sum(1 for n in nodes if n.state == "drained"),
        nodes_down=sum(1 for n in nodes if n.state == "down"),
        gpus_used=used,
        gpus_total=total,
    )


def region_graph(sites: list[SiteOut], width: int = 520, height: int = 300) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Regions on a circle, west to east by their order in the network (a schematic, not a map),
    joined by the lowest latency any site of one region declares to the other."""
    regions: dict[str, list[SiteOut]] = defaultdict(list)
    for s in sites:
        regions[s.region].append(s)
    names = list(regions)
    cx, cy, r = width / 2, height / 2, min(width, height) / 2 - 48
    nodes: dict[str, GraphNode] = {}
    for i, name in enumerate(names):
        angle = math.pi + (2 * math.pi * i / len(names)) if len(names) > 1 else 0.0
        x, y = (cx + r * math.cos(angle), cy + r * math.sin(angle) * 0.8) if len(names) > 1 else (cx, cy)
        members = regions[name]
        online = any(s.online for s in members)
        nodes[name] = GraphNode(name, round(x, 1), round(y, 1), [s.name for s in members], online)
    best: dict[tuple[str, str], float] = {}
    for s in sites:
        for other, ms in s.latency_ms.items():
            if other == s.region or other not in nodes:
                continue
            key = (min(s.region, other), max(s.region, other))
            best[key] = min(best.get(key, float(ms)), float(ms))
    edges = [GraphEdge(nodes[a], nodes[b], ms) for (a, b), ms in sorted(best.items())]
    return list(nodes.values()), edges


def utilisation(attempts: list[Attempt], totals: dict[str, int], now: datetime) -> Utilisation:
    step = UTIL_WINDOW / UTIL_STEPS
    times = [now - UTIL_WINDOW + step * (i + 1) for i in range(UTIL_STEPS)]
    series: dict[str, list[float]] = {t: [0.0] * UTIL_STEPS for t in totals}
    for a in attempts:
        if a.gpu_type not in series or a.started_at is None:
            continue
        used = sum(len(n.get("gpu_indices", [])) for n in a.nodes)
        for i, t in enumerate(times):
            if a.started_at <= t and (a.ended_at is None or a.ended_at > t):
                series[a.gpu_type][i] += used
    percent = {t: [round(100 * v / totals[t], 1) if totals[t] else 0.0 for v in values] for t, values in series.items()}
    return Utilisation(times, percent, totals)
