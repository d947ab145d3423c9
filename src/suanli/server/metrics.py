"""Prometheus metrics, read from the store at scrape time (so every server reports the truth)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from suanli.app.control import ControlPlane
from suanli.app.metering import PLATFORM_FAULTS
from suanli.app.sites import capacity_view
from suanli.core.states import JobState
from suanli.store.models import Attempt, Job, UsageRecord


class SuanliCollector(Collector):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def collect(self) -> Iterator[Metric]:
        now = self.control.clock.now()
        with self.control.db.read() as session:
            by_state = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            oldest = session.scalar(select(func.min(Job.submitted_at)).where(Job.state == JobState.PENDING.value))
            view = capacity_view(session, now, self.control.settings.lease_s)
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
        jobs = GaugeMetricFamily("suanli_jobs", "Jobs by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], float(by_state.get(state.value, 0)))
        yield jobs
        yield GaugeMetricFamily(
            "suanli_queue_length", "Jobs waiting to be placed.", value=float(by_state.get("PENDING", 0))
        )
        wait = (now - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "suanli_queue_oldest_wait_seconds", "How long the oldest pending job has waited.", value=wait
        )
        gpus = GaugeMetricFamily(
            "suanli_gpus", "GPUs per site and type, by status.", labels=["site", "gpu_type", "status"]
        )
        online = GaugeMetricFamily("suanli_site_online", "1 when the site's agent heartbeats.", labels=["site"])
        for site in view.sites:
            online.add_metric([site.name], 1.0 if site.online else 0.0)
            totals: dict[str, tuple[int, int]] = {}
            for n in site.nodes:
                if n.gpu_type:
                    total, free = totals.get(n.gpu_type, (0, 0))
                    totals[n.gpu_type] = (total + n.gpus_total, free + (len(n.free_gpus) if n.schedulable else 0))
            for gpu_type, (total, free) in sorted(totals.items()):
                gpus.add_metric([site.name, gpu_type, "free"], float(free))
                gpus.add_metric([site.name, gpu_type, "used"], float(total - free))
        yield gpus
        yield online
        gpu_seconds = CounterMetricFamily(
            "suanli_usage_gpu_seconds", "Metered GPU-seconds.", labels=["site", "gpu_type"]
        )
        revenue = CounterMetricFamily("suanli_revenue_cny", "Billed revenue (waived usage left out).", labels=["site"])
        gs: dict[tuple[str, str], float] = {}
        rev: dict[str, float] = {}
        for site_name, usage_gpu, attempt_state, seconds, count, micro in usage:
            key = (site_name, usage_gpu or "none")
            gs[key] = gs.get(key, 0.0) + seconds * count
            billed = 0 if (self.control.settings.waive_platform_faults and attempt_state in PLATFORM_FAULTS) else micro
            rev[site_name] = rev.get(site_name, 0.0) + billed / 1e6
        for (site_name, kind), value in sorted(gs.items()):
            gpu_seconds.add_metric([site_name, kind], value)
        for site_name, value in sorted(rev.items()):
            revenue.add_metric([site_name], value)
        yield gpu_seconds
        yield revenue
