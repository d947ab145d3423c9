"""The site's own data store, at its agent: ``<agent home>/store`` (the datasets, sealed at rest
where their grade asks) and ``<agent home>/keys`` (the at-rest and transfer keys, never beside
the data). The front desk keeps the metadata; the bytes of a dataset registered at this site rest
here.

:class:`SiteData` takes the store orders of the heartbeat (:class:`~suanli.core.protocol.StoreOrder`):
for each new one it pulls the sealed chunks from the front desk's relay on a thread of its own
(:func:`~suanli.datachain.relay.receive`: each chunk opened with the transfer's key, checked
against the manifest, stored), finishes and reports the root. The same order is repeated until
the transfer ends, so an agent that restarts picks it up and resumes from what its store holds.
"""

from __future__ import annotations

import base64
import logging
import threading
from pathlib import Path

from suanli.agent.relay_link import HttpRelayLink
from suanli.core.protocol import StoreOrder
from suanli.datachain.crypto import KeyStore
from suanli.datachain.manifest import Manifest
from suanli.datachain.relay import receive
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import Offer, TransferError

log = logging.getLogger("suanli.agent")

STORE_DIR = "store"
KEYS_DIR = "keys"


def open_store(home: Path) -> SiteStore:
    """The site's store under the agent's ``home``, its keys in a folder of their own."""
    store_root = home / STORE_DIR
    return SiteStore(store_root, KeyStore(home / KEYS_DIR, forbidden=[store_root]))


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
        for order in orders:
            with self._lock:
                if order.transfer_id in self._running:
                    continue
                self._running.add(order.transfer_id)
            threading.Thread(
                target=self._receive, args=(order,), name=f"suanli-store-{order.transfer_id}", daemon=True
            ).start()

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def _receive(self, order: StoreOrder) -> None:
        try:
            offer = Offer(
                order.transfer_id,
                order.dataset,
                Manifest.model_validate(order.manifest),
                base64.b64decode(order.key),
                order.at_rest,
            )
            root = receive(self.store, offer, self.link, idle_s=self.idle_s, poll_s=self.poll_s)
            log.info("stored %s (transfer %s, root %s…)", order.dataset, order.transfer_id, root[:16])
        except (TransferError, ValueError) as exc:
            log.warning("transfer %s of %s stopped: %s", order.transfer_id, order.dataset, exc)
        except Exception:
            log.exception("transfer %s of %s failed", order.transfer_id, order.dataset)
        finally:
            with self._lock:
                self._running.discard(order.transfer_id)

    def close(self) -> None:
        self.link.close()
