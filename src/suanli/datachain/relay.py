"""The relay between two sites' agents: sealed chunks pass through it, one by one, with
back-pressure, and nothing else does.

Agents make only outbound connections, so a copy from one site to another cannot go straight
from agent to agent: the source agent pushes sealed chunks to the relay and the destination
agent pulls them from it. The relay holds, per transfer, at most ``capacity`` chunks, in memory
only (never on disk): a source that gets ahead waits (``push`` blocks, then answers "full"), so a
copy never costs the relay more than ``capacity`` sealed chunks. It knows a transfer by its
:class:`Ticket` (ids and manifest, never the key): what passes through it is ciphertext it
cannot open.

Resume: the destination says which chunks it holds (``report_have``) when it opens the transfer
and again whenever it reopens it; the source sends only the others. A relay that restarts forgets
its transfers and their buffered chunks, and each side learns it at its next call, whichever
reopened first: the destination may not pull before it has said what it holds, nor the source
push before it has heard that, in this relay's life (:class:`RelayLost` otherwise). Both reopen,
and the destination's ``have`` tells the source what to send again. When the destination has
every chunk it finishes (its own checks: hashes, Merkle root, durability) and reports the root,
or the chunks it still lacks, which the source sends again.

The sides: :class:`RelayChannel` is the source's :class:`~suanli.datachain.transfer.Channel`
(``send`` uses it as it uses any channel); :func:`receive` is the destination's loop into its
:class:`~suanli.datachain.site_store.SiteStore`. Both talk to a :class:`RelayLink`: the
:class:`Relay` itself in this process, or its HTTP front in the front desk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from suanli.datachain.crypto import Buffer
from suanli.datachain.manifest import Manifest
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import ChunkRejected, Offer, TransferError, checked_dataset, checked_transfer_id

#: Sealed chunks a relay holds per transfer: enough to keep both sides busy, never more.
DEFAULT_CAPACITY = 8


class RelayLost(TransferError):
    """The relay does not know this transfer (it restarted, or the transfer was closed): reopen it."""


@dataclass(frozen=True)
class Ticket:
    """What the relay knows of a transfer: no key."""

    transfer_id: str
    dataset: str
    manifest: Manifest
    at_rest: bool = False

    def __post_init__(self) -> None:
        checked_transfer_id(self.transfer_id)
        checked_dataset(self.dataset)

    @classmethod
    def of(cls, offer: Offer) -> Ticket:
        return cls(offer.transfer_id, offer.dataset, offer.manifest, offer.at_rest)


@dataclass(frozen=True)
class Chunk:
    index: int
    last: bool
    blob: bytes


@dataclass(frozen=True)
class Outcome:
    """How the destination's ``finish`` went: the Merkle root, or the chunks it still lacks."""

    root: str | None = None
    missing: tuple[int, ...] = ()
    error: str | None = None


@dataclass
class _Open:
    ticket: Ticket
    chunks: deque[Chunk] = field(default_factory=deque)
    #: What the destination holds, as it said in this relay's life (``None``: not yet).
    have: set[int] | None = None
    #: Whether the source has heard ``have`` in this relay's life: until then it may not push.
    source_synced: bool = False
    outcome: Outcome | None = None
    bytes_relayed: int = 0


class RelayLink(Protocol):
    """What both sides ask of a relay (the :class:`Relay`, or a client of its HTTP front)."""

    def open(self, ticket: Ticket) -> None: ...
    def push(self, transfer_id: str, chunk: Chunk, timeout: float) -> bool: ...
    def pull(self, transfer_id: str, timeout: float) -> Chunk | None: ...
    def report_have(self, transfer_id: str, have: set[int]) -> None: ...
    def wait_have(self, transfer_id: str, timeout: float) -> set[int] | None: ...
    def report_outcome(self, transfer_id: str, outcome: Outcome) -> None: ...
    def wait_outcome(self, transfer_id: str, timeout: float) -> Outcome | None: ...


