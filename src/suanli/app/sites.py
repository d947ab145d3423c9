"""Sites and nodes: declaring them from the network file, agent tokens, and the capacity view."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from suanli.app.access import require_site
from suanli.app.errors import NotFound, Unauthorized, Unprocessable
from suanli.app.fairshare import attained_gpu_s
from suanli.core.api import GpuCount, NodeOut, SiteOut
from suanli.core.identity import Identity, Scope
from suanli.core.network import NetworkSpec, SiteDecl, Tariff
from suanli.core.protocol import NodeReport
from suanli.core.resources import MAX_DURATION_S
from suanli.core.scheduler import Allocation, NodeState, SiteState
from suanli.core.spec import Priority
from suanli.core.states import AttemptState
from suanli.store.models import Attempt, Job, Node, Site, Tenant

log = logging.getLogger("suanli.server")
ACTIVE_ATTEMPT_STATES = (AttemptState.SCHEDULED.value, AttemptState.STARTING.value, AttemptState.RUNNING.value)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_file(token_dir: Path, site: str) -> Path:
    return token_dir / f"site-{site}.token"


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def apply_network(
    session: Session, network: NetworkSpec, now: datetime, token_dir: Path, *, sole_home: bool = True
) -> list[str]:
    """Create or update every declared site and its nodes. Returns the names of sites that got a
    new agent token (written, mode 0600, to ``token_dir``). A site whose token file is missing
    gets a new token only with ``sole_home`` (SQLite): on PostgreSQL each replica has a home of
    its own, and the token is in the home of the replica that made the site."""
    new_tokens: list[str] = []
    tenants = {t.name: t for t in session.scalars(select(Tenant))}
    for t in network.tenants:
        row = tenants.get(t.name) or Tenant(name=t.name, created_at=now)
        row.home_region, row.weight = t.home_region, t.weight
        session.add(row)
    existing = {s.name: s for s in session.scalars(select(Site))}
    for decl in network.sites:
        site = existing.get(decl.name)
        if site is None:
            site = Site(name=decl.name, region=decl.region, created_at=now)
            session.add(site)
        _update_site(site, decl)
        path = token_file(token_dir, decl.name)
        if site.token_hash is None or (sole_home and not path.exists()):
            token = secrets.token_urlsafe(32)
            site.token_hash = hash_token(token)
            _write_secret(path, token)
            new_tokens.append(decl.name)
        session.flush()
        _declare_nodes(session, site, decl, now)
    return new_tokens


def _update_site(site: Site, decl: SiteDecl) -> None:
    site.region = decl.region
    site.zone = decl.zone.value
    site.backend = decl.backend.value
    site.latency_ms = dict(decl.latency_ms)
    site.tariff = decl.tariff.model_dump(mode="json")
    site.containers = decl.runs_containers


def _declare_nodes(session: Session, site: Site, decl: SiteDecl, now: datetime) -> None:
    nodes = {n.name: n for n in session.scalars(select(Node).where(Node.site_id == site.id))}
    for n in decl.node_decls():
        row = nodes.get(n.name)
        if row is None:
            row = Node(site_id=site.id, name=n.name, cpus=n.cpus, memory=n.memory, updated_at=now)
            session.add(row)
        row.gpu_type, row.gpus_total, row.cpus, row.memory = n.gpu_type, n.gpu_count, n.cpus, n.memory
        row.updated_at = now


def authenticate_site(session: Session, site_name: str, token: str | None) -> Site:
    site = session.scalar(select(Site).where(Site.name == site_name))
    if site is None:
        raise NotFound(f"site '{site_name}' is not part of this network; declare it in the network file")
    if not token or site.token_hash is None or not hmac.compare_digest(site.token_hash, hash_token(token)):
        raise Unauthorized(f"the token is not valid for site '{site_name}'")
    return site


def update_inventory(session: Session, site: Site, reports: Sequence[NodeReport], now: datetime) -> bool:
    """Nodes as the agent sees them. A node the agent no longer reports is marked unhealthy.
    Returns whether anything changed."""
    changed_any = False
    rows = {n.name: n for n in session.scalars(select(Node).where(Node.site_id == site.id))}
    seen: set[str] = set()
    for r in reports:
        seen.add(r.name)
        row = rows.get(r.name)
        if row is None:
            other = session.scalar(select(Node).where(Node.name == r.name))
            if other is not None:
                continue  # a node name belongs to one site only
            row = Node(site_id=site.id, name=r.name, cpus=r.cpus, memory=r.memory, updated_at=now)
            session.add(row)
        changed = (
            row.gpu_type,
            row.gpus_total,
            row.cpus,
            row.memory,
            row.healthy,
            row.health_reason,
            row.gpu_source,
        ) != (
            r.gpu_type,
            r.gpus_total,
            r.cpus,
            r.memory,
            r.healthy,
            r.reason,
            r.gpu_source,
        )
        if changed:
            changed_any = True
            if row.healthy and not r.healthy and not row.drained and not r.transient:
                # A node that failed its health check stays out until an operator has looked at
                # it (like Slurm's DRAIN), even if the next check passes. A transient verdict (a
                # hot GPU) only keeps new work off while it lasts.
                row.drained, row.drain_reason = True, f"{r.reason or 'unhealthy'} (drained automatically)"
            row.gpu_type, row.gpus_total, row.cpus, row.memory = r.gpu_type, r.gpus_total, r.cpus, r.memory
            row.healthy, row.health_reason, row.gpu_source = r.healthy, r.reason, r.gpu_source
            row.updated_at = now
    for name, row in rows.items():
        if name not in seen and row.healthy:
            row.healthy, row.health_reason, row.updated_at = False, "the agent does not report this node", now
            changed_any = True
    return changed_any


def site_for_token(session: Session, token: str | None) -> Site:
    """The site whose agent token this is (for agent-only endpoints that name no site)."""
    if token:
        site = session.scalar(select(Site).where(Site.token_hash == hash_token(token)))
        if site is not None:
            return site
    raise Unauthorized("a valid site agent token is required")


def is_online(site: Site, now: datetime, lease_s: float) -> bool:
    return site.last_heartbeat_at is not None and now - site.last_heartbeat_at <= timedelta(seconds=lease_s)


@dataclass
class CapacityView:
    """Everything the scheduler and the listings need, read in one go."""

    sites: list[SiteState]
    site_rows: list[Site]
    nodes: list[tuple[Node, str]]
    running_per_site: dict[str, int]


def capacity_view(session: Session, now: datetime, lease_s: float) -> CapacityView:
    site_rows = list(session.scalars(select(Site).order_by(Site.name)))
    by_id = {s.id: s for s in site_rows}
    node_rows = list(session.scalars(select(Node).order_by(Node.name)))
    active = session.execute(
        select(Attempt, Job.spec, Job.id, Job.tenant, Job.priority)
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.state.in_(ACTIVE_ATTEMPT_STATES))
    ).all()
    preempted = _last_preempted(session, [a.job_seq for a, *_ in active])
    attained = attained_gpu_s(session, [a.job_seq for a, *_ in active if a.number > 1])
    held: dict[str, list[Allocation]] = defaultdict(list)
    gpus_held: dict[str, set[int]] = defaultdict(set)
    running_per_site: dict[str, int] = defaultdict(int)
    for attempt, spec, job_id, tenant, priority in active:
        running_per_site[attempt.site] += 1
        # The stored value itself, not ``records.job_spec``: this runs for every active attempt on
        # every pass, and a limit stored past today's bound still counts (as that bound).
        limit = spec.get("time_limit") if isinstance(spec, dict) else None
        start = attempt.started_at or attempt.created_at
        ends = expected_end(start, limit)
        checkpoints = _checkpoints(spec)
        name = spec.get("name") if isinstance(spec, dict) and isinstance(spec.get("name"), str) else None
        for assigned in attempt.nodes:
            indices = [int(i) for i in assigned.get("gpu_indices", [])]
            gpus_held[assigned["node"]].update(indices)
            held[assigned["node"]].append(
                Allocation(
                    job_id,
                    assigned["node"],
                    len(indices),
                    float(assigned.get("cpus", 0)),
                    float(assigned.get("memory", 0)),
                    ends,
                    tenant=tenant,
                    priority=Priority(priority),
                    started_at=start,
                    stopping=attempt.stop_requested,
                    last_preempted_at=preempted.get(attempt.job_seq),
                    seq=attempt.job_seq,
                    attained_gpu_s=attained.get(attempt.job_seq, 0.0),
                    checkpoints=checkpoints,
                    name=name,
                )
            )
    states: dict[str, SiteState] = {}
    for s in site_rows:
        states[s.name] = SiteState(
            name=s.name,
            region=s.region,
            nodes=[],
            online=is_online(s, now, lease_s),
            latency_ms=dict(s.latency_ms or {}),
            tariff=stored_tariff(s),
            containers=s.runs_containers,
        )
    nodes: list[tuple[Node, str]] = []
    for n in node_rows:
        site = by_id[n.site_id]
        nodes.append((n, site.name))
        allocations = held.get(n.name, [])
        states[site.name].allocations.extend(allocations)
        taken_gpus = gpus_held.get(n.name, set())
        cpus_used = sum(a.cpus for a in allocations)
        mem_used = sum(a.memory for a in allocations)
        reason = ""
        if n.drained:
            reason = f"drained: {n.drain_reason}" if n.drain_reason else "drained"
        elif not n.healthy:
            reason = f"unhealthy: {n.health_reason}" if n.health_reason else "unhealthy"
        states[site.name].nodes.append(
            NodeState(
                name=n.name,
                gpu_type=n.gpu_type,
                gpus_total=n.gpus_total,
                cpus_total=n.cpus,
                memory_total=n.memory,
                free_gpus=tuple(i for i in range(n.gpus_total) if i not in taken_gpus),
                cpus_free=n.cpus - cpus_used,
                memory_free=n.memory - mem_used,
                schedulable=not reason,
                unschedulable_reason=reason,
            )
        )
    return CapacityView(list(states.values()), site_rows, nodes, dict(running_per_site))


def expected_end(start: datetime, limit: object) -> datetime | None:
    """When an attempt started at ``start`` reaches its job's ``time_limit``; None without one.
    A stored limit past MAX_DURATION_S (a row from before the spec bounded it) counts as that
    bound, and one that is no number as none: no stored row can overflow the date arithmetic."""
    if not isinstance(limit, int | float) or isinstance(limit, bool) or not math.isfinite(limit) or limit <= 0:
        return None
    return start + timedelta(seconds=min(float(limit), MAX_DURATION_S))


def stored_tariff(site: Site) -> Tariff | None:
    """The site's declared tariff; a stored one that no longer validates (a row from before
    prices were bounded) is logged and left out: the site is listed and scheduled, unpriced."""
    if not site.tariff:
        return None
    try:
        return Tariff.model_validate(site.tariff)
    except ValidationError as exc:
        log.warning(
            "site %s: its stored tariff is invalid and is ignored until a valid one is declared: %s",
            site.name,
            exc.errors(include_url=False)[0]["msg"],
        )
        return None


def _checkpoints(spec: object) -> bool:
    """The stored spec keeps its checkpoint across attempts and does not opt out of preemption."""
    if not isinstance(spec, dict):
        return False
    keep = spec.get("checkpoint", {}).get("keep", True) if isinstance(spec.get("checkpoint"), dict) else True
    return bool(keep) and spec.get("preemptible", True) is not False


def _last_preempted(session: Session, seqs: Sequence[int]) -> dict[int, datetime]:
    """When each of these jobs last had an attempt preempted (for the preemption cool-down)."""
    out: dict[int, datetime] = {}
    for start in range(0, len(seqs), 500):
        rows = session.execute(
            select(Attempt.job_seq, func.max(Attempt.ended_at))
            .where(Attempt.job_seq.in_(seqs[start : start + 500]), Attempt.state == AttemptState.PREEMPTED.value)
            .group_by(Attempt.job_seq)
        )
        out.update({seq: at for seq, at in rows if at is not None})
    return out


def site_outs(view: CapacityView, now: datetime, lease_s: float) -> list[SiteOut]:
    out: list[SiteOut] = []
    states = {s.name: s for s in view.sites}
    for row in view.site_rows:
        state = states[row.name]
        gpus: dict[str, GpuCount] = {}
        for n in state.nodes:
            if n.gpu_type:
                g = gpus.setdefault(n.gpu_type, GpuCount(total=0, free=0))
                g.total += n.gpus_total
                g.free += len(n.free_gpus) if n.schedulable and state.online else 0
        out.append(
            SiteOut(
                name=row.name,
                region=row.region,
                zone=row.zone,
                backend=row.backend,
                online=is_online(row, now, lease_s),
                last_heartbeat_at=row.last_heartbeat_at,
                latency_ms=dict(row.latency_ms or {}),
                nodes=len(state.nodes),
                gpus=gpus,
                running_jobs=view.running_per_site.get(row.name, 0),
                tariff=dict(row.tariff or {}),
                containers=row.runs_containers,
                sandbox=row.sandbox,
            )
        )
    return out


def node_outs(view: CapacityView, site: str | None = None) -> list[NodeOut]:
    states = {n.name: n for s in view.sites for n in s.nodes}
    online = {s.name: s.online for s in view.sites}
    out: list[NodeOut] = []
    for row, site_name in view.nodes:
        if site and site_name != site:
            continue
        st = states[row.name]
        free = len(st.free_gpus)
        if row.drained:
            label = "drained"
        elif not row.healthy or not online.get(site_name, False):
            label = "down"
        elif free == st.gpus_total and st.cpus_free >= st.cpus_total - 1e-9:
            label = "idle"
        elif (st.gpus_total and free == 0) or st.cpus_free <= 1e-9:
            label = "allocated"
        else:
            label = "mixed"
        reason = st.unschedulable_reason or ("" if online.get(site_name, False) else "site offline (no heartbeat)")
        out.append(
            NodeOut(
                name=row.name,
                site=site_name,
                state=label,
                gpu_type=row.gpu_type,
                gpus_total=row.gpus_total,
                gpus_free=free,
                cpus_total=row.cpus,
                cpus_free=round(st.cpus_free, 3),
                memory_total=row.memory,
                memory_free=round(st.memory_free, 3),
                healthy=row.healthy,
                reason=reason,
            )
        )
    return out


def _operated_node(session: Session, who: Identity, name: str) -> Node:
    node = session.scalar(select(Node).where(Node.name == name))
    if node is None:
        raise NotFound(f"no node '{name}'; 'suanli nodes' lists them")
    site = session.get(Site, node.site_id)
    require_site(who, Scope.NETWORK_WRITE, site.name if site else "")
    return node


def drain_node(session: Session, name: str, reason: str, now: datetime, who: Identity) -> Node:
    """No new attempts go to the node; attempts already there run to their end (Slurm's DRAIN).
    Only the admin and the operators of the node's site may."""
    node = _operated_node(session, who, name)
    if not reason.strip():
        raise Unprocessable("say why the node is drained (--reason), so whoever looks next knows")
    node.drained, node.drain_reason, node.updated_at = True, reason.strip(), now
    return node


def undrain_node(session: Session, name: str, now: datetime, who: Identity) -> Node:
    node = _operated_node(session, who, name)
    node.drained, node.drain_reason, node.updated_at = False, "", now
    return node
