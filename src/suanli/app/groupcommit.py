"""Group commit for submissions: those that arrive while a commit is in flight share the next
transaction, and each is answered only after that transaction committed.

One submission alone is a BEGIN, one INSERT and a COMMIT, and under load the begin, the commit
and the session around them cost as much as the INSERT. Here the first submission is written
in a worker thread at once; while it is, the event loop goes on reading requests, and the
submissions that arrive meanwhile queue for the next batch: N submissions, one transaction.
Durability is unchanged: a caller gets its 201 only once its batch committed. A batch that
fails as a whole (one of its jobs refused) is written again one job per transaction, so each
caller gets its own answer and one refusal never costs another its job.

A submission with an ``Idempotency-Key`` (the SDK and the CLI always send one) claims its key
in the batch's transaction, beside its job. A key found taken (a retry, or the same key twice in
one batch) fails the batch, which is then written one submission at a time, where
``app/idempotency.py`` answers the retry with the first job. Not batched: a keyed submission
when budgets are set (its retry must be looked up before its cost is checked), one that reads
datasets (it asks the data rules), and an array (many rows); those are written as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.orm import Session

from suanli.app import idempotency
from suanli.app.jobrequests import Submission
from suanli.core.api import JobOut

Outcome = tuple[JobOut, bool] | BaseException


class GroupCommit:
    """One per server (its event loop): :meth:`write` answers once the submission committed."""

    def __init__(self) -> None:
        self._queue: list[tuple[Submission, asyncio.Future[tuple[JobOut, bool]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def write(self, submission: Submission) -> tuple[JobOut, bool]:
        """(the job, whether it replays an earlier submission with the same key)."""
        if not batchable(submission):
            return await asyncio.to_thread(submission.write) if submission.slow else submission.write()
        future: asyncio.Future[tuple[JobOut, bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future))
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    outcomes = await asyncio.to_thread(write_batch, [s for s, _ in batch])
                except Exception as exc:  # handed to every caller of the batch
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller went away
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._drainer = None


def batchable(submission: Submission) -> bool:
    keyed_with_budgets = submission.key is not None and bool(submission.control.scheduler_config.budgets)
    return not keyed_with_budgets and not submission.spec.datasets and submission.spec.array is None


def write_batch(batch: Sequence[Submission]) -> list[Outcome]:
    """Write ``batch`` in one transaction; if that fails, each alone (see the module's words)."""
    control = batch[0].control
    outcomes: list[Outcome]
    try:
        with control.db.session() as session:
            outcomes = [(_make_claimed(s, session), False) for s in batch]
    except Exception as exc:  # decided per submission below
        if len(batch) == 1 and not isinstance(exc, idempotency.Taken):
            return [exc]
        outcomes = [_alone(s) for s in batch]
    control.kick()
    return outcomes


def _make_claimed(submission: Submission, session: Session) -> JobOut:
    """The job, and its Idempotency-Key claimed beside it (raises Taken when the key is not new)."""
    out = submission.make(session)
    if submission.key is not None:
        idempotency.claim_or_raise(
            session,
            tenant=submission.tenant,
            key=submission.key,
            user=submission.who.name,
            body=submission.body,
            job_id=out.id,
            now=submission.control.clock.now(),
        )
    return out


def _alone(submission: Submission) -> Outcome:
    try:
        return submission.write()
    except Exception as exc:  # this caller's own answer
        return exc
