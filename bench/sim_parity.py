"""Simulator ↔ live server parity: one philly-82k excerpt through both, outcomes compared job by job.

(a) The live server: the real ControlPlane behind its HTTP API on a loopback port, its clock a
ManualClock, one real Agent per site with a FakeBackend. The driver submits each job at its
arrival time, ticks the scheduler on the simulator's 60 s grid (at each grid point where
something happened, as the simulator does), and ends each attempt on the manual clock after the
job's remaining trace duration; a preempted attempt uses its whole grace before it stops.
(b) ``suanli simulate``'s engine with the default policy on the same network and jobs.

The excerpt: ``--jobs`` consecutive philly jobs of at most 8 GPUs from row ``--skip``, their
virtual clusters as tenants (fair share), priorities drawn with ``--seed`` (preemption), and
some jobs meeting platform faults (retries with back-off; a few run out of retries).

    python bench/sim_parity.py [--traces ../shared/traces] [--jobs 320] [--seed 17] [--json]

Prints ``jobs`` (finished in both), ``same_site_fraction`` (the site of the last attempt),
``start_time_mae_s`` (first start), ``avg_jct_rel_diff`` ((sim − live) / live) and counts.
Targets: same_site_fraction ≥ 0.95 and |avg_jct_rel_diff| ≤ 0.05.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import random
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import func, select

from _harness import HERE, emit
from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.clock import ManualClock
from suanli.core.network import NodeDecl, parse_network
from suanli.core.spec import JobSpec
from suanli.core.states import AttemptState, JobState
from suanli.sdk import Client
from suanli.sdk.agent import SiteClient
from suanli.server.app import create_app
from suanli.sim.engine import Simulation
from suanli.sim.policies import make_policy
from suanli.sim.speed import MeasuredDuration
from suanli.sim.state import DEFAULT_EPOCH
from suanli.sim.trace import Trace, TraceJob, load_trace
from suanli.store.models import Attempt, Job

DEFAULT_TRACES = HERE.parent.parent / "shared" / "traces"
#: Where the excerpt starts: a busy afternoon (320 jobs in 7.7 h, 6 virtual clusters) that
#: oversubscribes the 28 GPUs below; the trace's first weeks hold few jobs, some running for weeks.
DEFAULT_SKIP = 40_000
INTERVAL_S = 60.0
#: The exit code a faulting attempt ends with; the jobs' specs retry it like a platform fault.
FAULT_EXIT = 75
GPU = "V100"
SITES = """\
regions: [north, east, west]
sites:
  - name: north
    region: north
    nodes: [{name: n-01, count: 2, gpus: V100:8, cpus: 64, memory: 512}]
    tariff: {gpu_hour: {V100: 12}, periods: [{hours: "08-22", factor: 1.5}]}
  - name: east
    region: east
    nodes: [{name: e-01, gpus: V100:8, cpus: 64, memory: 512}]
    tariff: {gpu_hour: {V100: 10}}
  - name: west
    region: west
    nodes: [{name: w-01, gpus: V100:4, cpus: 32, memory: 256}]
    tariff: {gpu_hour: {V100: 8}}
