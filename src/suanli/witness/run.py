"""The witness's loop: poll the front desk for the newest checkpoint, check, cosign, post back.

Outbound HTTP only (the witness needs no open port and the operator cannot push to it): each
round fetches ``/api/v1/ledger/checkpoints/latest`` and, when the log grew, the consistency
proof from the size this witness cosigned last. The proof's own roots are never trusted: the
witness checks it against the root in its state and the root the log signed.
"""

from __future__ import annotations

import logging
import threading

from suanli.core.ledger import Checkpoint
from suanli.core.signednote import Verifier, matches, verify_cosignature
from suanli.sdk.client import Client
from suanli.witness.state import Refused, Witness

log = logging.getLogger(__name__)


def poll_once(client: Client, witness: Witness, log_key: Verifier) -> str:
    """One round; returns what happened in a sentence. :class:`Refused` when it will not cosign."""
    latest = client.ledger_latest_checkpoint()
    if latest is None:
        return "the log has no signed checkpoint yet"
    try:
        cp = Checkpoint.from_note(str(latest["note"]))
    except ValueError as exc:
        raise witness.refuse(f"the front desk sent a checkpoint that does not parse: {exc}") from None
    mine = [c for c in cp.cosignatures if matches(c, witness.vkey)]
    if (
        cp.size == witness.seen.size
        and cp.root.hex() == witness.seen.root
        and any(verify_cosignature(cp.text(), c, witness.vkey) for c in mine)
    ):
        return f"up to date: size {cp.size} already cosigned"
    old = witness.seen.size
    proof: list[bytes] = []
    if 0 < old < cp.size:
        reply = client.consistency_proof(old, cp.size)
        proof = [bytes.fromhex(h) for h in reply["proof"]]
    sig = witness.check(cp, log_key, proof)
    client.ledger_cosign(cp.size, sig.line())
    return f"cosigned size {cp.size} (root {cp.root.hex()[:16]}…)" + (f", consistent with size {old}" if old else "")


def run_forever(client: Client, witness: Witness, log_key: Verifier, interval: float, stop: threading.Event) -> None:
    """Poll until ``stop``; a refusal is logged as an error every round until an operator acts."""
    while not stop.is_set():
        try:
            log.info("%s", poll_once(client, witness, log_key))
        except Refused as exc:
            log.error("WITNESS REFUSES to cosign: %s", exc)
        except Exception as exc:  # the front desk may be down or restarting: try again next round
            log.warning("witness round failed: %s", exc)
        stop.wait(interval)
