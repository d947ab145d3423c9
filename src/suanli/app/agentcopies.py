"""Copies between two sites' agents, through the front desk's relay: what the transfer runner
does for a dataset whose bytes rest at the source site's agent (registered there by upload, or a
replica an earlier such copy made).

The runner decides and records the transfer as for any copy, then hands it here
(:meth:`AgentCopies.copy`). The order rides both agents' heartbeats until the copy ends: the
source agent gets it in ``send`` (it seals its store's chunks and pushes them to the relay),
the destination agent in ``store`` (it pulls, opens, checks against the BLAKE3 manifest and
stores, sealed at rest when the grade asks, then reports the Merkle root). The per-transfer key
is made here, kept in memory and given to the two agents only: the relay sees ciphertext and the
ticket, never the key, and nothing of the copy is written on the front desk's disk.

Resume: the orders repeat until the copy ends, so an agent that restarts takes its part again.
A destination resumes from what its store holds; a source sends only what the destination
lacks. If the front desk restarts, its runner runs the transfer again (a new key: the chunks a
destination holds are checked against the manifest, not the key) and the copy resumes the same way.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from suanli.core.protocol import StoreOrder
from suanli.datachain.crypto import SealError, open_sealed
from suanli.datachain.manifest import chunk_hash
from suanli.datachain.relay import Outcome, Relay, Ticket
from suanli.datachain.transfer import Offer, TransferError

#: A copy in which no byte moves for this long stops (run it again to resume).
IDLE_S = 300.0


@dataclass(frozen=True)
class _Copy:
    offer: Offer
    source: str
    #: None: the front desk itself takes the chunks (a download).
    dest: str | None


def order_of(offer: Offer) -> StoreOrder:
    """What an agent is told of a transfer: the ids, the manifest, the key (base64)."""
    return StoreOrder(
        transfer_id=offer.transfer_id,
        dataset=offer.dataset,
        manifest=offer.manifest.model_dump(),
        key=base64.b64encode(offer.key).decode("ascii"),
        at_rest=offer.at_rest,
    )


class AgentCopies:
    """The copies between agents under way, and their orders for each site's heartbeat."""

    def __init__(self, relay: Relay, wake: Callable[[str], None], *, idle_s: float = IDLE_S) -> None:
        self.relay, self.wake, self.idle_s = relay, wake, idle_s
        self._open: dict[str, _Copy] = {}
        self._lock = threading.Lock()

    def copy(self, offer: Offer, source: str, dest: str, progress: Callable[[int, int], None] | None = None) -> str:
        """Have ``source``'s agent send ``offer`` to ``dest``'s through the relay; returns the
        Merkle root the destination reports. ``progress`` may raise to stop the copy."""
        tid, size = offer.transfer_id, offer.manifest.size
        self.relay.open(Ticket.of(offer))
        with self._lock:
            self._open[tid] = _Copy(offer, source, dest)
        self.wake(source)
        self.wake(dest)
        try:
            idle_until, moved = time.monotonic() + self.idle_s, -1
            while True:
                outcome = self.relay.wait_outcome(tid, 1.0)
                if outcome is not None and outcome.root is not None:
                    if outcome.root != offer.manifest.root:
                        raise TransferError(f"site {dest} reported root {outcome.root[:16]}…, not the manifest's")
                    return outcome.root
                if outcome is not None and outcome.error:
                    raise TransferError(f"site {dest} refused the copy: {outcome.error}")
                if outcome is not None:  # chunks missing: the source's agent sends them again
                    time.sleep(0.2)
                relayed = self.relay.relayed(tid)
                if progress is not None:
                    progress(min(relayed, size), size)
                if relayed != moved:
                    idle_until, moved = time.monotonic() + self.idle_s, relayed
                elif time.monotonic() > idle_until:
                    raise TransferError(
                        f"no chunk moved from {source} to {dest} for {self.idle_s:.0f} s: "
                        "are both sites' agents running?"
                    )
        finally:
            with self._lock:
                self._open.pop(tid, None)
            self.relay.close(tid)

    def fetch(self, offer: Offer, source: str) -> Iterator[bytes]:
        """A download of data at ``source``'s agent: the agent seals and pushes its chunks to
        the relay as for a copy, and the front desk takes them itself, opens each, checks it
        against the manifest and yields the chunks in order. It holds only the chunks that came
        ahead of the next one (at most the sender's workers and the relay's bound): no plaintext
        or ciphertext is written to its disk."""
        tid, m = offer.transfer_id, offer.manifest
        self.relay.open(Ticket.of(offer))
        self.relay.report_have(tid, set())
        with self._lock:
            self._open[tid] = _Copy(offer, source, None)
        self.wake(source)
        try:
            ahead: dict[int, bytes] = {}
            nxt, idle_until = 0, time.monotonic() + self.idle_s
            while nxt < m.count:
                chunk = self.relay.pull(tid, 1.0)
                if chunk is None:
                    if time.monotonic() > idle_until:
                        raise TransferError(
                            f"no chunk came from {source} for {self.idle_s:.0f} s: is its agent running?"
                        )
                    continue
                idle_until = time.monotonic() + self.idle_s
                if chunk.index < nxt or chunk.index in ahead:
                    continue
                try:
                    plain = open_sealed(offer.key, tid, chunk.index, chunk.last, chunk.blob)
                except SealError as exc:
                    raise TransferError(f"chunk {chunk.index} from {source} did not open: {exc}") from None
                if chunk_hash(plain) != m.chunks[chunk.index]:
                    raise TransferError(f"chunk {chunk.index} from {source} does not match the manifest")
                ahead[chunk.index] = plain
                while nxt in ahead:
                    yield ahead.pop(nxt)
                    nxt += 1
            self.relay.report_outcome(tid, Outcome(root=m.root))
            time.sleep(0.5)  # the source reads that word before the transfer closes
        finally:
            with self._lock:
                self._open.pop(tid, None)
            self.relay.close(tid)

    def source_ticket(self, site: str, transfer_id: str) -> Ticket | None:
        """The ticket of a download ``site``'s agent sends (the relay desk lets it in as the source)."""
        with self._lock:
            c = self._open.get(transfer_id)
        return Ticket.of(c.offer) if c is not None and c.dest is None and c.source == site else None

    def orders(self, site: str) -> tuple[list[StoreOrder], list[StoreOrder]]:
        """``site``'s part in the copies under way: (to send, to store)."""
        with self._lock:
            copies = list(self._open.values())
        send = [order_of(c.offer) for c in copies if c.source == site]
        store = [order_of(c.offer) for c in copies if c.dest == site]
        return send, store