"""


@dataclass
class Outcome:
    """A job as one side ran it."""

    first_start: float | None = None
    site: str | None = None
    finish: float | None = None
    attempts: int = 0
    state: str = ""
    preempted: int = 0


def excerpt(path: Path, jobs: int, seed: int, skip: int = 0) -> Trace:
    """``jobs`` consecutive philly jobs of ≤ 8 GPUs from row ``skip``, with priorities and faults."""
    if not path.is_file():
        raise SystemExit(
            f"{path}: no such trace. The parity bench replays philly-82k from the shared traces folder "
            "(../shared/traces next to the repository); pass --traces DIR or --trace FILE."
        )
    trace = load_trace(f"philly:{path}")
    picked = [j for j in trace.jobs if j.gpus <= 8][skip : skip + jobs]
    rng = random.Random(seed)
    start = picked[0].submit_s if picked else 0.0
    out: list[TraceJob] = []
    for i, j in enumerate(picked):
        draw = rng.random()
        priority = "high" if draw < 0.1 else "low" if draw < 0.3 else "normal"
        duration = j.duration_s or 1.0
        faults: tuple[float, ...] = ()
        roll = rng.random()
        if roll < 0.02:  # meets more faults than its retries: ends FAILED
            faults = tuple(round(duration * f, 1) for f in (0.1, 0.1, 0.1, 0.1))
        elif roll < 0.12:
            faults = (round(duration * rng.uniform(0.2, 0.8), 1),)
        out.append(
            replace(
                j, id=f"p{i:04d}", submit_s=j.submit_s - start, priority=priority, faults=faults, duration_s=duration
            )
        )
    epoch = (trace.epoch or DEFAULT_EPOCH) + timedelta(seconds=start)
    return Trace("philly", path, out, epoch=epoch.replace(microsecond=0))


def network_yaml(trace: Trace) -> str:
    tenants = sorted({j.tenant for j in trace.jobs})
    return SITES + "tenants:\n" + "".join(f"  - {{name: t-{t}}}\n" for t in tenants)


def with_tenant_names(trace: Trace) -> Trace:
    """Tenant names as the network declares them (``t-`` + the virtual cluster)."""
    return replace(trace, jobs=[replace(j, tenant=f"t-{j.tenant}") for j in trace.jobs])


# -- (b) the simulator -----------------------------------------------------------------------


def run_sim(trace: Trace, network: str) -> dict[str, Outcome]:
    sim = Simulation(trace, parse_network(network), make_policy("default"), MeasuredDuration(), INTERVAL_S)
    result = sim.run()
    out: dict[str, Outcome] = {}
    for job in [*result.jobs, *result.failed]:
        out[job.trace.id] = Outcome(
            job.first_start,
            job.ran_at,
            job.finish,
            job.restarts + 1,
            "FAILED" if job.failed else "SUCCEEDED",
            job.preempted,
        )
    return out


# -- (a) the live server ---------------------------------------------------------------------


class GracefulFake(FakeBackend):
    """A FakeBackend whose attempts, told to stop, take their whole grace (on the manual clock)
    before they end: what a job that checkpoints on SIGTERM does, and what the simulator models."""

    def __init__(self, nodes: Sequence[NodeDecl], clock: ManualClock) -> None:
        super().__init__(nodes)
        self.clock = clock
        #: attempt id → when it ends after its stop order.
        self.stop_due: dict[int, datetime] = {}

    def cancel(self, attempt_id: int, grace_s: float) -> None:
        with self._lock:
            attempt = self.attempts.get(attempt_id)
            if attempt is None or attempt.state.is_terminal() or attempt_id in self.stop_due:
                return
            self.stop_due[attempt_id] = self.clock.now() + timedelta(seconds=grace_s)

    def stop(self, attempt_id: int) -> None:
        super().cancel(attempt_id, 0.0)


@dataclass
class _Run:
    job: str
    start: datetime
    end: datetime
    fault: bool
    backend: GracefulFake


@dataclass
class LiveDriver:
    """Plays the trace against the live network: submissions at arrival times, scheduler ticks
    on the 60 s grid, attempts ended on the manual clock. The jobs' work follows the same
    measured-duration model as the simulator's (an attempt that stops keeps what it did)."""

    control: ControlPlane
    clock: ManualClock
    client: Client
    trace: Trace
    agents: dict[str, Agent]
    backends: dict[str, GracefulFake]
    #: trace job id → the server's job id.
    ids: dict[str, str] = field(default_factory=dict)
    #: trace job id → seconds of work done by its ended attempts.
    progress: dict[str, float] = field(default_factory=dict)
    faults_met: dict[str, int] = field(default_factory=dict)
    #: attempt id → its run as planned when it started.
    runs: dict[int, _Run] = field(default_factory=dict)
    #: site → how many of its backend's started attempts have been planned.
    seen: dict[str, int] = field(default_factory=dict)
    #: The last pass ordered a preemption: the next grid point is visited.
    preempted: bool = False

    def at(self, t: float) -> datetime:
        return (self.trace.epoch or DEFAULT_EPOCH) + timedelta(seconds=t)

    def secs(self, when: datetime) -> float:
        return (when - (self.trace.epoch or DEFAULT_EPOCH)).total_seconds()

    def set_clock(self, t: float) -> None:
        self.clock.advance((self.at(t) - self.clock.now()).total_seconds())

    def submit(self, job: TraceJob) -> None:
        spec = JobSpec.model_validate(
            {
                "name": job.id,
                "run": "train",
                "resources": {"accelerators": [f"{GPU}:{job.gpus}"], "cpus": job.cpus, "memory": job.memory_gib},
                "priority": job.priority,
                "max_retries": job.max_retries,
                "retry": {"on_exit_codes": [FAULT_EXIT]},
            }
        )
        self.ids[job.id] = self.client.submit(spec, tenant=job.tenant).id

    def step_agents(self) -> None:
        for agent in self.agents.values():
            agent.step()

    def tick(self) -> None:
        """One scheduler pass, then two heartbeats a site: placements are started and reported,
        stop orders received (a pass that preempted asks for the next grid point, as in the
        simulator)."""
        stops_before = sum(len(b.stop_due) for b in self.backends.values())
        self.control.tick()
        self.step_agents()
        self.step_agents()
        by_server_id = {v: k for k, v in self.ids.items()}
        jobs = {j.id: j for j in self.trace.jobs}
        now = self.secs(self.clock.now())
        for site, backend in self.backends.items():
            for a in backend.started[self.seen.get(site, 0) :]:
                job = jobs[by_server_id[a.job_id]]
                remaining = max((job.duration_s or 0.0) - self.progress.get(job.id, 0.0), 0.0)
                met = self.faults_met.get(job.id, 0)
                fault = met < len(job.faults) and job.faults[met] < remaining
                run = job.faults[met] if fault else remaining
                self.runs[a.attempt_id] = _Run(job.id, self.at(now), self.at(now + run), fault, backend)
            self.seen[site] = len(backend.started)
        self.preempted = sum(len(b.stop_due) for b in self.backends.values()) > stops_before

    def events(self) -> list[tuple[datetime, int, object]]:
        """(time, kind, what) of every attempt end and stop still to come."""
        out: list[tuple[datetime, int, object]] = []
        for aid, run in self.runs.items():
            if aid in run.backend.attempts and not run.backend.attempts[aid].state.is_terminal():
                out.append((run.end, 0, aid))
        for backend in self.backends.values():
            for aid, due in backend.stop_due.items():
                if aid in backend.attempts and not backend.attempts[aid].state.is_terminal():
                    out.append((due, 1, aid))
        return out

    def apply(self, kind: int, aid: int) -> None:
        run = self.runs[aid]
        backend = run.backend
        if backend.attempts[aid].state.is_terminal():
            return
        ran = (self.clock.now() - run.start).total_seconds()
        self.progress[run.job] = self.progress.get(run.job, 0.0) + ran
        if kind == 1:
            backend.stop(aid)
        elif run.fault:
            self.faults_met[run.job] = self.faults_met.get(run.job, 0) + 1
            backend.finish(aid, FAULT_EXIT)
        else:
            backend.finish(aid, 0)

    def next_backoff(self) -> float | None:
        now = self.clock.now()
        with self.control.db.read() as session:
            when = session.scalar(
                select(func.min(Job.not_before)).where(Job.state == JobState.PENDING.value, Job.not_before > now)
            )
        return None if when is None else self.secs(when)

    def unfinished(self) -> int:
        with self.control.db.read() as session:
            done = [s.value for s in JobState if s.is_terminal()]
            return int(session.scalar(select(func.count()).select_from(Job).where(Job.state.not_in(done))) or 0)

    def run(self) -> None:
        arrivals = sorted(self.trace.jobs, key=lambda j: (j.submit_s, j.id))
        ptr, now = 0, -math.inf
        while ptr < len(arrivals) or self.unfinished():
            times = [self.secs(t) for t, _, _ in self.events()]
            if ptr < len(arrivals):
                times.append(arrivals[ptr].submit_s)
            backoff = self.next_backoff()
            if backoff is not None:
                times.append(backoff)
            if self.preempted:
                times.append(now + INTERVAL_S)
            if not times:
                raise RuntimeError("the live run stalled: jobs wait but nothing is due")
            tick = math.ceil(min(times) / INTERVAL_S - 1e-9) * INTERVAL_S
            tick = tick if tick > now else now + INTERVAL_S
            self._until(tick, arrivals, ptr)
            while ptr < len(arrivals) and arrivals[ptr].submit_s <= tick + 1e-9:
                ptr += 1
            self.set_clock(tick)
            now = tick
            self.tick()

    def _until(self, tick: float, arrivals: list[TraceJob], ptr: int) -> None:
        """Every arrival, attempt end and stop up to ``tick``, each at its own time."""
        due: list[tuple[float, int, object]] = [(self.secs(t), k, w) for t, k, w in self.events()]
        due += [(j.submit_s, 2, j) for j in arrivals[ptr:] if j.submit_s <= tick + 1e-9]
        due = [d for d in due if d[0] <= tick + 1e-9]
        due.sort(key=lambda d: (d[0], d[1]))
        last: float | None = None
        for t, kind, what in due:
            if last is not None and t > last:
                self.step_agents()
            self.set_clock(t)
            last = t
            if kind == 2:
                assert isinstance(what, TraceJob)
                self.submit(what)
            else:
                assert isinstance(what, int)
                self.apply(kind, what)
        if last is not None:
            self.step_agents()

    def outcomes(self) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        by_server_id = {v: k for k, v in self.ids.items()}
        with self.control.db.read() as session:
            for job in session.scalars(select(Job)):
                attempts = list(
                    session.scalars(select(Attempt).where(Attempt.job_seq == job.seq).order_by(Attempt.number))
                )
                started = [a for a in attempts if a.started_at is not None]
                out[by_server_id[job.id]] = Outcome(
                    self.secs(started[0].started_at) if started and started[0].started_at else None,
                    attempts[-1].site if attempts else None,
                    self.secs(job.finished_at) if job.finished_at and job.state == "SUCCEEDED" else None,
                    len(attempts),
                    job.state,
                    sum(1 for a in attempts if a.state == AttemptState.PREEMPTED.value),
                )
        return out


