"""What the scheduler needs to know of tenants, read from the store: weights, decayed usage,
run-time estimates, quotas. The formulas live in :mod:`suanli.core.scheduling.inputs` (the
simulator uses the same ones); this module only reads the attempts they need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from suanli.core.network import NetworkSpec
from suanli.core.scheduler import Policy, TenantShare
from suanli.core.scheduling import inputs
from suanli.core.scheduling.inputs import ESTIMATE_WINDOW, USAGE_HORIZON_HALF_LIVES, Quota, RunTimes, UsageMeter
from suanli.core.states import AttemptState
from suanli.store.models import Attempt, Job, Tenant

__all__ = ["ESTIMATE_WINDOW", "Quota", "attained_gpu_s", "decayed_gpu_seconds", "quotas_of", "tenant_shares"]


def quotas_of(network: NetworkSpec) -> dict[str, Quota]:
    return {t.name: Quota(t.max_gpus, t.max_gpus_per_site) for t in network.tenants}


def decayed_gpu_seconds(gpus: int, start: datetime, end: datetime, now: datetime, half_life_s: float) -> float:
    """∫ gpus · 2^(-(now - t)/H) dt over [start, end] (:func:`inputs.decayed_gpu_seconds` on datetimes)."""
    return inputs.decayed_gpu_seconds(gpus, start.timestamp(), end.timestamp(), now.timestamp(), half_life_s)


def tenant_shares(
    session: Session, now: datetime, policy: Policy, quotas: Mapping[str, Quota]
) -> dict[str, TenantShare]:
    """Shares from the attempts that ran within ``USAGE_HORIZON_HALF_LIVES`` half-lives (running
    ones count up to ``now``) and the tenants' most recent successful attempts."""
    weights: dict[str, float] = {name: float(w) for name, w in session.execute(select(Tenant.name, Tenant.weight))}
    horizon = now - timedelta(seconds=policy.usage_half_life_s * USAGE_HORIZON_HALF_LIVES)
    rows = session.execute(
        select(
            Job.tenant, Attempt.id, Attempt.gpu_type, Attempt.nodes, Attempt.started_at, Attempt.ended_at, Attempt.state
        )
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.started_at.is_not(None), or_(Attempt.ended_at.is_(None), Attempt.ended_at >= horizon))
    ).all()
    meter = UsageMeter(policy.usage_half_life_s)
    runs = RunTimes()
    names = _succeeded_names(session, horizon)
    for tenant, attempt_id, gpu_type, nodes, started, ended, state in rows:
        gpus = sum(len(n.get("gpu_indices", [])) for n in nodes)
        end = min(ended or now, now)
        if gpu_type and gpus:
            meter.add(tenant, gpu_type, gpus, started.timestamp(), end.timestamp())
        if state == AttemptState.SUCCEEDED.value and ended is not None:
            runs.succeeded(tenant, attempt_id, (ended - started).total_seconds(), names.get(attempt_id))
    return inputs.tenant_shares(weights, meter.usage(now.timestamp()), runs.estimates(), quotas, by_name=runs.by_name())


def _succeeded_names(session: Session, horizon: datetime) -> dict[int, str]:
    """attempt id → the job's spec ``name``, for the successful attempts since ``horizon``."""
    rows = session.execute(
        select(Attempt.id, Job.spec)
        .join(Job, Job.seq == Attempt.job_seq)
        .where(Attempt.state == AttemptState.SUCCEEDED.value, Attempt.ended_at >= horizon)
    ).all()
    out: dict[int, str] = {}
    for attempt_id, spec in rows:
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and name:
            out[attempt_id] = name
    return out


def attained_gpu_s(session: Session, seqs: Sequence[int]) -> dict[int, float]:
    """GPU-seconds the ended attempts of each of these jobs held (start to end), by job seq:
    the attained service least-attained-service ordering counts. Jobs with none are left out."""
    out: dict[int, float] = {}
    for start in range(0, len(seqs), 500):
        rows = session.execute(
            select(Attempt.job_seq, Attempt.nodes, Attempt.started_at, Attempt.ended_at).where(
                Attempt.job_seq.in_(seqs[start : start + 500]),
                Attempt.started_at.is_not(None),
                Attempt.ended_at.is_not(None),
            )
        ).all()
        for seq, nodes, started, ended in rows:
            gpus = sum(len(n.get("gpu_indices", [])) for n in nodes)
            if gpus and ended > started:
                out[seq] = out.get(seq, 0.0) + gpus * (ended - started).total_seconds()
    return out
