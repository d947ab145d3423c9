"""Front-desk replicas on one database must hold the same keys; the database says which.

Two keys make a front desk who it is: the ledger's Ed25519 signing key (checkpoints, and the
HMAC tag of every entry, derive from it) and the Fernet key sealing job secrets. Neither is put
in the database: someone who can write the database must not be able to forge the ledger's
tags (docs/datachain.md), and a dump of it must hold no secret that opens the sealed ones
(docs/operators.md). Replicas get them from one shared secret source instead, the way every
replica gets its configuration: ``$SUANLI_LEDGER_KEY`` and ``$SUANLI_SECRET_KEY`` (else each
home's key files, which a single server keeps as before).

The database holds only what identifies each key: the ledger's public key, and the SHA-256 of
the sealing key. The first replica records them; a replica whose keys do not match refuses to
start, saying which variable to set, rather than signing a ledger with a second key (the other
replicas would raise the ledger's alarm) or sealing secrets the others cannot open.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from suanli.store.db import Database
from suanli.store.models import ServerKey

#: ``server_keys`` names, and the variable that gives every replica that key.
LEDGER = "ledger-ed25519"
SECRETS = "secrets-fernet"
VARIABLE = {LEDGER: "SUANLI_LEDGER_KEY", SECRETS: "SUANLI_SECRET_KEY"}


class KeyMismatch(RuntimeError):
    """This replica holds another key than the replicas before it on the same database."""


def agree(db: Database, name: str, mine: list[str], now: datetime) -> None:
    """Check this replica's key ``name`` against the one the database names (recording it when
    none is named yet). ``mine``: this replica's fingerprints, the key it signs or seals with
    first, keys it still accepts after (a rotation). A replica that seals with a newer key while
    still accepting the recorded one moves the record to its new key."""
    recorded = _recorded(db, name)
    if recorded is None:
        with contextlib.suppress(IntegrityError), db.session() as session:  # another replica may be first
            session.add(ServerKey(name=name, fingerprint=mine[0], created_at=now))
        recorded = _recorded(db, name)
    if recorded == mine[0]:
        return
    if recorded in mine:
        with db.session() as session:
            row = session.get(ServerKey, name)
            if row is not None:
                row.fingerprint, row.created_at = mine[0], now
        return
    raise KeyMismatch(
        f"this front desk's {name} key is not the one the other replicas on this database use "
        f"(fingerprint {recorded}); give every replica the same ${VARIABLE[name]}, or, if that key "
        f"is lost for good, delete the row named {name!r} from the server_keys table"
    )


def _recorded(db: Database, name: str) -> str | None:
    with db.read() as session:
        row = session.get(ServerKey, name)
        return row.fingerprint if row is not None else None
