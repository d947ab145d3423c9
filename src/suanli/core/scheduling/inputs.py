"""What feeds the scheduler besides the queue: tenants' shares, run-time estimates, allocation ends.

The live server (``app/fairshare.py``, ``app/scheduling.py``) reads these from its store and the
simulator (``sim/engine.py``) keeps them as its events happen; both compute them here, so a
replay plans with the very numbers the server would have.

- **Usage** is GPU-seconds by GPU type, each second weighted by ``2 ** (-age / half_life)``:
  the integral over an attempt's run (:func:`decayed_gpu_seconds`), for finished attempts and
  for running ones alike (a running attempt counts from its start up to now).
- **Run-time estimate** of a tenant: the mean run time (attempt end − attempt start) of its
  ``ESTIMATE_WINDOW`` most recent *successful attempts*; of a job with a ``name``, the same over
  the tenant's jobs of that name, where there are some (a tenant's ``eval`` and ``pretrain``
  jobs differ more than any two of its evals). Only the run of the attempt that
  succeeded counts: time waiting in the queue, earlier attempts that were preempted or failed,
  and back-offs do not.
- **Allocation end**: start + time limit, else start + the estimate for its name, else its
  tenant's, else start + the policy's ``default_estimate_s``.

Times are seconds on any one axis (the server passes POSIX timestamps, the simulator seconds
from its epoch): only differences matter.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from suanli.core.scheduling.model import PendingJob, Policy, SiteState, TenantShare

#: Successful attempts per tenant that its run-time estimate averages.
ESTIMATE_WINDOW = 20
#: Usage older than this many half-lives counts less than 2 % and may be forgotten.
USAGE_HORIZON_HALF_LIVES = 6
#: A meter's running sum is rebased once its starts are this many half-lives past its origin.
_REBASE_HALF_LIVES = 64


def decayed_gpu_seconds(gpus: int, start: float, end: float, now: float, half_life_s: float) -> float:
    """∫ gpus · 2^(-(now - t)/H) dt over [start, end] (0 when the half-life is 0)."""
    if end <= start or gpus <= 0 or half_life_s <= 0:
        return 0.0
    rate = math.log(2) / half_life_s
    a = max(now - end, 0.0)
    b = max(now - start, 0.0)
    return gpus * (math.exp(-rate * a) - math.exp(-rate * b)) / rate


@dataclass
class _Meter:
    #: Decayed GPU-seconds of finished attempts, as of ``at``.
    done: float = 0.0
    at: float = 0.0
    #: Running attempts: Σ GPUs and Σ GPUs · 2^((start − origin)/H).
    gpus: float = 0.0
    weighted: float = 0.0
    origin: float = 0.0


@dataclass
class UsageMeter:
    """Decayed usage by (tenant, GPU type), kept as attempts start and end.

    ``usage(now)`` equals the sum of :func:`decayed_gpu_seconds` over every attempt (running
    ones up to ``now``), in O(1) per (tenant, type): a finished attempt's integral decays as a
    whole, and a running one's is ``gpus · (1 − 2^(−(now − start)/H)) / rate``."""

    half_life_s: float
    _meters: dict[tuple[str, str], _Meter] = field(default_factory=dict)

    def add(self, tenant: str, gpu_type: str, gpus: int, start: float, end: float) -> None:
        """A finished attempt (or any past interval of GPU use)."""
        if gpus <= 0 or end <= start:
            return
        m = self._meters.setdefault((tenant, gpu_type), _Meter(at=end, origin=start))
        if end >= m.at:
            m.done = self._decay(m.done, end - m.at) + decayed_gpu_seconds(gpus, start, end, end, self.half_life_s)
            m.at = end
        else:
            m.done += decayed_gpu_seconds(gpus, start, end, m.at, self.half_life_s)

    def hold(self, tenant: str, gpu_type: str, gpus: int, start: float, sign: int = 1) -> None:
        """An attempt started at ``start`` runs (``sign=-1``: it no longer does)."""
        if gpus <= 0 or self.half_life_s <= 0:
            return
        m = self._meters.setdefault((tenant, gpu_type), _Meter(at=start, origin=start))
        if start - m.origin > _REBASE_HALF_LIVES * self.half_life_s:  # keep 2^(age/H) finite
            m.weighted *= math.pow(2.0, (m.origin - start) / self.half_life_s)
            m.origin = start
        m.gpus += sign * gpus
        m.weighted += sign * gpus * math.pow(2.0, (start - m.origin) / self.half_life_s)
        if m.gpus <= 0:
            m.gpus, m.weighted = 0.0, 0.0

    def release(self, tenant: str, gpu_type: str, gpus: int, start: float, end: float) -> None:
        """A running attempt ended: it stops counting as running and counts as finished."""
        self.hold(tenant, gpu_type, gpus, start, sign=-1)
        self.add(tenant, gpu_type, gpus, start, end)

    def usage(self, now: float) -> dict[str, dict[str, float]]:
        """tenant → GPU type → decayed GPU-seconds at ``now``."""
        out: dict[str, dict[str, float]] = {}
        if self.half_life_s <= 0:
            return out
        half_life = self.half_life_s
        rate = math.log(2) / half_life
        pow_ = math.pow
        for (tenant, gpu_type), m in self._meters.items():  # read every pass: _decay inlined
            value = m.done * pow_(0.5, max(now - m.at, 0.0) / half_life)
            if m.gpus > 0:
                value += (m.gpus - pow_(2.0, -(now - m.origin) / half_life) * m.weighted) / rate
            if value > 0:
                out.setdefault(tenant, {})[gpu_type] = value
        return out

    def _decay(self, value: float, age_s: float) -> float:
        return value * math.pow(0.5, max(age_s, 0.0) / self.half_life_s) if self.half_life_s > 0 else 0.0


