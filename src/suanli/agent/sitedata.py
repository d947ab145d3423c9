"""The site's own data store, at its agent: ``<agent home>/store`` (the datasets, sealed at rest
where their grade asks) and ``<agent home>/keys`` (the at-rest and transfer keys, never beside
the data). The front desk keeps the metadata; the bytes of a dataset registered at this site rest
here.

:class:`SiteData` takes the store orders of the heartbeat (:class:`~suanli.core.protocol.StoreOrder`):
for each new one it pulls the sealed chunks from the front desk's relay on a thread of its own
(:func:`~suanli.datachain.relay.receive`: each chunk opened with the transfer's key, checked
against the manifest, stored), finishes and reports the root. It takes the send orders too (a
copy to another site): it seals its store's chunks and pushes them to the relay
(:class:`~suanli.datachain.relay.RelayChannel`), sending only what the destination lacks.
The same order is repeated until the transfer ends, so an agent that restarts picks it up and
resumes from what its store holds.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from suanli.agent.relay_link import HttpRelayLink
from suanli.core.protocol import StoreOrder
from suanli.datachain.manifest import Manifest
from suanli.datachain.relay import RelayChannel, receive
from suanli.datachain.sender import send
from suanli.datachain.site_store import SiteStore, agent_store
from suanli.datachain.transfer import Offer, TransferError

log = logging.getLogger("suanli.agent")


def open_store(home: Path) -> SiteStore:
    """The site's store under the agent's ``home``, its keys in a folder of their own."""
    return agent_store(home)


class SiteData:
    """The agent's store and the transfers coming into it."""

    def __init__(self, home: Path, server: str, token: str, *, idle_s: float = 120.0, poll_s: float = 5.0) -> None:
        self.store = open_store(home)
        self.link = HttpRelayLink(server, token)
        self.idle_s, self.poll_s = idle_s, poll_s
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def take(self, orders: list[StoreOrder]) -> None:
        """Start receiving every order not already under way."""
        self._start(orders, self._receive, "store")

    def send(self, orders: list[StoreOrder]) -> None:
        """Start sending every order not already under way."""
        self._start(orders, self._send, "send")

    def _start(self, orders: list[StoreOrder], work: Callable[[StoreOrder], None], what: str) -> None:
        for order in orders:
            key = f"{what}:{order.transfer_id}"
            with self._lock:
                if key in self._running:
                    continue
                self._running.add(key)
            threading.Thread(target=self._run, args=(key, work, order), name=f"suanli-{key}", daemon=True).start()

    def _run(self, key: str, work: Callable[[StoreOrder], None], order: StoreOrder) -> None:
        try:
            work(order)
        except (TransferError, ValueError, OSError) as exc:
            log.warning("transfer %s of %s stopped: %s", order.transfer_id, order.dataset, exc)
        except Exception:
            log.exception("transfer %s of %s failed", order.transfer_id, order.dataset)
        finally:
            with self._lock:
                self._running.discard(key)

    def busy(self) -> set[str]:  # ("store:" or "send:") + transfer id
        with self._lock:
            return set(self._running)

    def _receive(self, order: StoreOrder) -> None:
        root = receive(self.store, _offer(order), self.link, idle_s=self.idle_s, poll_s=self.poll_s)
        log.info("stored %s (transfer %s, root %s…)", order.dataset, order.transfer_id, root[:16])

    def _send(self, order: StoreOrder) -> None:
        offer = _offer(order)
        if not self.store.has(order.dataset) or self.store.manifest_of(order.dataset).root != offer.manifest.root:
            raise TransferError(f"this site's store holds no copy of '{order.dataset}' with the ordered root")
        channel = RelayChannel(self.link, wait_s=self.idle_s, poll_s=self.poll_s)
        with self.store.chunks(order.dataset) as chunks:
            result = send(chunks, offer, channel)
        log.info("sent %s (transfer %s, %d chunks)", order.dataset, order.transfer_id, result.chunks_sent)

    def close(self) -> None:
        self.link.close()


def _offer(order: StoreOrder) -> Offer:
    m = Manifest.model_validate(order.manifest)
    return Offer(order.transfer_id, order.dataset, m, base64.b64decode(order.key), order.at_rest)