class Relay:
    """Open transfers and their buffered sealed chunks, in memory, ``capacity`` chunks each."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a relay holds at least one chunk per transfer")
        self.capacity = capacity
        self._open: dict[str, _Open] = {}
        self._cond = threading.Condition()
        #: The most chunks any transfer has had buffered at once (the back-pressure's proof).
        self.high_water = 0

    def _get(self, transfer_id: str) -> _Open:
        t = self._open.get(transfer_id)
        if t is None:
            raise RelayLost(f"the relay holds no open transfer {transfer_id}; reopen it")
        return t

    def open(self, ticket: Ticket) -> None:
        """Open ``ticket``'s transfer; opening it again changes nothing (what is buffered stays)."""
        with self._cond:
            t = self._open.get(ticket.transfer_id)
            if t is not None and t.ticket != ticket:
                raise TransferError(f"transfer {ticket.transfer_id} is open at the relay for other data")
            if t is None:
                self._open[ticket.transfer_id] = _Open(ticket)
                self._cond.notify_all()

    def close(self, transfer_id: str) -> None:
        with self._cond:
            self._open.pop(transfer_id, None)
            self._cond.notify_all()

    def push(self, transfer_id: str, chunk: Chunk, timeout: float) -> bool:
        """Buffer a sealed chunk; waits up to ``timeout`` while the buffer is full, then answers
        ``False`` (the source tries again: that wait is the back-pressure)."""
        m = self._get(transfer_id).ticket.manifest
        if not 0 <= chunk.index < m.count or chunk.last != (chunk.index == m.count - 1):
            raise TransferError(f"chunk {chunk.index} is not a chunk of transfer {transfer_id} ({m.count} chunks)")
        deadline = time.monotonic() + timeout
        with self._cond:
            if not self._get(transfer_id).source_synced:
                raise RelayLost(f"the relay has not told the source of {transfer_id} what to send; begin again")
            while len((t := self._get(transfer_id)).chunks) >= self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            t.chunks.append(chunk)
            t.outcome = None  # a chunk sent (again) makes the destination's last word stale
            t.bytes_relayed += len(chunk.blob)
            self.high_water = max(self.high_water, len(t.chunks))
            self._cond.notify_all()
            return True

    def pull(self, transfer_id: str, timeout: float) -> Chunk | None:
        """The next buffered chunk, waiting up to ``timeout`` for one; ``None`` if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._get(transfer_id).have is None:
                raise RelayLost(f"the relay does not know what the destination of {transfer_id} holds; say it again")
            while not (t := self._get(transfer_id)).chunks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            chunk = t.chunks.popleft()
            self._cond.notify_all()
            return chunk

    def report_have(self, transfer_id: str, have: set[int]) -> None:
        with self._cond:
            self._get(transfer_id).have = set(have)
            self._cond.notify_all()

    def wait_have(self, transfer_id: str, timeout: float) -> set[int] | None:
        """The chunks the destination holds, once it has said (``None`` if it has not yet)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (t := self._get(transfer_id)).have is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            t.source_synced = True
            return set(t.have)

    def report_outcome(self, transfer_id: str, outcome: Outcome) -> None:
        with self._cond:
            t = self._get(transfer_id)
            t.outcome = outcome
            if outcome.missing:
                t.have = set(range(t.ticket.manifest.count)) - set(outcome.missing)
            self._cond.notify_all()

    def wait_outcome(self, transfer_id: str, timeout: float) -> Outcome | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (t := self._get(transfer_id)).outcome is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return t.outcome

    def relayed(self, transfer_id: str) -> int:
        """Sealed bytes that have passed into the relay for ``transfer_id`` in its life (0 if
        it is not open): a copy's progress, as the relay sees it."""
        with self._cond:
            t = self._open.get(transfer_id)
            return 0 if t is None else t.bytes_relayed

    def buffered(self) -> int:
        """Sealed chunks held now, over all transfers."""
        with self._cond:
            return sum(len(t.chunks) for t in self._open.values())