def usual_run_time(run_times: Iterable[float]) -> float | None:
    """The mean of a tenant's recent successful attempts' run times (at least 1 s), or None."""
    seen = list(run_times)
    return max(sum(seen) / len(seen), 1.0) if seen else None


@dataclass
class RunTimes:
    """Each tenant's ``ESTIMATE_WINDOW`` most recent successful attempts, by attempt order
    (the server's attempt id: the order attempts were placed in)."""

    window: int = ESTIMATE_WINDOW
    _seen: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    _estimates: dict[str, float | None] = field(default_factory=dict)
    #: Tenants with attempts since their estimate was last computed (a replay records many
    #: attempts between two reads of the estimates; each is averaged once, when read).
    _stale: dict[str, None] = field(default_factory=dict)
    #: The same by (tenant, job name).
    _named: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    _named_estimates: dict[str, dict[str, float]] = field(default_factory=dict)
    _named_stale: dict[tuple[str, str], None] = field(default_factory=dict)

    def succeeded(self, tenant: str, attempt_order: int, run_s: float, name: str | None = None) -> None:
        runs = self._seen.setdefault(tenant, [])
        insort(runs, (attempt_order, run_s))
        if len(runs) > self.window:
            del runs[0]
        self._stale[tenant] = None
        if name:
            named = self._named.setdefault((tenant, name), [])
            insort(named, (attempt_order, run_s))
            if len(named) > self.window:
                del named[0]
            self._named_stale[(tenant, name)] = None

    def by_name(self) -> dict[str, dict[str, float]]:
        """tenant → job name → the estimate of its jobs of that name (names with history only)."""
        for tenant, name in self._named_stale:
            value = usual_run_time(r for _, r in self._named[(tenant, name)])
            if value is not None:
                self._named_estimates.setdefault(tenant, {})[name] = value
        self._named_stale.clear()
        return self._named_estimates

    def estimate(self, tenant: str) -> float | None:
        self._refresh()
        return self._estimates.get(tenant)

    def estimates(self) -> dict[str, float | None]:
        """Every tenant's estimate (tenants with no successful attempt yet are left out)."""
        self._refresh()
        return dict(self._estimates)

    def _refresh(self) -> None:
        for tenant in self._stale:
            self._estimates[tenant] = usual_run_time(r for _, r in self._seen[tenant])
        self._stale.clear()


@dataclass(frozen=True)
class Quota:
    max_gpus: int | None = None
    max_gpus_per_site: int | None = None


def tenant_shares(
    weights: Mapping[str, float],
    usage: Mapping[str, Mapping[str, float]],
    estimates: Mapping[str, float | None],
    quotas: Mapping[str, Quota],
    extra: Iterable[str] = (),
    by_name: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, TenantShare]:
    """Every tenant known by weight, usage, quota or ``extra`` (weight 1 when not declared)."""
    out: dict[str, TenantShare] = {}
    for name in sorted(set(weights) | set(usage) | set(quotas) | set(extra)):
        q = quotas.get(name, Quota())
        out[name] = TenantShare(
            weight=weights.get(name, 1.0),
            usage=dict(usage.get(name, {})),
            max_gpus=q.max_gpus,
            max_gpus_per_site=q.max_gpus_per_site,
            estimate_s=estimates.get(name),
            by_name=dict((by_name or {}).get(name, {})),
        )
    return out


def estimate_s(tenant: str, tenants: Mapping[str, TenantShare], policy: Policy) -> float:
    """How long a job of ``tenant`` without a time limit is expected to run."""
    share = tenants.get(tenant)
    return share.estimate_s if share and share.estimate_s else policy.default_estimate_s


def named_estimate_s(tenant: str, name: str | None, tenants: Mapping[str, TenantShare], policy: Policy) -> float:
    """How long a job of ``tenant`` named ``name`` without a time limit is expected to run: the
    estimate for its name where the tenant has history of that name, else the tenant's."""
    share = tenants.get(tenant)
    if name and share is not None:
        hit = share.by_name.get(name)
        if hit:
            return hit
    return share.estimate_s if share and share.estimate_s else policy.default_estimate_s


def job_seconds(job: PendingJob, tenants: Mapping[str, TenantShare], policy: Policy) -> float:
    """How long ``job`` is expected to run once placed: its time limit, else the estimate for
    its name, else its tenant's."""
    return job.time_limit_s or named_estimate_s(job.tenant, job.name, tenants, policy)


def fill_estimates(sites: Iterable[SiteState], tenants: Mapping[str, TenantShare], policy: Policy) -> None:
    """Running allocations without an end (no time limit) are expected to end after the usual
    run time of their name or tenant (or the policy's default): start-time estimates, backfill and
    preemption plan with that."""
    spans: dict[tuple[str, str | None], timedelta] = {}
    for site in sites:
        for alloc in site.allocations:
            if alloc.ends_at is None and alloc.started_at is not None:
                key = (alloc.tenant, alloc.name)
                span = spans.get(key)
                if span is None:
                    span = spans[key] = timedelta(seconds=named_estimate_s(*key, tenants, policy))
                alloc.ends_at = alloc.started_at + span
                alloc.estimated = True
