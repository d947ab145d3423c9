"""Prometheus metrics: the figures of ``app/metrics.py``, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from suanli.app.control import ControlPlane
from suanli.app.metrics import figures
from suanli.core.states import JobState


class SuanliCollector(Collector):
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def collect(self) -> Iterator[Metric]:
        f = figures(self.control)
        jobs = GaugeMetricFamily("suanli_jobs", "Jobs by state.", labels=["state"])
        for state, count in f.jobs.items():
            jobs.add_metric([state.value], float(count))
        yield jobs
        yield GaugeMetricFamily(
            "suanli_queue_length", "Jobs waiting to be placed.", value=float(f.jobs[JobState.PENDING])
        )
        wait = (f.now - f.oldest_pending).total_seconds() if f.oldest_pending else 0.0
        yield GaugeMetricFamily(
            "suanli_queue_oldest_wait_seconds", "How long the oldest pending job has waited.", value=wait
        )
        gpus = GaugeMetricFamily(
            "suanli_gpus", "GPUs per site and type, by status.", labels=["site", "gpu_type", "status"]
        )
        online = GaugeMetricFamily("suanli_site_online", "1 when the site's agent heartbeats.", labels=["site"])
        for site in f.sites:
            online.add_metric([site.site], 1.0 if site.online else 0.0)
            for gpu_type, (total, free) in sorted(site.by_type.items()):
                gpus.add_metric([site.site, gpu_type, "free"], float(free))
                gpus.add_metric([site.site, gpu_type, "used"], float(total - free))
        yield gpus
        yield online
        gpu_seconds = CounterMetricFamily(
            "suanli_usage_gpu_seconds", "Metered GPU-seconds.", labels=["site", "gpu_type"]
        )
        revenue = CounterMetricFamily("suanli_revenue_cny", "Billed revenue (waived usage left out).", labels=["site"])
        for (site_name, kind), value in sorted(f.gpu_seconds.items()):
            gpu_seconds.add_metric([site_name, kind], value)
        for site_name, value in sorted(f.revenue.items()):
            revenue.add_metric([site_name], value)
        yield gpu_seconds
        yield revenue
        ledger = self.control.chain.ledger
        yield GaugeMetricFamily(
            "suanli_ledger_alarm",
            "1 when the ledger refused to sign a log that does not extend its last signed checkpoint.",
            value=1.0 if ledger.alarm else 0.0,
        )
        yield CounterMetricFamily(
            "suanli_ledger_refused_seals", "Checkpoints the ledger refused to sign.", value=float(ledger.refused_seals)
        )
        with self.control.db.read() as session:
            unwitnessed = ledger.unwitnessed(session)
        yield GaugeMetricFamily(
            "suanli_ledger_unwitnessed_entries",
            "Entries no checkpoint cosigned by every listed witness covers yet (a witness that stopped shows here).",
            value=float(unwitnessed),
        )