@contextlib.contextmanager
def live_network(network: str, epoch: datetime, home: Path) -> Iterator[tuple[ControlPlane, ManualClock, str]]:
    """The real server on a loopback port, its scheduler ticked by hand on a ManualClock."""
    clock = ManualClock(epoch)
    # Leases far longer than any jump of the clock: the driver heartbeats only at events.
    control = ControlPlane(Settings(home=home, lease_s=10_000_000.0), clock=clock)
    control.migrate()
    control.apply_network(parse_network(network))
    server = uvicorn.Server(uvicorn.Config(create_app(control), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield control, clock, url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        control.close()


def run_live(trace: Trace, network: str) -> dict[str, Outcome]:
    spec = parse_network(network)
    with tempfile.TemporaryDirectory(prefix="suanli-parity-") as tmp:
        epoch = trace.epoch or DEFAULT_EPOCH
        with live_network(network, epoch, Path(tmp) / "home") as (control, clock, url):
            admin = Client(url, token=control.admin_token_path.read_text().strip())
            agents: dict[str, Agent] = {}
            backends: dict[str, GracefulFake] = {}
            try:
                for decl in spec.sites:
                    backend = GracefulFake(decl.node_decls(), clock)
                    token = control.site_token_path(decl.name).read_text().strip()
                    work = Path(tmp) / "sites" / decl.name
                    agent = Agent(SiteClient(url, token=token), decl.name, backend, work, agent_id=f"agent-{decl.name}")
                    agent.register()
                    agents[decl.name], backends[decl.name] = agent, backend
                driver = LiveDriver(control, clock, admin, trace, agents, backends)
                driver.run()
                return driver.outcomes()
            finally:
                for agent in agents.values():
                    assert isinstance(agent.client, Client)
                    agent.client.close()
                admin.close()


# -- comparing --------------------------------------------------------------------------------


def compare(trace: Trace, live: dict[str, Outcome], sim: dict[str, Outcome]) -> dict[str, float]:
    both = [j for j in trace.jobs if j.id in live and j.id in sim and live[j.id].finish is not None]
    both = [j for j in both if sim[j.id].finish is not None]
    same = sum(1 for j in both if live[j.id].site == sim[j.id].site)
    starts = [abs((sim[j.id].first_start or 0.0) - (live[j.id].first_start or 0.0)) for j in both]
    jct_live = [(live[j.id].finish or 0.0) - j.submit_s for j in both]
    jct_sim = [(sim[j.id].finish or 0.0) - j.submit_s for j in both]
    avg_live = sum(jct_live) / len(both) if both else 0.0
    avg_sim = sum(jct_sim) / len(both) if both else 0.0
    return {
        "jobs": len(both),
        "same_site_fraction": round(same / len(both), 4) if both else 0.0,
        "start_time_mae_s": round(sum(starts) / len(both), 1) if both else 0.0,
        "avg_jct_rel_diff": round((avg_sim - avg_live) / avg_live, 4) if avg_live else 0.0,
        "avg_jct_live_s": round(avg_live, 1),
        "avg_jct_sim_s": round(avg_sim, 1),
        "same_start_fraction": round(sum(1 for d in starts if d < 1.0) / len(both), 4) if both else 0.0,
        "failed_live": sum(1 for o in live.values() if o.state == "FAILED"),
        "failed_sim": sum(1 for o in sim.values() if o.state == "FAILED"),
        "attempts_live": sum(o.attempts for o in live.values()),
        "attempts_sim": sum(o.attempts for o in sim.values()),
        "preempted_live": sum(o.preempted for o in live.values()),
        "preempted_sim": sum(o.preempted for o in sim.values()),
        "tenants": len({j.tenant for j in trace.jobs}),
        "high_jobs": sum(1 for j in trace.jobs if j.priority == "high"),
        "low_jobs": sum(1 for j in trace.jobs if j.priority == "low"),
        "jobs_with_faults": sum(1 for j in trace.jobs if j.faults),
    }


def parity(path: Path, jobs: int, seed: int, skip: int = 0) -> dict[str, float]:
    trace = with_tenant_names(excerpt(path, jobs, seed, skip))
    network = network_yaml(trace)
    t0 = time.perf_counter()
    sim = run_sim(trace, network)
    t1 = time.perf_counter()
    live = run_live(trace, network)
    t2 = time.perf_counter()
    out = compare(trace, live, sim)
    out.update({"submitted": len(trace.jobs), "sim_wall_s": round(t1 - t0, 2), "live_wall_s": round(t2 - t1, 2)})
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", type=Path, default=DEFAULT_TRACES, help="the shared traces folder")
    parser.add_argument("--trace", type=Path, default=None, help="a philly CSV (default: TRACES/philly-82k/philly.csv)")
    parser.add_argument("--jobs", type=int, default=320, help="jobs in the excerpt")
    parser.add_argument("--skip", type=int, default=DEFAULT_SKIP, help="philly jobs (of ≤ 8 GPUs) to skip first")
    parser.add_argument("--seed", type=int, default=17, help="draws priorities and faults")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    path = args.trace or args.traces / "philly-82k" / "philly.csv"
    result: dict[str, float | int | str] = dict(parity(path, args.jobs, args.seed, args.skip))
    emit(result, args.json, "simulator vs live server")


if __name__ == "__main__":
    main()
