"""The transfer runner: every copy between sites runs here, off the request path.

A user's ``POST /api/v1/transfers/{id}/run`` and the scheduler's staging (copies for waiting
jobs) both hand transfers to one :class:`TransferRunner`: the request (or the scheduling pass)
re-checks the hold, marks the transfer ``queued`` and returns at once; a bounded pool of worker
threads runs the copies, a few at a time, and writes their progress to the transfer's row.
The control plane owns the runner: it resumes, at start, the transfers a stopped server left
``queued`` or ``running``, and on stop breaks running copies off at their next chunk (they
stay resumable: the receiver keeps what it verified).

The request-side functions below are what the ``/api/v1/transfers`` router calls: one call
per endpoint, each with its access check.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import datasets, movements
from suanli.app.chain import Chain
from suanli.app.errors import NotFound, ServiceError
from suanli.core.api_data import TransferOut
from suanli.core.identity import Identity
from suanli.core.policy import Purpose
from suanli.datachain.site_store import LocalChannel
from suanli.store.models import Dataset, DataTransfer

log = logging.getLogger("suanli.server")

#: Copies that run at once (each one keeps several chunks in flight itself).
MAX_COPIES = 4
#: A copy the scheduler asked for that broke off is tried again no sooner than this.
RETRY_AFTER_S = 30.0
#: Progress is written to the transfer's row every this many chunks.
PROGRESS_EVERY = 8

#: Whether a caller may act on (or see) a dataset: the 404 of a missing one otherwise.
DatasetCheck = Callable[[Session, Identity, str], object]


class CopyStopped(Exception):
    """The server is stopping: the copy breaks off here and resumes after the next start."""


class TransferRunner:
    """Runs copies on a bounded pool of worker threads; ``landed`` is called after each run ends
    (the sites holding the data may have changed), so that a scheduling pass looks again.

    A transfer is claimed on the :class:`Chain` from the moment it is queued until its run ends,
    so it is queued once at a time, whoever asks."""

    def __init__(
        self,
        chain: Callable[[], Chain],
        landed: Callable[[], None],
        *,
        workers: int = MAX_COPIES,
        channel_factory: movements.ChannelFactory = LocalChannel,
        agents: movements.SiteCopier | None = None,
    ) -> None:
        self._chain, self._landed, self._workers = chain, landed, workers
        #: Copies of data that rests at the source site's agent go agent to agent through it.
        self.agents = agents
        #: How copies reach the destination's store (tests pass a gated or breaking one).
        self.channel_factory = channel_factory
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._futures: dict[str, concurrent.futures.Future[None]] = {}
        self._retry_at: dict[str, float] = {}
        self._stop = threading.Event()

    def _new_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(self._workers, thread_name_prefix="suanli-copy")

    # -- asking ----------------------------------------------------------------------------
    def submit(self, transfer_id: str, by: str) -> DataTransfer:
        """Check that ``transfer_id`` may run now, mark it ``queued`` and queue its copy; returns
        the queued row. Refusals are raised (and, for the rules' ones, put on the record) before
        anything is queued. While the runner is stopped the transfer stays ``queued`` for the
        next start."""
        chain = self._chain()
        holder = chain.claim(transfer_id, by)
        if holder is not None:
            raise movements.already_claimed(transfer_id, holder)
        try:
            t = movements.queue_transfer(chain, transfer_id)
            with self._lock:
                if self._stop.is_set():
                    chain.release(transfer_id)
                    return t
                future = self._pool.submit(self._run, chain, transfer_id)
                self._futures[transfer_id] = future
        except BaseException:
            chain.release(transfer_id)
            raise
        future.add_done_callback(lambda _f: self._done(chain, transfer_id))
        return t

    def submit_for_jobs(self, transfer_ids: Iterable[str]) -> list[str]:
        """Queue the scheduler's copies (those not queued already, nor broken off too recently);
        returns the ids queued. A refusal is logged: the next weighing sees the new state."""
        queued: list[str] = []
        now = time.monotonic()
        chain = self._chain()
        for tid in transfer_ids:
            if self._stop.is_set():
                break
            if chain.runner_of(tid) is not None or self._retry_at.get(tid, 0.0) > now:
                continue
            try:
                self.submit(tid, "started by the scheduler for a job")
            except ServiceError as exc:
                log.info("copy %s not queued: %s", tid, exc)
                continue
            queued.append(tid)
        return queued

    def queued(self) -> list[str]:
        """Transfers queued or running in this runner now."""
        with self._lock:
            return list(self._futures)

    # -- running ---------------------------------------------------------------------------
    def _run(self, chain: Chain, tid: str) -> None:
        calls = [0]

        def progress(done: int, total: int) -> None:
            if self._stop.is_set():
                raise CopyStopped("the server is stopping")
            calls[0] += 1
            if calls[0] % PROGRESS_EVERY == 0 and done < total:
                with chain.db.session() as s:
                    t = s.get(DataTransfer, tid)
                    if t is not None:
                        t.bytes_done = done

        try:
            t = movements.run_claimed(chain, tid, self.channel_factory, progress, self.agents)
            log.info("copy %s of %s to %s done", tid, t.dataset, t.dest_site)
            self._retry_at.pop(tid, None)
        except Exception as exc:  # the transfer's row says why it stopped; running it again resumes
            if not self._stop.is_set():
                log.warning("copy %s broke off (%s)", tid, exc)
            self._retry_at[tid] = time.monotonic() + RETRY_AFTER_S
        if not self._stop.is_set():
            self._landed()

    def _done(self, chain: Chain, tid: str) -> None:
        """The run ended (or was cancelled before it began): give the claim back."""
        with self._lock:
            self._futures.pop(tid, None)
        chain.release(tid)

    # -- start and stop ----------------------------------------------------------------------
    def start(self) -> list[str]:
        """(Re)open the runner and queue again what a stopped server left queued or running;
        returns their ids. A transfer the rules no longer let run is put on hold, as a user's
        run would be, and left out."""
        with self._lock:
            if self._stop.is_set():
                self._pool = self._new_pool()
                self._stop.clear()
        chain = self._chain()
        with chain.db.read() as s:
            left = movements.left_running(s)
        resumed: list[str] = []
        for tid in left:
            if chain.runner_of(tid) is not None:
                continue
            try:
                self.submit(tid, "resumed when the server started")
            except ServiceError as exc:
                log.warning("transfer %s not resumed: %s", tid, exc)
                continue
            resumed.append(tid)
        return resumed

    def stop(self, timeout: float = 10.0) -> None:
        """Break running copies off at their next chunk and wait for them (up to ``timeout``);
        queued ones stay ``queued`` and are resumed by the next :meth:`start`."""
        with self._lock:
            self._stop.set()
            pool, futures = self._pool, list(self._futures.values())
        pool.shutdown(wait=False, cancel_futures=True)
        concurrent.futures.wait(futures, timeout)


# -- what the /api/v1/transfers router calls -------------------------------------------------
def request(
    chain: Chain,
    who: Identity,
    *,
    dataset: str,
    to: str,
    purpose: Purpose,
    bandwidth_bps: float | None,
    actor: str,
) -> TransferOut:
    """Ask for a copy: decided at once and put on the ledger (``ready``, ``held`` or ``denied``).
    ``actor`` is whom the ledger names (only the admin may name someone other than itself)."""
    with chain.db.session() as s:
        datasets.owned_dataset(s, who, dataset)
        t = movements.create_transfer(
            s,
            chain,
            dataset=dataset,
            to=to,
            purpose=purpose,
            bandwidth_bps=bandwidth_bps,
            actor=datasets.actor_of(who, actor or "owner"),
            now=chain.clock.now(),
        )
        out = movements.transfer_out(t)
    chain.seal()
    return out


def run(chain: Chain, runner: TransferRunner, who: Identity, transfer_id: str) -> TransferOut:
    """Queue a copy (or its resumption) for the runner and answer at once with the queued row."""
    with chain.db.read() as s:
        _mine(s, who, transfer_id, datasets.owned_dataset)
    return movements.transfer_out(runner.submit(transfer_id, "asked by its owner"))


def show(chain: Chain, who: Identity, transfer_id: str) -> TransferOut:
    with chain.db.read() as s:
        return movements.transfer_out(_mine(s, who, transfer_id, datasets.visible_dataset))


def listing(chain: Chain, who: Identity, dataset: str | None, state: str | None) -> list[TransferOut]:
    """The transfers of the datasets ``who`` may see, oldest first."""
    owner = datasets.dataset_owner_filter(who)
    with chain.db.read() as s:
        q = select(DataTransfer).order_by(DataTransfer.created_at)
        if owner is not None:
            q = q.join(Dataset, Dataset.name == DataTransfer.dataset).where(Dataset.owner == owner)
        if dataset:
            q = q.where(DataTransfer.dataset == dataset)
        if state:
            q = q.where(DataTransfer.state == state)
        return [movements.transfer_out(t) for t in s.scalars(q)]


def _mine(s: Session, who: Identity, transfer_id: str, check: DatasetCheck) -> DataTransfer:
    """The transfer, if ``check`` lets ``who`` at its dataset; else the 404 of a missing transfer."""
    t = movements.get_transfer(s, transfer_id)
    try:
        check(s, who, t.dataset)
    except NotFound:
        raise NotFound(f"no transfer '{transfer_id}'; see `suanli data transfers`") from None
    return t