class RelayChannel:
    """The source agent's channel: sealed chunks go to the relay; the destination answers through it.

    ``wait_s`` bounds each wait (for the destination's ``have``, for room in the relay, for the
    destination's outcome); past it the copy stops with a :class:`TransferError` and resumes when
    run again."""

    def __init__(self, link: RelayLink, *, wait_s: float = 300.0, poll_s: float = 10.0) -> None:
        self.link, self.wait_s, self.poll_s = link, wait_s, poll_s

    def begin(self, offer: Offer) -> set[int]:
        self.link.open(Ticket.of(offer))  # the key stays here: the relay gets the ticket
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            have = self.link.wait_have(offer.transfer_id, min(self.poll_s, self.wait_s))
            if have is not None:
                return have
        raise TransferError(f"the destination of transfer {offer.transfer_id} did not answer in {self.wait_s:.0f} s")

    def put(self, transfer_id: str, index: int, last: bool, blob: Buffer) -> None:
        chunk = Chunk(index, last, bytes(blob))  # the sender reuses its buffer once this returns
        deadline = time.monotonic() + self.wait_s
        while not self.link.push(transfer_id, chunk, min(self.poll_s, self.wait_s)):
            if time.monotonic() >= deadline:
                raise TransferError(f"the relay had no room for transfer {transfer_id} for {self.wait_s:.0f} s")

    def finish(self, transfer_id: str) -> str:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            outcome = self.link.wait_outcome(transfer_id, min(self.poll_s, self.wait_s))
            if outcome is None:
                continue
            if outcome.root is not None:
                return outcome.root
            if outcome.missing:
                raise TransferError(
                    f"the destination of transfer {transfer_id} still lacks chunks {list(outcome.missing)[:10]}; "
                    "run it again to resume"
                )
            raise TransferError(f"the destination of transfer {transfer_id} refused it: {outcome.error}")
        raise TransferError(f"the destination of transfer {transfer_id} did not finish in {self.wait_s:.0f} s")


def receive(store: SiteStore, offer: Offer, link: RelayLink, *, idle_s: float = 300.0, poll_s: float = 10.0) -> str:
    """The destination agent's side: open the transfer in ``store``, say what it holds, take
    sealed chunks from the relay until it holds them all, finish, report the root; returns it.

    ``offer`` carries the key (it reached this agent, not the relay). A chunk that fails its
    checks is dropped and reported missing at the end, so the source sends it again; so are the
    chunks still lacking when none has come for ``poll_s`` (an earlier run of this side took
    them from the relay and stopped before storing them). A relay
    that restarts (:class:`RelayLost`) is reopened and told again what this site holds. Stops
    with a :class:`TransferError` when no chunk came for ``idle_s``."""
    ticket = Ticket.of(offer)
    m = offer.manifest
    have = store.begin(offer)
    idle_until = time.monotonic() + idle_s
    while True:
        try:
            link.open(ticket)
            link.report_have(offer.transfer_id, have)
            #: Chunks that came this round, whether they passed or not: once every chunk has
            #: come and some failed, the source is told which to send again.
            seen = set(have)
            while len(have) < m.count:
                chunk = link.pull(offer.transfer_id, min(poll_s, idle_s))
                if chunk is None:
                    if time.monotonic() >= idle_until:
                        raise TransferError(f"no chunk of transfer {offer.transfer_id} came for {idle_s:.0f} s")
                    # Nothing came for a while: chunks an earlier run of this side took from the
                    # relay but never stored (it restarted) will not come by themselves. Say
                    # what is missing; a source waiting to finish sends it again.
                    link.report_outcome(offer.transfer_id, Outcome(missing=_missing(m, have)))
                    seen = set(have)
                    continue
                idle_until = time.monotonic() + idle_s
                seen.add(chunk.index)
                try:
                    store.put(offer.transfer_id, chunk.index, chunk.last, chunk.blob)
                    have.add(chunk.index)
                except ChunkRejected:  # tampered or damaged on the way: the source sends it again
                    pass
                if len(seen) == m.count and len(have) < m.count:
                    link.report_outcome(offer.transfer_id, Outcome(missing=_missing(m, have)))
                    seen = set(have)
            try:
                root = store.finish(offer.transfer_id)
            except TransferError as exc:
                link.report_outcome(offer.transfer_id, Outcome(error=str(exc)))
                raise
            link.report_outcome(offer.transfer_id, Outcome(root=root))
            return root
        except RelayLost:
            time.sleep(min(poll_s, 1.0))  # the relay restarted: reopen and say again what is here


def _missing(m: Manifest, have: set[int]) -> tuple[int, ...]:
    return tuple(i for i in range(m.count) if i not in have)
