"""The figures the server's Prometheus endpoint reports, read from the store at scrape time (so
every front-desk replica reports the truth, not what it alone saw)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from suanli.app.control import ControlPlane
from suanli.app.metering import PLATFORM_FAULTS
from suanli.app.sites import capacity_view
from suanli.core.states import JobState
from suanli.store.models import Attempt, Job, UsageRecord


@dataclass
class SiteGpus:
    site: str
    online: bool
    #: GPU type → (total, free and schedulable).
    by_type: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Figures:
    now: datetime
    jobs: dict[JobState, int]
    #: When the oldest pending job was submitted (None: nothing waits).
    oldest_pending: datetime | None
    sites: list[SiteGpus]
    #: (site, GPU type or "none") → metered GPU-seconds.
    gpu_seconds: dict[tuple[str, str], float]
    #: site → billed CNY (usage the platform's faults cost is left out when it is waived).
    revenue: dict[str, float]


def figures(control: ControlPlane) -> Figures:
    now = control.clock.now()
    with control.db.read() as session:
        by_state = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        oldest = session.scalar(select(func.min(Job.submitted_at)).where(Job.state == JobState.PENDING.value))
        view = capacity_view(session, now, control.settings.lease_s)
        usage = session.execute(
            select(
                UsageRecord.site,
                UsageRecord.gpu_type,
                Attempt.state,
                UsageRecord.seconds,
                UsageRecord.gpus,
                UsageRecord.cost_micro,
            ).join(Attempt, Attempt.id == UsageRecord.attempt_id)
        ).all()
    sites = []
    for site in view.sites:
        gpus = SiteGpus(site.name, site.online)
        for n in site.nodes:
            if n.gpu_type:
                total, free = gpus.by_type.get(n.gpu_type, (0, 0))
                gpus.by_type[n.gpu_type] = (total + n.gpus_total, free + (len(n.free_gpus) if n.schedulable else 0))
        sites.append(gpus)
    gpu_seconds: dict[tuple[str, str], float] = {}
    revenue: dict[str, float] = {}
    waive = control.settings.waive_platform_faults
    for site_name, usage_gpu, attempt_state, seconds, count, micro in usage:
        key = (site_name, usage_gpu or "none")
        gpu_seconds[key] = gpu_seconds.get(key, 0.0) + seconds * count
        billed = 0 if (waive and attempt_state in PLATFORM_FAULTS) else micro
        revenue[site_name] = revenue.get(site_name, 0.0) + billed / 1e6
    return Figures(
        now=now,
        jobs={state: int(by_state.get(state.value, 0)) for state in JobState},
        oldest_pending=oldest,
        sites=sites,
        gpu_seconds=gpu_seconds,
        revenue=revenue,
    )
