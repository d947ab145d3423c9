"""Compute to data, the moving half: when a waiting job could start sooner at a site its data
may be copied to than at any site that holds a copy, the scheduler copies it there.

After a pass, each job that reads datasets and found no place is weighed site by site:

- a site that holds every dataset the job reads starts it when capacity frees there;
- a site where every missing dataset may be copied *now* (the route moves at once, or an
  accepted filing covers it: the same hold a user's ``suanli data copy`` meets) starts it at
  the later of its capacity and the copies' arrival, each copy's time taken as its size over
  the rate measured on recent copies into that site (the network's ``transfer_rate`` until
  there are some);
- other sites are out (core data, a filing still missing, the data rules deny it).

When a copying site wins, its copies are started (or resumed), each a transfer like any other:
decided, recorded on the ledger with the job that asked for it, run by the control plane's
transfer runner (``app/transfers.py``) beside users' copies, sealed, verified. The job's
reason says what is being copied where and when it could start. Once a copy lands the site holds
the data, and the next pass places the job there; nothing is copied for a job that can start
at least as soon where its data already lies.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import datarules, movements, pipl, registry
from suanli.app.chain import Chain
from suanli.core.policy import MovementKind, Purpose, counting_year
from suanli.core.scheduler import PendingJob, SiteRule, SiteState
from suanli.core.scheduling.explain import explain_sites
from suanli.core.scheduling.index import CapacityIndex, fmt_time
from suanli.core.states import TransferState
from suanli.store.models import DataTransfer

#: At most this many waiting jobs are weighed after one pass (the oldest first).
MAX_JOBS_PER_PASS = 32
#: Recent finished copies into a site that its copy rate is measured on.
RATE_SAMPLE = 10


@dataclass(frozen=True)
class Copy:
    dataset: str
    site: str
    size: int
    #: The open transfer already bringing it there, if any.
    transfer_id: str | None
    seconds: float


@dataclass(frozen=True)
class Need:
    """The copies to start for one job, and the sentence its reason becomes."""

    job_id: str
    site: str
    copies: tuple[Copy, ...]
    ready_at: datetime
    reason: str


def copy_rate(session: Session, site: str, default_bps: float) -> float:
    """Bytes per second of recent finished copies into ``site`` (median of the last few), or
    ``default_bps`` while none finished yet."""
    rows = session.execute(
        select(DataTransfer.bytes_done, DataTransfer.started_at, DataTransfer.finished_at)
        .where(DataTransfer.dest_site == site, DataTransfer.state == TransferState.DONE)
        .order_by(DataTransfer.finished_at.desc())
        .limit(RATE_SAMPLE)
    ).all()
    rates = [
        size / seconds
        for size, started, finished in rows
        if started is not None
        and finished is not None
        and size > 0
        and (seconds := (finished - started).total_seconds()) > 0
    ]
    return statistics.median(rates) if rates else default_bps


def may_copy_now(session: Session, chain: Chain, dataset: str, site: str, now: datetime) -> bool:
    """Whether the scheduler may copy ``dataset`` to ``site`` now: the route moves at once, or an
    accepted, unexpired filing covers it (exactly what running a transfer checks); and, across
    a border or into another zone's regime, its owner gave standing permission for staging
    there (``app/pipl.py``)."""
    year = counting_year(now)
    m = movements.movement_for(session, dataset, site, MovementKind.TRANSFER, purpose=Purpose.NONE, year=year)
    if pipl.staging_refusal(session, dataset, m.source, m.destination) is not None:
        return False
    return movements.decided(session, chain, m, now)[1].ok


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def plan(
    session: Session,
    chain: Chain,
    jobs: Sequence[PendingJob],
    sites: Sequence[SiteState],
    now: datetime,
    rules: Sequence[SiteRule],
    default_bps: float,
) -> list[Need]:
    """The copies worth starting for ``jobs`` (waiting jobs that read datasets), one site each."""
    jobs = [j for j in jobs if j.datasets][:MAX_JOBS_PER_PASS]
    if not jobs:
        return []
    names = {d for j in jobs for d in j.datasets}
    facts = datarules.load_facts(session, names, now)
    known = datarules.site_facts(session)
    moving = datarules.open_transfers(session, names)
    index = CapacityIndex(sites, now, 0.0)
    rates: dict[str, float] = {}
    allowed: dict[tuple[str, str], bool] = {}

    def copy_to(dataset: str, site: str) -> Copy | None:
        """The copy of ``dataset`` that ``site`` would need, if it may run now."""
        key = (dataset, site)
        if key not in allowed:
            allowed[key] = may_copy_now(session, chain, dataset, site, now)
        if not allowed[key]:
            return None
        if site not in rates:
            rates[site] = copy_rate(session, site, default_bps)
        t = moving.get(key)
        size = facts[dataset].size
        left = max(size - (t.bytes_done if t is not None else 0), 0)
        return Copy(dataset, site, size, t.id if t else None, left / rates[site])

    def weigh(job: PendingJob) -> Need | None:
        best_copy: datetime | None = None  # soonest start where every dataset already lies
        best: tuple[datetime, str, tuple[Copy, ...]] | None = None
        for verdict in explain_sites(job, sites, now, rules, index):
            here = known.get(verdict.site)
            if not verdict.allowed or here is None:
                continue
            if any(datarules.never(facts[d], d, here, chain.rules) for d in job.datasets):
                continue
            start = verdict.start_at or datetime.max.replace(tzinfo=now.tzinfo)
            missing = [d for d in job.datasets if verdict.site not in facts[d].copies]
            if not missing:
                best_copy = start if best_copy is None else min(best_copy, start)
                continue
            copies = [copy_to(d, verdict.site) for d in missing]
            if any(c is None for c in copies):
                continue
            chosen = tuple(c for c in copies if c is not None)
            ready = max(start, now + timedelta(seconds=sum(c.seconds for c in chosen)))
            if best is None or ready < best[0]:
                best = (ready, verdict.site, chosen)
        if best is None or (best_copy is not None and best_copy <= best[0]):
            return None
        ready, site, chosen = best
        return Need(job.id, site, chosen, ready, _reason(site, chosen, ready, best_copy, moving))

    #: Jobs alike in shape, placement and data get the same answer: weighed once a pass.
    weighed: dict[object, Need | None] = {}
    needs: list[Need] = []
    for job in jobs:
        if any(d not in facts for d in job.datasets):
            continue
        alike = (job.shape_key, job.filter_key, job.datasets)
        if alike not in weighed:
            weighed[alike] = weigh(job)
        need = weighed[alike]
        if need is not None:
            needs.append(replace(need, job_id=job.id))
    return needs


def _reason(
    site: str,
    chosen: tuple[Copy, ...],
    ready: datetime,
    best_copy: datetime | None,
    moving: Mapping[tuple[str, str], DataTransfer],
) -> str:
    """What a waiting job's reason says while its data is copied."""
    what = ", ".join(f"'{c.dataset}' ({_size(c.size)}, ~{_seconds(c.seconds)})" for c in chosen)
    if best_copy is None:
        against = "no site holding the data can take it"
    elif best_copy.year < datetime.max.year:
        against = f"no site holding the data frees sooner (soonest ~{fmt_time(best_copy.timestamp())})"
    else:
        against = "no site holding the data has room now, nor an estimate of when"
    when = "" if ready.year >= datetime.max.year else f"; it can start there at ~{ready:%H:%M:%S} UTC"
    reason = f"copying {what} to {site} for it{when} ({against})"
    broke = [t for c in chosen if (t := moving.get((c.dataset, site))) is not None and t.state == TransferState.FAILED]
    if broke:
        reason += f"; the last try of transfer {broke[0].id} broke off ({broke[0].reason}), it resumes"
    return reason


def waiting_jobs(jobs: Sequence[PendingJob], placed: Iterable[str]) -> list[PendingJob]:
    done = set(placed)
    return [j for j in jobs if j.datasets and j.id not in done]


def transfers_to_run(session: Session, chain: Chain, needs: Sequence[Need], now: datetime) -> list[str]:
    """Create the transfers ``needs`` lack (each decided and put on the ledger, with the job that
    asked); return the ids of those to run now (not already queued or running in this process)."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for need in needs:
        for c in need.copies:
            key = (c.dataset, c.site)
            if key in seen:
                continue
            seen.add(key)
            tid = c.transfer_id
            if tid is None:
                owner = registry.get_dataset(session, c.dataset).owner
                t = movements.create_transfer(
                    session,
                    chain,
                    dataset=c.dataset,
                    to=c.site,
                    purpose=Purpose.NONE,
                    bandwidth_bps=None,
                    actor=f"scheduler, for job {need.job_id} of {owner}",
                    now=now,
                    for_job=need.job_id,
                )
                if t.state != TransferState.READY:
                    continue
                tid = t.id
            if chain.runner_of(tid) is None:
                out.append(tid)
    return out
