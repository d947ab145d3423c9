"""One scheduling pass: order the queue, place what fits at the best site, reserve for the
first blocked jobs, backfill behind them, and preempt when a job that may do so waits too long.

Pure and deterministic: the same inputs give the same result, whatever their order.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from suanli.core.resources import Accelerator
from suanli.core.scheduling.explain import Explainer, price_at, site_filter_reason
from suanli.core.scheduling.index import CapacityIndex, FreeNode, Pool, at_datetime, fmt_time
from suanli.core.scheduling.model import (
    PendingJob,
    Policy,
    ScheduleResult,
    SiteRule,
    SiteState,
    TenantShare,
)
from suanli.core.scheduling.order import Shares, ordered, run_estimate, shares
from suanli.core.scheduling.preempt import plan_preemption

#: (the job's shape key, the names of the sites it may use)
_Shape = tuple[int, tuple[str, ...]]
#: What a job whose computation raised is told (followed by the error).
CANNOT_SCHEDULE = "cannot be scheduled: "


@dataclass
class _Candidate:
    key: tuple[object, ...]
    site: SiteState
    acc: Accelerator | None
    nodes: list[FreeNode]


def options(job: PendingJob) -> list[Accelerator | None]:
    return list(job.resources.accelerators) if job.resources.accelerators else [None]


def gpus_needed(job: PendingJob, acc: Accelerator | None) -> int:
    return (acc.count if acc else 0) * job.resources.num_nodes


class _Pass:
    def __init__(
        self,
        sites: Sequence[SiteState],
        now: datetime,
        policy: Policy,
        tenants: Mapping[str, TenantShare],
        fair: Shares,
        rules: Sequence[SiteRule],
    ) -> None:
        self.now, self.policy, self.tenants, self.fair, self.rules = now, policy, tenants, fair, rules
        self.index = CapacityIndex(sites, now, policy.preempt_grace_s, policy.order == "las")
        self.result = ScheduleResult()
        self.explainer = Explainer(self.index, now, rules)
        held_net: dict[str, int] = {}
        held_site: dict[tuple[str, str], int] = {}
        for s in self.index.sites:  # _hold, inlined: every allocation of every offered site
            for a in s.allocations:
                held_net[a.tenant] = held_net.get(a.tenant, 0) + a.gpus
                held_site[(a.tenant, s.name)] = held_site.get((a.tenant, s.name), 0) + a.gpus
        self.held_net, self.held_site = held_net, held_site
        self.cap_fail: set[_Shape] = set()
        #: shape → shortest run time seen blocked by reservations (longer ones are blocked too).
        self.blocked: dict[_Shape, tuple[float, str]] = {}
        self.waiting: list[tuple[PendingJob, tuple[str, ...]]] = []
        self.preempting: set[str] = set()
        self.reserve_tries = 0
        #: Reservations of jobs past their starvation bound: nothing that needs their GPUs passes them.
        self.hard: set[str] = set()
        #: class key → (first job of the class that found no capacity, its sites, the ids of
        #: later jobs of the class, which wait for the same reason).
        self.failed_class: dict[int, tuple[PendingJob, tuple[str, ...], list[str]]] = {}
        self.with_quota = {
            name for name, t in tenants.items() if t.max_gpus is not None or t.max_gpus_per_site is not None
        }
        self._prices: dict[tuple[str, str | None], float] = {}
        self._orders: dict[tuple[object, ...], list[tuple[tuple[float, ...], SiteState, Pool | None]]] = {}

    def price(self, site: SiteState, acc: Accelerator | None) -> float:
        key = (site.name, acc.type if acc else None)
        hit = self._prices.get(key)
        if hit is None:
            hit = self._prices[key] = price_at(site, acc, self.now) or 0.0
        return hit

    def _hold(self, tenant: str, site: str, gpus: int) -> None:
        self.held_net[tenant] = self.held_net.get(tenant, 0) + gpus
        self.held_site[(tenant, site)] = self.held_site.get((tenant, site), 0) + gpus

    def known(self, job: PendingJob) -> float | None:
        """The job's run time where it is predictable: its time limit (history of a name varies
        too much from job to job to preempt on; it orders the queue)."""
        return job.time_limit_s

    def starving(self, job: PendingJob) -> bool:
        """Past the starvation bound: waited more than ``starvation_factor`` × its estimated run time."""
        factor = self.policy.starvation_factor
        if self.policy.order != "las" or factor <= 0 or job.submitted_s is None:
            return False
        return self.index.now - job.submitted_s > factor * self.run_time(job)

    def run_time(self, job: PendingJob) -> float:
        return run_estimate(job, self.tenants, self.policy)

    def consider(self, job: PendingJob) -> None:
        if not self.rules and job.tenant not in self.with_quota:
            # Fast path: a class of jobs that found no capacity this pass still finds none.
            failed = self.failed_class.get(job.class_key)
            if failed is not None:
                failed[2].append(job.id)
                return
        eligible, names = self.explainer.eligible_named(job)
        if not eligible:
            self.waiting.append((job, ()))
            return
        if job.tenant in self.with_quota:
            names = self._quota(job, eligible)
            if not names:
                return
            eligible = [s for s in eligible if s.name in names]
        shape = (job.shape_key, names)
        if shape in self.cap_fail:
            self.waiting.append((job, names))
            return
        self._try(job, shape, eligible)

    def _quota(self, job: PendingJob, eligible: list[SiteState]) -> tuple[str, ...]:
        """The eligible sites' names the tenant's quotas leave, or () with the reason recorded."""
        quota = self.tenants[job.tenant]
        need = min(gpus_needed(job, a) for a in options(job))
        if not need:
            return tuple(s.name for s in eligible)
        if quota.max_gpus is not None and self.held_net.get(job.tenant, 0) + need > quota.max_gpus:
            held = self.held_net.get(job.tenant, 0)
            self.result.reasons[job.id] = (
                f"over quota: tenant {job.tenant} holds {held} GPUs and may hold {quota.max_gpus} at once "
                f"(this job needs {need})"
            )
            return ()
        if quota.max_gpus_per_site is not None:
            cap = quota.max_gpus_per_site
            allowed = tuple(s.name for s in eligible if self.held_site.get((job.tenant, s.name), 0) + need <= cap)
            if not allowed:
                self.result.reasons[job.id] = (
                    f"over quota: tenant {job.tenant} may hold {cap} GPUs per site, and every site that fits "
                    f"would exceed it (this job needs {need})"
                )
            return allowed
        return tuple(s.name for s in eligible)

    def _try(self, job: PendingJob, shape: _Shape, eligible: list[SiteState]) -> None:
        names = shape[1]
        run_s = self.run_time(job)
        seen = self.blocked.get(shape)
        if seen is not None and run_s >= seen[0]:
            self.result.reasons[job.id] = seen[1]
            return
        ends = self.index.now + run_s
        found_capacity = False
        best: _Candidate | None = None
        blocker = ""
        for pref, acc in enumerate(options(job)):
            for static, site, pool in self._site_order(job, acc, eligible, names):
                if best is not None and (pref, *static) > best.key[: 1 + len(static)]:
                    break  # sites are in order of their static score: none after this can win
                if acc is None:
                    nodes = self.index.pick_cpu(site, job.resources)
                elif pool is None:
                    continue
                else:
                    nodes = pool.pick(acc, job.resources)
                if nodes is None:
                    continue
                found_capacity = True
                why = self._reservation_blocks(site, acc, job, ends)
                if why:
                    blocker = blocker or why
                    continue
                cand = _Candidate(self._key(pref, static, site, acc, job, nodes), site, acc, nodes)
                if best is None or cand.key < best.key:
                    best = cand
            if best is not None:
                break  # an earlier GPU type in the job's list wins over any later one
        if best is not None:
            self._place(job, best, ends)
            return
        if found_capacity:
            self.blocked[shape] = (run_s, blocker)
            self.result.reasons[job.id] = blocker
            return
        self.cap_fail.add(shape)
        self.waiting.append((job, names))
        if not self.rules and job.tenant not in self.with_quota:
            self.failed_class[job.class_key] = (job, names, [])
        self._reserve_or_preempt(job, eligible)

    def _reservation_blocks(self, site: SiteState, acc: Accelerator | None, job: PendingJob, ends: float) -> str:
        if acc is None:
            return ""
        pool = self.index.pool(site.name, acc.type)
        if pool is None or pool.reservation is None:
            return ""
        start, spare, holder = pool.reservation
        if gpus_needed(job, acc) <= spare:
            return ""
        if holder in self.hard:
            return (
                f"waiting behind job {holder}, which has waited past its starvation bound and has {acc.type} at "
                f"{site.name} reserved from ~{fmt_time(start)}; nothing that needs those GPUs passes it"
            )
        if ends <= start:
            return ""
        return (
            f"waiting behind job {holder}, which has {acc.type} at {site.name} reserved from ~{fmt_time(start)}; "
            f"this job would run past that (backfill needs it to end first)"
        )

    def _site_order(
        self, job: PendingJob, acc: Accelerator | None, eligible: Sequence[SiteState], names: tuple[str, ...]
    ) -> list[tuple[tuple[float, ...], SiteState, Pool | None]]:
        """Eligible sites by the part of their score that does not depend on free capacity
        (price and latency as ``optimize`` weighs them), then name; cached per pass."""
        home = job.home_region
        key = (job.optimize, acc.type if acc else None, home, names)
        hit = self._orders.get(key)
        if hit is not None:
            return hit
        prices = [self.price(s, acc) for s in eligible]
        lats = [s.latency_ms.get(home, 0.0) if home else 0.0 for s in eligible]
        top_p, top_l = max(prices, default=0.0) or 1.0, max(lats, default=0.0) or 1.0
        statics: list[tuple[tuple[float, ...], SiteState, Pool | None]] = []
        for site, price, lat in zip(eligible, prices, lats, strict=True):
            p, la = round(price, 9), round(lat, 9)
            if job.optimize == "cost":
                static: tuple[float, ...] = (p, la)
            elif job.optimize == "latency":
                static = (la, p)
            elif job.optimize == "time":
                static = ()
            else:
                static = (round(price / top_p + lat / top_l, 9),)
            statics.append((static, site, self.index.pool(site.name, acc.type) if acc else None))
        statics.sort(key=lambda st: (st[0], st[1].name))
        self._orders[key] = statics
        return statics

    def _key(
        self,
        pref: int,
        static: tuple[float, ...],
        site: SiteState,
        acc: Accelerator | None,
        job: PendingJob,
        nodes: list[FreeNode],
    ) -> tuple[object, ...]:
        """(type preference, static score, least left over (best fit), [time: price, latency], name)."""
        if acc is None:
            leftover = sum(n.cpus for n in nodes) - job.resources.cpus * len(nodes)
        else:
            leftover = float(sum(len(n.free) for n in nodes) - acc.count * len(nodes))
        if job.optimize == "time":
            lat = site.latency_ms.get(job.home_region, 0.0) if job.home_region else 0.0
            return (pref, leftover, round(self.price(site, acc), 9), round(lat, 9), site.name)
        return (pref, *static, leftover, site.name)

    def _place(self, job: PendingJob, cand: _Candidate, ends: float) -> None:
        placement = self.index.commit(job.id, cand.site.name, cand.acc, job.resources, cand.nodes, ends)
        self.result.placements.append(placement)
        need = gpus_needed(job, cand.acc)
        self._hold(job.tenant, cand.site.name, need)
        if cand.acc is not None:
            pool = self.index.pool(cand.site.name, cand.acc.type)
            if pool is not None and pool.reservation is not None and ends > pool.reservation[0]:
                start, spare, holder = pool.reservation
                pool.reservation = (start, spare - need, holder)

    def _reserve_or_preempt(self, job: PendingJob, eligible: Sequence[SiteState]) -> None:
        if not job.resources.accelerators or self.reserve_tries >= self.policy.max_reservations:
            return
        self.reserve_tries += 1
        best: tuple[float, int, str, Accelerator] | None = None
        for pref, acc in enumerate(job.resources.accelerators):
            for site in eligible:
                at = self.index.earliest_start(site.name, acc, job.resources)
                if at is not None and (best is None or (at, pref, site.name) < best[:3]):
                    best = (at, pref, site.name, acc)
        if best is not None:
            at, _, site_name, acc = best
            pool = self.index.pool(site_name, acc.type)
            if pool is not None and pool.reservation is None:
                spare = self.index.free_at(pool, at) - gpus_needed(job, acc) if self.policy.backfill else -1
                pool.reservation = (at if self.policy.backfill else self.index.now, spare, job.id)
                if self.starving(job):
                    self.hard.add(job.id)
                self.result.reservations[job.id] = (site_name, at_datetime(at, self.now.tzinfo))
        if not self.policy.preemption or (best is not None and best[0] <= self.index.now + self.policy.preempt_after_s):
            return
        plan = plan_preemption(job, eligible, self.index, self.policy, self.fair, self.preempting, self.known(job))
        if plan is not None:
            self.preempting.update(p.victim for p in plan)
            self.result.preemptions.extend(plan)
            names = ", ".join(p.victim for p in plan)
            self.result.reasons[job.id] = (
                f"preempting {len(plan)} job(s) at {plan[0].site} ({names}); it starts when they stop"
            )

    def finish(self) -> ScheduleResult:
        reasons = self.result.reasons
        # Eligible-site tuples are shared between the jobs of a class, so their ids are keys.
        seen: dict[tuple[int, int], str] = {}
        for job, eligible in self.waiting:
            if job.id in reasons:
                continue
            key = (job.shape_key, id(eligible))
            text = seen.get(key) if eligible else None
            if text is None:
                text = self.guarded(job, partial(self.explainer.wait_reason, job, eligible))
                if eligible and text is not None:
                    seen[key] = text
            if text is not None:
                reasons[job.id] = text
        for job, eligible, ids in self.failed_class.values():
            if ids:
                text = self.guarded(job, partial(self.explainer.wait_reason, job, eligible))
                reasons.update(dict.fromkeys(ids, text if text is not None else reasons[job.id]))
        return self.result

    def guarded(self, job: PendingJob, compute: Callable[[], str]) -> str | None:
        """``compute()``, or None when it raised: then the job alone gets a reason that says so
        (and ``errors`` the error), and the pass goes on with the others."""
        try:
            return compute()
        except Exception as exc:  # one bad job (a stored row from before a bound) never stops a pass
            self.fail(job, exc)
            return None

    def fail(self, job: PendingJob, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.result.errors[job.id] = error
        self.result.reasons[job.id] = f"{CANNOT_SCHEDULE}{error}; cancel it and submit it again (see the server log)"


def schedule(
    jobs: Iterable[PendingJob],
    sites: Sequence[SiteState],
    now: datetime,
    *,
    policy: Policy | None = None,
    tenants: Mapping[str, TenantShare] | None = None,
    rules: Sequence[SiteRule] = (),
    explain: bool = True,
) -> ScheduleResult:
    """Place what fits now; reserve, backfill and preempt per ``policy``. Does not mutate its
    inputs. Every job not placed gets a reason in words; one whose computation raises gets
    ``cannot be scheduled: <error>`` (and an entry in ``errors``), and the pass goes on.
    ``explain=False`` (the simulator, which reads only placements and preemptions) leaves out
    the reasons of the jobs that simply wait; the decisions are the same."""
    policy = policy or Policy()
    tenants = dict(tenants or {})
    with _gc_paused():
        queue = list(jobs)
        fair = shares(tenants, {j.tenant for j in queue})
        run = _Pass(sites, now, policy, tenants, fair, rules)
        failed, quota = run.failed_class, run.with_quota
        for job in ordered(queue, now, policy, fair, tenants):
            # Inlined fast path of consider(): most of a big queue is jobs of a class that
            # already found no capacity this pass.
            entry = failed.get(job.class_key) if not rules and job.tenant not in quota else None
            if entry is not None:
                entry[2].append(job.id)
                continue
            try:
                run.consider(job)
            except Exception as exc:  # one bad job (a stored row from before a bound) never stops a pass
                run.fail(job, exc)
        return run.finish() if explain else run.result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A pass allocates few cycles but walks ~100,000 live objects; the cyclic collector
    scanning them again and again would double its time. Nothing else changes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


__all__ = ["schedule", "site_filter_reason"]
