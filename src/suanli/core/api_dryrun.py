"""The reply of a dry run (``POST /api/v1/jobs?dry_run=true``, ``suanli submit --dry-run``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from suanli.core.api import SiteExplainOut


class DryRunOut(BaseModel):
    """What submitting this spec now would do; nothing is stored."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    #: The tenant it would be billed to.
    tenant: str
    #: The site the scheduler would start it at (now, or where it would reserve capacity for it);
    #: None when no site can take it yet (``reason`` says why).
    site: str | None
    #: The GPU type it would run on there (None for a CPU job).
    gpu_type: str | None
    #: When it would start: now when it fits now, else the site's estimate; None when unknown.
    start_estimate: datetime | None
    #: Why it would wait, in words ("" when it would start now).
    reason: str
    #: The site's price per GPU-hour at the estimated start (time-of-use factor applied).
    price_per_gpu_hour_cny: str | None
    #: The hours priced: its ``time_limit``, else the run time the scheduler expects of it.
    hours: float
    #: Whether ``hours`` is the spec's ``time_limit`` (else an estimate).
    hours_from_time_limit: bool
    #: What those hours cost at that site from that start, priced as the bill prices them.
    estimated_cost_cny: str | None
    #: The tenant's monthly budget (None: it has none).
    budget_cny: str | None
    #: The budget less this month's spend, what running jobs are still expected to cost, and
    #: this job's estimate (None without a budget; negative: it would wait for the budget).
    budget_left_cny: str | None
    #: Every site's verdict, as ``suanli explain`` words it.
    sites: list[SiteExplainOut]
