"""Reading and following a job's output: one implementation for the API's ``logs`` and the
dashboard's live view (each wraps :func:`follow_logs` in its own small streaming response).

A follower costs no thread while it waits. It is an async generator that sleeps on a
:class:`~suanli.app.control.Subscription` to the ``logs`` signal (bumped when an agent
reports output or a job changes state, and on shutdown) and, as a safety net for ends that
bump nothing (a lease running out), wakes every :data:`FOLLOW_POLL_S` anyway. Each wake-up
reads the new chunks in a worker thread for the length of one indexed query, then gives the
thread back. Before this, each follower held a worker thread for its whole life: 40 of them
(anyio's default pool) and the server stopped answering everyone.

How many streams a tenant may hold open is capped (``Settings.max_follows_per_tenant``): a
stream is counted from the moment it is accepted until the response ends, however it ends (job
done, client gone, server stopping).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio.to_thread
from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import jobs as job_service
from suanli.app.control import ControlPlane
from suanli.app.errors import ServiceError
from suanli.app.signals import FollowSlot
from suanli.core.identity import Identity
from suanli.core.logview import LogView, stamp
from suanli.core.states import JobState
from suanli.store.models import Attempt, Job, LogChunkRow

#: Longest a follower sleeps without a signal before it looks again.
FOLLOW_POLL_S = 1.0
#: What a refused follower is told to wait before trying again, seconds.
FOLLOW_RETRY_S = 5


class TooManyFollows(ServiceError):
    status = 429
    title = "Too many open log streams"
    retry_after = FOLLOW_RETRY_S


def is_multi_node(job: Job) -> bool:
    return int(job.spec.get("resources", {}).get("num_nodes", 1) or 1) > 1


class LogFormatter:
    """Turns stored chunks into the text the CLI prints: a line between attempts, each line of a
    multi-node job prefixed with its node rank, and with ``timestamps`` each line prefixed with
    the instant its first bytes reached the front desk."""

    def __init__(
        self, multi: bool, attempts: Mapping[int, Attempt], attempt_id: int | None = None, *, timestamps: bool = False
    ) -> None:
        self.multi = multi
        self.timestamps = timestamps
        self.attempts = attempts
        self.attempt_id = attempt_id
        self.partial: dict[int, tuple[str, datetime]] = {}

    def feed(self, chunks: Sequence[LogChunkRow], final: bool = False) -> Iterator[str]:
        for chunk in chunks:
            if chunk.attempt_id != self.attempt_id:
                if self.attempt_id is not None and chunk.attempt_id in self.attempts:
                    a = self.attempts[chunk.attempt_id]
                    yield f"--- attempt {a.number} at {a.site} ---\n"
                self.attempt_id = chunk.attempt_id
            if not self.multi and not self.timestamps:
                yield chunk.data
                continue
            held, began = self.partial.pop(chunk.rank, ("", chunk.created_at))
            lines = (held + chunk.data).split("\n")
            rest = lines.pop()
            out = []
            for line in lines:
                out.append(f"{self._prefix(chunk.rank, began)}{line}\n")
                began = chunk.created_at
            if rest:
                self.partial[chunk.rank] = (rest, began)
            yield "".join(out)
        if final and self.partial:
            yield "".join(
                f"{self._prefix(rank, began)}{rest}\n" for rank, (rest, began) in sorted(self.partial.items())
            )
            self.partial.clear()

    def _prefix(self, rank: int, began: datetime) -> str:
        return (stamp(began) if self.timestamps else "") + (f"[rank {rank}] " if self.multi else "")


def follow_slot(control: ControlPlane, identity: Identity) -> FollowSlot:
    """Count one more open stream for the caller's tenant (a user without a tenant counts on
    its own), or refuse it with 429 when the tenant already holds the most allowed."""
    cap = control.settings.max_follows_per_tenant
    key = f"tenant:{identity.tenant}" if identity.tenant else f"user:{identity.name}"
    slot = control.follows.acquire(key, cap)
    if slot is None:
        who = f"tenant '{identity.tenant}'" if identity.tenant else f"user '{identity.name}'"
        raise TooManyFollows(
            f"{who} already follows {cap} log streams, the most allowed at once; "
            f"close one (or read the logs without follow) and retry after {FOLLOW_RETRY_S} s"
        )
    return slot


@dataclass
class _Batch:
    chunks: list[LogChunkRow]
    done: bool
    multi: bool
    #: The job's attempts, read again only when a chunk of one not yet known arrives.
    attempts: dict[int, Attempt] | None
    #: The attempt of chunk ``after`` on the first read (where the stream resumes).
    previous: int | None


def _read(
    control: ControlPlane, identity: Identity, job_id: str, after: int, known: set[int] | None, view: LogView
) -> _Batch:
    with control.db.read() as session:
        job = job_service.get_job(session, job_id, identity)
        chunks = job_service.log_chunks_after(session, job, after, view=view)
        attempts = None
        if known is None or any(c.attempt_id not in known for c in chunks):
            attempts = {a.id: a for a in job_service.attempts_of(session, [job])[job.seq]}
        previous = None
        if known is None and after:
            previous = session.scalar(select(LogChunkRow.attempt_id).where(LogChunkRow.id == after))
        return _Batch(chunks, JobState(job.state).is_terminal(), is_multi_node(job), attempts, previous)


async def follow_logs(
    control: ControlPlane,
    identity: Identity,
    job_id: str,
    after: int = 0,
    *,
    follow: bool = True,
    view: LogView = LogView(),
) -> AsyncIterator[str]:
    """The job's output after chunk ``after`` that ``view`` shows; with ``follow``, kept open
    until the job ends (or the server stops), sleeping without a thread in between."""
    formatter: LogFormatter | None = None
    with control.signals.subscribe("logs", "shutdown") as wake:
        while True:
            wake.clear()  # before reading: a bump during the read makes the next wait return at once
            known = None if formatter is None else set(formatter.attempts)
            batch = await anyio.to_thread.run_sync(_read, control, identity, job_id, after, known, view)
            if formatter is None:
                formatter = LogFormatter(batch.multi, batch.attempts or {}, batch.previous, timestamps=view.timestamps)
            elif batch.attempts is not None:
                formatter.attempts = batch.attempts
            if batch.chunks:
                after = batch.chunks[-1].id
                text = "".join(formatter.feed(batch.chunks))
                if text:
                    yield text
                continue
            if not follow or batch.done or control.stopping:
                tail = "".join(formatter.feed([], final=True))
                if tail:
                    yield tail
                return
            await wake.wait(FOLLOW_POLL_S)


@dataclass
class LogStream:
    """An opened log stream: its text, and the slot it holds (None when not following) that the
    response gives back when it ends, however it ends."""

    text: AsyncIterator[str]
    slot: FollowSlot | None


async def open_logs(
    control: ControlPlane,
    identity: Identity,
    job_id: str,
    after: int = 0,
    *,
    follow: bool = True,
    visible: Callable[[Session, str, Identity], Any] = job_service.get_job,
    view: LogView = LogView(),
) -> LogStream:
    """Check that ``identity`` may see the job (``visible`` raises the 404 otherwise; one read in
    a worker thread), count the stream against its tenant when following (429 beyond the cap),
    and hand back the job's output after chunk ``after``."""

    def check() -> None:
        with control.db.read() as session:
            visible(session, job_id, identity)

    await anyio.to_thread.run_sync(check)
    slot = follow_slot(control, identity) if follow else None
    return LogStream(follow_logs(control, identity, job_id, after, follow=follow, view=view), slot)
