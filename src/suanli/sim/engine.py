"""The discrete-event loop: arrivals, completions and scheduling passes over a network.

Scheduling happens on a grid of ``interval_s`` (60 s, as the Pollux artifact; 0 schedules at
every event), and only at grid points where something happened. Each pass asks the policy
what to offer and calls the same :func:`suanli.core.scheduler.schedule` as the live server.
Before the call, jobs that cannot fit in what is free at the start of the pass are left out,
and of each request shape no more are offered than could fit: the scheduler only takes
capacity away as it goes, so this changes no placement, and it keeps a pass cheap when
thousands wait.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from suanli.core import metering
from suanli.core.lifecycle import decide_retry
from suanli.core.network import NetworkSpec
from suanli.core.resources import Accelerator
from suanli.core.scheduler import NodeState, PendingJob, SiteState, never_fits, schedule
from suanli.core.scheduler import Policy as CorePolicy
from suanli.core.spec import Priority, Resources
from suanli.core.states import AttemptState
from suanli.sim.costs import owned_capacity
from suanli.sim.holdings import Holdings
from suanli.sim.policies import BASELINE_CORE, Policy
from suanli.sim.speed import SpeedModel
from suanli.sim.state import DEFAULT_EPOCH, SimJob, SimResult
from suanli.sim.trace import Trace, TraceJob
from suanli.sim.waiting import Shape, Waiting, shape_key


@dataclass
class _Site:
    state: SiteState


class Simulation:
    def __init__(
        self,
        trace: Trace,
        network: NetworkSpec,
        policy: Policy,
        speed: SpeedModel,
        interval_s: float = 60.0,
        on_progress: Callable[[int, int], None] | None = None,
        optimize: str = "balanced",
    ) -> None:
        self.policy, self.speed, self.interval = policy, speed, interval_s
        self.on_progress = on_progress
        #: Every job's ``placement.optimize`` (what to favour among the sites that fit).
        self.optimize = optimize
        self.epoch = trace.epoch or DEFAULT_EPOCH
        self.dated = trace.epoch is not None
        self.sites: dict[str, _Site] = {}
        self.nodes: dict[str, NodeState] = {}
        self.site_of: dict[str, str] = {}
        for decl in network.sites:
            nodes = [
                NodeState(
                    n.name, n.gpu_type, n.gpu_count, n.cpus, n.memory, tuple(range(n.gpu_count)), n.cpus, n.memory
                )
                for n in decl.node_decls()
            ]
            state = SiteState(
                decl.name,
                decl.region,
                nodes,
                latency_ms=dict(decl.latency_ms),
                tariff=decl.tariff,
                containers=decl.runs_containers,
            )
            self.sites[decl.name] = _Site(state)
            for n in nodes:
                self.nodes[n.name], self.site_of[n.name] = n, decl.name
        self.total_gpus = sum(n.gpus_total for n in self.nodes.values())
        #: (site, GPU type) → GPUs owned and their price per GPU-hour; → busy GPU-seconds.
        self.owned = owned_capacity(network)
        self.busy_gpu_s: dict[tuple[str, str], float] = dict.fromkeys(self.owned, 0.0)
        # Trace jobs take any GPU type, preferring them in the order the network file declares them.
        self.gpu_types = list(dict.fromkeys(n.gpu_type for n in self.nodes.values() if n.gpu_type))
        self.node_cap = max((n.gpus_total for n in self.nodes.values()), default=0)
        self.regions = set(network.regions) | {s.region for s in network.sites}
        self.sites_in: dict[str, list[str]] = {}
        for decl in network.sites:
            self.sites_in.setdefault(decl.region, []).append(decl.name)
        self.core_policy = CorePolicy.from_decl(network.scheduling) if policy.suanli else BASELINE_CORE
        self.tenant_decls = {t.name: t for t in network.tenants}
        self.quotas = any(t.max_gpus is not None or t.max_gpus_per_site is not None for t in network.tenants)
        #: What the server would know of running and past work (suanli's own policy only).
        self.books = Holdings(self.core_policy, self.epoch, self.tenant_decls, self.sites)
        self.site_tenants = self.books.site_tenants
        self.force_pass = False
        cp = self.core_policy
        self.las_preemption = policy.suanli and cp.preemption and cp.las_preemption and cp.order == "las"
        #: site → (when a running job's attained service reaches the first LAS threshold, its
        #: run id, its index): who could be preempted for shorter work, and from when.
        self.crossing: dict[str, list[tuple[float, int, int]]] = {name: [] for name in self.sites}
        self.jobs = [self._make_job(i, tj) for i, tj in enumerate(trace.jobs)]
        self.by_id = {j.trace.id: j for j in self.jobs}
        self.busy = 0
        self.timeline: list[tuple[float, int, int]] = []

    # -- requests ------------------------------------------------------------------------

    def _shape(self, tj: TraceJob) -> tuple[int, int]:
        """GPUs → (per node, nodes): one node when it fits, else the fewest equal nodes."""
        g = tj.gpus
        if g <= self.node_cap or self.node_cap == 0:
            return g, 1
        for k in range(2, g + 1):
            if g % k == 0 and g // k <= self.node_cap:
                return g // k, k
        return 1, g

    def _make_job(self, index: int, tj: TraceJob) -> SimJob:
        per_node, num_nodes = self._shape(tj)
        accs = [Accelerator(t, per_node) for t in self.gpu_types] if tj.gpus else []
        res = Resources.model_construct(accelerators=accs, cpus=tj.cpus, memory=tj.memory_gib, num_nodes=num_nodes)
        regions = (tj.tenant,) if tj.tenant in self.regions else ()
        submitted = self.epoch + timedelta(seconds=tj.submit_s)
        priority = Priority(tj.priority)
        pending = PendingJob(
            tj.id,
            index,
            res,
            priority=priority,
            regions=regions,
            tenant=tj.tenant,
            submitted_at=submitted,
            optimize=self.optimize,
            name=tj.application,
        )
        total = self.speed.total(tj)
        full = tuple([per_node] * num_nodes)
        size = self.speed.time_to_finish(tj, 0.0, full) if tj.gpus else total
        return SimJob(index, index, tj, pending, total, size, priority_rank=priority.rank)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> SimResult:
        arrivals = sorted(self.jobs, key=lambda j: (j.trace.submit_s, j.seq))
        heap: list[tuple[float, int, int]] = []
        self.running: dict[int, SimJob] = {}
        self.queue = Waiting()
        self.dynamic = self.queue.dynamic
        self.refused: list[SimJob] = []
        self.failed: list[SimJob] = []
        #: (not before, job index) of jobs backing off after a fault.
        self.backoff: list[tuple[float, int]] = []
        self.heap = heap
        self._never: dict[tuple[object, ...], bool] = {}
        done, ptr, now, passes = 0, 0, -math.inf, 0
        n = len(arrivals)
        step = max(1, n // 200)
        while done + len(self.refused) + len(self.failed) < n:
            tick = self._next_tick(now, heap, arrivals[ptr].trace.submit_s if ptr < n else None)
            while heap and heap[0][0] <= tick + 1e-9:
                end, run_id, idx = heapq.heappop(heap)
                job = self.jobs[idx]
                if job.run_id != run_id:
                    continue
                if self._end(job, end):
                    done += 1
                    if self.on_progress and done % step == 0:
                        self.on_progress(done, n)
            while self.backoff and self.backoff[0][0] <= tick + 1e-9:
                self._enqueue(self.jobs[heapq.heappop(self.backoff)[1]])
            while ptr < n and arrivals[ptr].trace.submit_s <= tick + 1e-9:
                self._admit(arrivals[ptr])
                ptr += 1
            now = tick
            passes += 1
            self.force_pass = False
            for job in self._pass(now):
                heapq.heappush(heap, (self._start(job, now), job.run_id, job.index))
            self.timeline.append((now, self.busy, self.queue.count))
        if self.on_progress:
            self.on_progress(n, n)
        finished = [j for j in self.jobs if j.finish is not None]
        result = SimResult(self.policy.name, finished, self.refused, self.total_gpus, self.timeline, self.epoch, passes)
        result.failed, result.owned, result.busy_gpu_s = self.failed, self.owned, self.busy_gpu_s
        result.dated = self.dated
        return result

    def _next_tick(self, now: float, heap: list[tuple[float, int, int]], arrival: float | None) -> float:
        """The next grid point at which something happens: an arrival, an end, a policy wake-up."""
        while heap and self.jobs[heap[0][2]].run_id != heap[0][1]:
            heapq.heappop(heap)
        times = [] if arrival is None else [arrival]
        if heap:
            times.append(heap[0][0])
        if self.backoff:
            times.append(self.backoff[0][0])
        if self.force_pass:
            times.append(now + (self.interval or 1e-6))
        if self.queue.count and self.running:
            wake = self.policy.wakeup(list(self.running.values()), max(now, 0.0))
            if wake is not None:
                times.append(wake)
        if not times:
            raise RuntimeError("the simulation stalled: jobs wait but nothing can ever free capacity")
        t = min(times)
        tick = math.ceil(t / self.interval - 1e-9) * self.interval if self.interval > 0 else t
        return tick if tick > now else now + (self.interval or 1e-6)

    def _admit(self, job: SimJob) -> None:
        """Queue an arriving job, or refuse it when no site could ever hold it (as the server does)."""
        res = job.pending.resources
        key = (tuple(res.accelerators), res.num_nodes, job.pending.regions)
        if key not in self._never:
            sites = [s.state for s in self.sites.values()]
            self._never[key] = never_fits(res, sites, job.pending.regions) is not None
        if self._never[key]:
            self.refused.append(job)
        else:
            self._enqueue(job)

    # -- queues --------------------------------------------------------------------------

    def _enqueue(self, job: SimJob) -> None:
        self.queue.add(job, self.policy.sort_key(job))

    def _dequeue(self, job: SimJob) -> None:
        self.queue.remove(job, self.policy.sort_key(job))

    def _capacity(self, shape: Shape, free: dict[str, list[int]]) -> int:
        """How many jobs of this shape could at most start on what is free now."""
        per_node, num_nodes, regions, gpu = shape
        if not gpu:
            return 1 << 30
        slots = 0
        names = [n for r in regions for n in self.sites_in.get(r, ())] if regions else list(self.sites)
        for name in names:
            if name not in free:
                free[name] = [len(n.free_gpus) for n in self.sites[name].state.nodes if n.schedulable and n.free_gpus]
            counts = [f // per_node for f in free[name] if f >= per_node]
            if len(counts) >= num_nodes:
                slots += sum(counts) // num_nodes
        return slots

    def _offer(self, now: float) -> tuple[list[SimJob], bool, bool]:
        """The jobs to offer, best first; whether to backfill; whether the offer is the whole
        (dynamic) queue, in queue order."""
        running = list(self.running.values())
        if self.dynamic:
            queue = list(self.dynamic.values())
            decision = self.policy.decide(queue, running, now, self.total_gpus)
            for job in decision.preempt:
                self._stop(job, now, finished=False)
                self._enqueue(job)
            whole = decision.offer is queue and not decision.preempt
            return decision.offer, decision.backfill, whole
        backfill = self.policy.decide([], running, now, self.total_gpus).backfill
        free: dict[str, list[int]] = {}
        caps = {shape: self._capacity(shape, free) for shape, bucket in self.queue.buckets.items() if bucket}
        picked: list[tuple[tuple[float, ...], int]] = []
        for shape, cap in caps.items():
            picked.extend(self.queue.buckets[shape][: cap + (0 if backfill else 1)])
        picked.sort()
        offer = [self.jobs[i] for _, i in picked]
        if not backfill:  # the first job that cannot fit blocks the rest
            kept: list[SimJob] = []
            for job in offer:
                shape = shape_key(job)
                if caps[shape] <= 0:
                    break
                caps[shape] -= 1
                kept.append(job)
            offer = kept
        return offer, backfill, False

    def _pass(self, now: float) -> list[SimJob]:
        offer, backfill, whole = self._offer(now)
        if not offer:
            return []
        suanli = self.policy.suanli
        if suanli and not self._could_act(offer, now):
            return []
        # What the offer holds (read from the queue's counts when it is the whole queue).
        q = self.queue
        gpu_only = q.cpu_only == 0 if whole else all(j.pending.resources.accelerators for j in offer)
        sites = []
        # Sites no offered job may use (placement.regions) cannot change this pass, unless a
        # tenant's network-wide quota counts GPUs held there.
        wanted: set[str] | None = None
        if self.quotas:
            pass
        elif whole:
            wanted = q.dynamic_regions()
        elif all(j.pending.regions for j in offer):
            wanted = {r for j in offer for r in j.pending.regions}
        if suanli:
            in_offer = q.dynamic_tenants() if whole else {j.trace.tenant for j in offer}
            tenants = self.books.tenants(now, in_offer)
        else:
            tenants = None
        for name, site in self.sites.items():
            if wanted is not None and site.state.region not in wanted:
                continue
            if tenants is not None:
                sites.append(replace(site.state, allocations=self.books.site_allocations(name, tenants)))
                continue
            nodes = [n for n in site.state.nodes if n.free_gpus or not gpu_only]
            if nodes:
                sites.append(replace(site.state, nodes=nodes, allocations=[]))
        when = self.epoch + timedelta(seconds=now)
        ranked = [j.pending for j in offer] if suanli else [replace(j.pending, seq=r) for r, j in enumerate(offer)]
        result = schedule(ranked, sites, when, policy=self.core_policy, tenants=tenants, explain=False)
        by_id = {p.job_id: p for p in result.placements}
        if whole and backfill:  # the placed jobs in offer order, without walking the offer
            chosen = sorted((self.by_id[i] for i in by_id), key=lambda j: j.queued_no)
        else:
            chosen = []
            for job in offer:
                if job.trace.id in by_id:
                    chosen.append(job)
                elif not backfill:
                    break
        started: list[SimJob] = []
        for job in chosen:
            placement = by_id[job.trace.id]
            job.site = placement.site
            job.nodes = [(a.node, a.gpu_indices) for a in placement.nodes]
            for a in placement.nodes:
                node = self.nodes[a.node]
                node.free_gpus = tuple(g for g in node.free_gpus if g not in a.gpu_indices)
                node.cpus_free -= a.cpus
                node.memory_free -= a.memory
            started.append(job)
        # Attempts start in the order the scheduler placed them, as the server creates them: the
        # attempt order ranks the run-time history estimates are taken from.
        rank = {p.job_id: i for i, p in enumerate(result.placements)}
        started.sort(key=lambda j: rank[j.trace.id])
        for p in result.preemptions:
            victim = self.by_id.get(p.victim)
            if victim is not None and victim.placement is not None and not victim.stopping:
                self._preempt(victim, now)
        return started

    def _could_act(self, offer: list[SimJob], now: float) -> bool:
        """Whether a pass could start or preempt anything. A job starts only where its GPUs are
        free now (reservations only hold it back further); it preempts only if it is ``high``
        or another tenant runs at a site it may use. When neither holds for any offered job,
        the scheduler's answer is "wait" for all, and the call is skipped."""
        free: dict[str, list[int]] = {}
        seen: set[tuple[object, ...]] = set()
        for job in offer:
            # (Jobs of one key may differ in LAS queue: a requeued job has had service.)
            queue = self.core_policy.las_queue(job.pending.attained_gpu_s) if self.las_preemption else 0
            key = (shape_key(job), job.trace.tenant, job.pending.priority, queue)
            if key in seen:
                continue
            seen.add(key)
            if not job.pending.resources.accelerators or self._capacity(key[0], free) > 0:
                return True
            if self.core_policy.preemption:
                if job.pending.priority == Priority.HIGH:
                    return True
                regions = job.pending.regions
                names = [n for r in regions for n in self.sites_in.get(r, ())] if regions else list(self.sites)
                if any(t != job.trace.tenant for n in names for t, c in self.site_tenants[n].items() if c):
                    return True
                if self.las_preemption and self._longer_runs(job, names, now):
                    return True
        return False

    def _longer_runs(self, job: SimJob, names: list[str], now: float) -> bool:
        """Whether a job at one of the sites ``names`` may be in a later LAS queue than ``job``
        (so that ``job`` could preempt it for shorter work)."""
        thresholds = self.core_policy.las_thresholds_gpu_s
        queue = self.core_policy.las_queue(job.pending.attained_gpu_s)
        if queue >= len(thresholds):
            return False
        if queue > 0:
            return any(self.site_tenants[n].get(t) for n in names for t in self.site_tenants[n])
        for name in names:
            heap = self.crossing[name]
            while heap and self.jobs[heap[0][2]].run_id != heap[0][1]:
                heapq.heappop(heap)
            if heap and heap[0][0] <= now + 1e-9:
                return True
        return False

    # -- runs ----------------------------------------------------------------------------

    def _start(self, job: SimJob, now: float) -> float:
        """Start an attempt; returns when it ends: done, or at the job's next fault."""
        self._dequeue(job)
        job.placement = tuple(len(g) for _, g in job.nodes)
        job.run_start, job.run_id = now, job.run_id + 1
        job.ran_at = job.site
        if job.first_start is None:
            job.first_start = now
        else:
            job.restarts += 1
        self.running[job.index] = job
        self.busy += sum(job.placement)
        if self.policy.suanli:
            self.books.hold(job, self._gpu_type(job), now)
        if self.las_preemption and job.site is not None and self.core_policy.las_thresholds_gpu_s:
            gpus = sum(job.placement) or 1
            first = self.core_policy.las_thresholds_gpu_s[0]
            at = now + max(first - job.attained_gpu_s, 0.0) / gpus
            heapq.heappush(self.crossing[job.site], (at, job.run_id, job.index))
        run = self.speed.restart_s + self.speed.time_to_finish(job.trace, job.progress, job.placement)
        faults = job.trace.faults
        job.ends_as = "done"
        if job.faults_met < len(faults) and faults[job.faults_met] < run:
            run, job.ends_as = faults[job.faults_met], "fault"
        job.ends_at = now + run
        return job.ends_at

    def _end(self, job: SimJob, end: float) -> bool:
        """The current attempt ends as ``job.ends_as``; True when the job is done."""
        how = job.ends_as
        if how == "fault":
            job.faults_met += 1
            # A fault during a preemption's grace ends the attempt as preempted, as the server
            # records it (``core.lifecycle.apply_report``: the stop order's outcome wins).
            how = "preempted" if job.stopping else "fault"
        self._stop(job, end, finished=how == "done", preempted=how == "preempted")
        job.preempted += how == "preempted"
        if how == "done":
            return True
        self._requeue(job, end, fault=how == "fault")
        return False

    def _preempt(self, job: SimJob, now: float) -> None:
        """SIGTERM now; the attempt ends after the policy's grace (unless it ends sooner)."""
        job.stopping = True
        self.books.stopping(job)
        self.force_pass = True
        at = now + self.core_policy.preempt_grace_s
        if at < job.ends_at:
            job.ends_at, job.ends_as = at, "preempted"
            heapq.heappush(self.heap, (at, job.run_id, job.index))

    def _requeue(self, job: SimJob, now: float, fault: bool) -> None:
        """A new attempt while retries last (after the back-off, for a fault), else FAILED: the
        server's decision (:func:`suanli.core.lifecycle.decide_retry`)."""
        if self.policy.suanli:  # least attained service orders by what its attempts held
            job.pending = replace(job.pending, attained_gpu_s=job.attained_gpu_s)
        ended = AttemptState.LOST if fault else AttemptState.PREEMPTED
        when = self.epoch + timedelta(seconds=now)
        decision = decide_retry(ended, job.retries_used, job.trace.max_retries, when, self.core_policy)
        if not decision.retry:
            job.failed = True
            self.failed.append(job)
            return
        job.retries_used = decision.retries_used
        if decision.not_before is not None:
            job.not_before = (decision.not_before - self.epoch).total_seconds()
            heapq.heappush(self.backoff, (job.not_before, job.index))
        else:
            self._enqueue(job)

    def _gpu_type(self, job: SimJob) -> str | None:
        return self.nodes[job.nodes[0][0]].gpu_type if job.nodes else None

    def _stop(self, job: SimJob, end: float, finished: bool, preempted: bool = True) -> None:
        assert job.placement is not None
        assert job.site is not None
        gpus = sum(job.placement)
        ran = end - job.run_start
        if finished:
            job.progress, job.finish = job.total, end
        else:
            useful = max(0.0, ran - self.speed.restart_s)
            job.progress = self.speed.advance(job.trace, job.progress, job.placement, useful)
        job.attained_gpu_s += gpus * ran
        job.gpu_s += gpus * ran
        if gpu_type := self._gpu_type(job):
            self.busy_gpu_s[(job.site, gpu_type)] += gpus * ran
        site = self.sites[job.site]
        if site.state.tariff is not None and end > job.run_start:
            res = job.pending.resources
            nodes = len(job.nodes)
            held = metering.Allocation(
                gpu_type, gpus, res.cpus * nodes, res.memory * nodes, job.pending.priority == Priority.LOW
            )
            start_at = self.epoch + timedelta(seconds=job.run_start)
            end_at = self.epoch + timedelta(seconds=end)
            job.cost_cny += float(metering.tariff_cost(site.state.tariff, start_at, end_at, held))
        if self.policy.suanli:
            self.books.release(job, gpu_type, end, succeeded=finished, preempted=preempted and not finished)
        for node_name, indices in job.nodes:
            node = self.nodes[node_name]
            node.free_gpus = tuple(sorted(node.free_gpus + indices))
            node.cpus_free += job.pending.resources.cpus
            node.memory_free += job.pending.resources.memory
        self.busy -= gpus
        del self.running[job.index]
        job.placement, job.site, job.nodes, job.run_id = None, None, [], job.run_id + 1
        job.stopping = False
        self.timeline.append((end, self.busy, self.queue.count))
