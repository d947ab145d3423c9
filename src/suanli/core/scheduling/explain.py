"""Why a job waits, and what each site offers it, in words."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from suanli.core.resources import Accelerator
from suanli.core.scheduling.index import CapacityIndex, at_datetime, fmt_time
from suanli.core.scheduling.model import EPS, NodeState, PendingJob, SiteRule, SiteState
from suanli.core.spec import Resources


def price_at(site: SiteState, acc: Accelerator | None, now: datetime) -> float | None:
    if acc is None or site.tariff is None:
        return None
    return site.tariff.gpu_price(acc.type, site.tariff.local_hour(now))


def _options(res: Resources) -> list[Accelerator | None]:
    return list(res.accelerators) if res.accelerators else [None]


def _want(acc: Accelerator | None, res: Resources) -> str:
    per_node = f"{acc.count} × {acc.type}" if acc else f"{res.cpus:g} CPUs"
    return f"{res.num_nodes} nodes × {per_node}" if res.num_nodes > 1 else per_node


def _named(site: str, why: str) -> str:
    """``site: why``, or ``why`` alone when it names the site already ("tj runs no containers")."""
    return why if why.startswith(f"{site} ") else f"{site}: {why}"


def site_filter_reason(job: PendingJob, site: SiteState, now: datetime) -> str | None:
    """Why this site can never be chosen for this job by policy (not capacity), or None."""
    if job.image is not None and not site.containers:
        return f"{site.name} runs no containers (the job runs in image {job.image})"
    if job.regions and site.region not in job.regions:
        return f"region {site.region} is not in placement.regions ({', '.join(job.regions)})"
    if job.max_latency_ms is not None and job.home_region:
        latency = site.latency_ms.get(job.home_region)
        if latency is None:
            return f"latency from {job.home_region} is not declared"
        if latency > job.max_latency_ms + EPS:
            return f"{latency:g} ms from {job.home_region} is over max_latency_ms {job.max_latency_ms:g}"
    if job.max_price_per_gpu_hour is not None and job.resources.accelerators and site.tariff is not None:
        prices = [price_at(site, a, now) for a in job.resources.accelerators]
        known = [p for p in prices if p is not None]
        if known and min(known) > job.max_price_per_gpu_hour + EPS:
            return f"{min(known):g} CNY/GPU-hour now is over max_price_per_gpu_hour {job.max_price_per_gpu_hour:g}"
    return None


class Explainer:
    """Per-pass helper: which sites a job may use (cached by what that depends on) and, at the
    end of the pass, why a job that found no capacity waits (cached by shape)."""

    def __init__(self, index: CapacityIndex, now: datetime, rules: Sequence[SiteRule] = ()) -> None:
        self.index, self.now, self.rules = index, now, rules
        self._eligible: dict[object, tuple[list[SiteState], list[str]]] = {}
        self._reasons: dict[object, str] = {}
        self._down_nodes: dict[str, list[NodeState]] = {}
        #: id of a cached allowed-list (they live as long as this object) → its online part.
        self._online: dict[int, tuple[list[SiteState], tuple[str, ...]]] = {}

    def _filter(self, job: PendingJob) -> tuple[list[SiteState], list[str]]:
        key: object = (job.filter_key, job.tenant, job.datasets) if self.rules else job.filter_key
        hit = self._eligible.get(key)
        if hit is None:
            ok: list[SiteState] = []
            filtered: list[str] = []
            for site in self.index.sites:
                why = site_filter_reason(job, site, self.now)
                for rule in self.rules:
                    why = why or rule(job, site)
                if why:
                    filtered.append(_named(site.name, why))
                else:
                    ok.append(site)
            hit = self._eligible[key] = (ok, filtered)
        return hit

    def eligible(self, job: PendingJob) -> list[SiteState]:
        """Online sites that policy and data rules allow for this job."""
        return self.eligible_named(job)[0]

    def eligible_named(self, job: PendingJob) -> tuple[list[SiteState], tuple[str, ...]]:
        """:meth:`eligible`, with the names as a tuple (a cache key)."""
        allowed = self._filter(job)[0]
        hit = self._online.get(id(allowed))
        if hit is None:
            online = [s for s in allowed if s.online]
            hit = self._online[id(allowed)] = (online, tuple(s.name for s in online))
        return hit

    def wait_reason(self, job: PendingJob, eligible: tuple[str, ...]) -> str:
        scope: object = eligible if eligible else (job.filter_key, job.tenant, job.datasets)
        key = (job.shape_key, scope)
        hit = self._reasons.get(key)
        if hit is None:
            hit = self._reasons[key] = self._wait_reason(job)
        return hit

    def _could_ever(self, site: SiteState, acc: Accelerator | None, res: Resources) -> bool:
        if acc is None:
            return any(n.could_ever_fit(None, res.cpus, res.memory) for n in site.nodes)
        pool = self.index.pool(site.name, acc.type)
        return pool is not None and any(
            g >= acc.count and c + EPS >= res.cpus and m + EPS >= res.memory for g, c, m in pool.shapes
        )

    def _wait_reason(self, job: PendingJob) -> str:
        res = job.resources
        options = _options(res)
        want = " or ".join(_want(a, res) for a in options)
        allowed, filtered = self._filter(job)
        candidates = [s for s in allowed if any(self._could_ever(s, a, res) for a in options)]
        if not candidates:
            if filtered:
                return f"no site may take it: {'; '.join(filtered)}"
            return f"no site has nodes that can hold {want}"
        online = [s for s in candidates if s.online]
        if not online:
            return f"every site that can hold {want} is offline ({', '.join(s.name for s in candidates)})"
        best_free: tuple[int, str, str] | None = None
        soonest: tuple[float, str, str] | None = None
        for site in online:
            for acc in options:
                if acc is None:
                    continue
                pool = self.index.pool(site.name, acc.type)
                if pool is None or not pool.nodes:
                    continue
                free = pool.free_gpus() if res.num_nodes > 1 else pool.largest_free()
                if best_free is None or free > best_free[0]:
                    best_free = (free, acc.type, site.name)
                at = self.index.frees_at(pool, acc.count, res.num_nodes)
                if at is not None and (soonest is None or at < soonest[0]):
                    soonest = (at, site.name, f"{acc.count * res.num_nodes} × {acc.type}")
        down = [
            f"{n.name} {n.unschedulable_reason}".strip()
            for s in online
            for n in self._down(s)
            if any(n.could_ever_fit(a, res.cpus, res.memory) for a in options)
        ]
        text = f"no site has {want} free"
        if best_free is not None and best_free[0] > 0:
            text += f"; largest free is {best_free[0]} × {best_free[1]} at {best_free[2]}"
        elif best_free is not None:
            text += f"; every {best_free[1]} is in use"
        if soonest is not None and soonest[0] > self.index.now:
            text += f"; {soonest[1]} frees {soonest[2]} at ~{fmt_time(soonest[0])}"
        elif res.accelerators or down:
            text += "; running jobs there have no time limit, so no estimate of when"
        if down:
            text += f"; unavailable: {', '.join(down[:3])}"
        return text

    def _down(self, site: SiteState) -> list[NodeState]:
        hit = self._down_nodes.get(site.name)
        if hit is None:
            hit = self._down_nodes[site.name] = [n for n in site.nodes if not n.schedulable]
        return hit


def explain_wait(job: PendingJob, sites: Sequence[SiteState], now: datetime) -> str:
    """One sentence (or two) on why ``job`` cannot start now."""
    explainer = Explainer(CapacityIndex(sites, now, 0.0), now)
    names = tuple(s.name for s in explainer.eligible(job))
    return explainer.wait_reason(job, names)


@dataclass(frozen=True)
class SiteVerdict:
    """What one site offers a job: whether it may run there at all, when it could start, at what
    price and latency, and the sentence that says so."""

    site: str
    allowed: bool
    fits_now: bool
    start_at: datetime | None
    price_per_gpu_hour: float | None
    latency_ms: float | None
    text: str


def explain_sites(
    job: PendingJob,
    sites: Sequence[SiteState],
    now: datetime,
    rules: Sequence[SiteRule] = (),
    index: CapacityIndex | None = None,
) -> list[SiteVerdict]:
    """Per site, why it was or was not chosen for ``job`` (sites in name order). ``index``: one
    built over ``sites`` at ``now`` already, to share between many jobs."""
    index = index or CapacityIndex(sites, now, 0.0)
    res = job.resources
    out: list[SiteVerdict] = []
    for site in index.sites:
        latency = site.latency_ms.get(job.home_region) if job.home_region else None
        why = site_filter_reason(job, site, now)
        for rule in rules:
            why = why or rule(job, site)
        types = sorted({n.gpu_type for n in site.nodes if n.gpu_type})
        if why is None and res.accelerators and not any(a.type in types for a in res.accelerators):
            wanted = " or ".join(a.type for a in res.accelerators)
            why = f"{', '.join(types) or 'no GPU'} does not match {wanted}"
        if why is None and not any(
            n.could_ever_fit(a, res.cpus, res.memory) for a in _options(res) for n in site.nodes
        ):
            why = f"no node can hold {' or '.join(_want(a, res) for a in _options(res))}"
        if why is None and not site.online:
            why = "offline (no heartbeat from its agent)"
        if why is not None:
            out.append(SiteVerdict(site.name, False, False, None, None, latency, _named(site.name, why)))
            continue
        best: tuple[float, Accelerator | None] | None = None
        for acc in _options(res):
            if acc is None:
                fits = index.pick_cpu(site, res) is not None
                at: float | None = index.now if fits else None
            else:
                at = index.earliest_start(site.name, acc, res)
            if at is not None and (best is None or at < best[0]):
                best = (at, acc)
        acc = best[1] if best else (res.accelerators[0] if res.accelerators else None)
        price = price_at(site, acc, now)
        what = _want(acc, res)
        if best is None:
            when = "busy; running jobs have no time limit, so no estimate of when it frees"
        elif best[0] <= index.now:
            when = f"{what} free now"
        else:
            when = f"{what} free at ~{fmt_time(best[0])}"
        parts = [when]
        if price is not None:
            parts.append(f"{price:g} CNY/GPU-h")
        if latency is not None:
            parts.append(f"{latency:g} ms from {job.home_region}")
        start = at_datetime(best[0], UTC) if best else None
        fits_now = best is not None and best[0] <= index.now
        out.append(SiteVerdict(site.name, True, fits_now, start, price, latency, f"{site.name}: {', '.join(parts)}"))
    return out


def never_fits(res: Resources, sites: Sequence[SiteState], regions: Sequence[str] = ()) -> str | None:
    """If no site could hold this job even when empty, a message naming the largest fit."""
    all_nodes = [n for s in sites for n in s.nodes]
    if not all_nodes:
        return None
    scope = [s for s in sites if not regions or s.region in regions]
    if regions and not scope:
        known = sorted({s.region for s in sites})
        return f"no site is in regions {', '.join(regions)}; regions in this network: {', '.join(known)}"
    for acc in _options(res):
        for site in scope:
            if sum(1 for n in site.nodes if n.could_ever_fit(acc, res.cpus, res.memory)) >= res.num_nodes:
                return None
    parts: list[str] = []
    for acc in _options(res):
        if acc is None:
            biggest = max((n for s in scope for n in s.nodes), key=lambda n: (n.cpus_total, n.memory_total))
            parts.append(
                f"the largest node has {biggest.cpus_total:g} CPUs and {biggest.memory_total:g} GiB ({biggest.name})"
            )
            continue
        typed = [(s, n) for s in scope for n in s.nodes if n.gpu_type == acc.type]
        if not typed:
            types = sorted({n.gpu_type for s in scope for n in s.nodes if n.gpu_type})
            parts.append(f"no site has {acc.type} (GPU types here: {', '.join(types) or 'none'})")
            continue
        big_site, big_node = max(typed, key=lambda sn: (sn[1].gpus_total, sn[1].cpus_total, sn[0].name))
        per_site: dict[str, int] = {}
        for s, n in typed:
            per_site[s.name] = per_site.get(s.name, 0) + n.gpus_total
        top_site = max(sorted(per_site), key=lambda k: per_site[k])
        if acc.count > big_node.gpus_total:
            parts.append(
                f"the largest {acc.type} node has {big_node.gpus_total} GPUs ({big_node.name} at {big_site.name}); "
                f"the largest {acc.type} site is {top_site} with {per_site[top_site]}"
            )
        else:
            parts.append(
                f"{acc.type} nodes with {acc.count} GPUs, {res.cpus:g} CPUs and {res.memory:g} GiB: "
                f"not {res.num_nodes} at any one site (largest node {big_node.name}: {big_node.gpus_total} GPUs, "
                f"{big_node.cpus_total:g} CPUs, {big_node.memory_total:g} GiB)"
            )
    return f"no site can ever hold {res.describe()}: " + "; ".join(parts)
