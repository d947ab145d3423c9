"""The data chain's context: the rule set, the ledger service, the key store and site stores.

In this version every site's store is a directory on the control plane's machine
(``$SUANLI_HOME/datachain/sites/<site>``), as ``suanli up --demo`` runs all sites on one host;
keys live in ``$SUANLI_HOME/datachain/keys``, apart from the data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanli.app.ledger import LedgerService, load_signing_key
from suanli.core.clock import Clock
from suanli.core.ledger import Checkpoint
from suanli.core.policy import RuleSet
from suanli.core.signednote import Verifier
from suanli.datachain.crypto import KeyStore
from suanli.datachain.rulesets import default_ruleset
from suanli.datachain.site_store import SiteStore
from suanli.store.db import Database


@dataclass
class Chain:
    db: Database
    clock: Clock
    root: Path
    rules: RuleSet
    keys: KeyStore
    ledger: LedgerService
    _stores: dict[str, SiteStore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Transfer id → who runs it now, in this process (a transfer runs once at a time).
    _running: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        db: Database,
        clock: Clock,
        home: Path,
        rules: RuleSet | None = None,
        witnesses: Sequence[Verifier] = (),
        signing_key: Callable[[Path], bytes] = load_signing_key,
    ) -> Chain:
        """``signing_key``: reads (or makes) the ledger's key given its file in the key store."""
        root = home / "datachain"
        (root / "sites").mkdir(parents=True, exist_ok=True)
        keys = KeyStore(root / "keys", forbidden=[root / "sites"])
        ledger = LedgerService(signing_key(keys.root / "ledger-ed25519.key"), witnesses=witnesses)
        return cls(db=db, clock=clock, root=root, rules=rules or default_ruleset(), keys=keys, ledger=ledger)

    def store(self, site: str) -> SiteStore:
        with self._lock:
            if site not in self._stores:
                self._stores[site] = SiteStore(self.root / "sites" / site, self.keys)
            return self._stores[site]

    def claim(self, transfer_id: str, by: str) -> str | None:
        """Mark ``transfer_id`` as running for ``by``; if it already runs, who runs it (and
        nothing is marked)."""
        with self._lock:
            holder = self._running.get(transfer_id)
            if holder is None:
                self._running[transfer_id] = by
            return holder

    def runner_of(self, transfer_id: str) -> str | None:
        """Who runs ``transfer_id`` in this process now (None: nobody)."""
        with self._lock:
            return self._running.get(transfer_id)

    def release(self, transfer_id: str) -> None:
        with self._lock:
            self._running.pop(transfer_id, None)

    def seal(self) -> Checkpoint | None:
        """After a commit that recorded ledger entries: sign a checkpoint over them (None: nothing
        new, or the ledger's alarm is raised)."""
        return self.ledger.seal(self.db, self.clock.now())
