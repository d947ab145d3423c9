"""Registering a dataset at a site by upload: the bytes pass through the front desk, sealed,
chunk by chunk, and rest only in the site agent's store.

1. ``start``: the registration is checked as ``register_dataset`` checks it (the site, a new
   name, L1 for derived data) and the manifest the uploader declares must match its Merkle
   root. A transfer id and a per-transfer key are made, in memory only.
2. The site's agent finds a :class:`~suanli.core.protocol.StoreOrder` in its heartbeat (the
   key goes to it, never to the relay), opens the transfer at the relay and says which chunks
   its store already holds (``have``: so an upload resumes after the agent restarts).
3. ``put``: each plain chunk is checked against the declared manifest, sealed here with the
   transfer's key (AES-256-GCM, the same associated data as every copy) and pushed into the
   relay, which holds at most its bound of sealed chunks: a full relay answers "not now" and
   the uploader sends again (the back-pressure). No plaintext is written anywhere here.
4. The agent opens, checks (BLAKE3) and stores each chunk, sealed at rest when the grade asks;
   once it holds them all it finishes (Merkle root, durability) and says so.
5. ``finish``: on the agent's word that it holds the manifest's root, the dataset is
   registered with the site as its home, and the upload goes on the ledger (``upload``).

An upload lives in this process's memory: a front desk that restarts forgets it (and its key),
and the uploader starts again under a new transfer. One left idle for :data:`IDLE_S` is dropped.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from suanli.app import registry
from suanli.app.access import require
from suanli.app.agentcopies import order_of
from suanli.app.errors import Conflict, Forbidden, NotFound, Unprocessable
from suanli.app.sites import authenticate_site
from suanli.core.api_data import DatasetOut
from suanli.core.datasets import Classification
from suanli.core.identity import Identity, Scope
from suanli.core.protocol import StoreOrder
from suanli.datachain.crypto import new_key, seal
from suanli.datachain.manifest import Manifest, check_chunk_size, chunk_hash
from suanli.datachain.relay import Chunk, RelayLost, Ticket
from suanli.datachain.transfer import Offer, TransferError

if TYPE_CHECKING:  # the control plane holds the uploads (``control.uploads``)
    from suanli.app.control import ControlPlane

#: An upload nobody has touched for this long is dropped (its chunks and key with it).
IDLE_S = 3600.0
#: The longest one request waits (for the agent's word, for room in the relay).
MAX_WAIT_S = 25.0


@dataclass
class Upload:
    offer: Offer
    site: str
    owner: str
    classification: Classification | None
    derived_from: list[str]
    by: str
    touched: float = field(default_factory=time.monotonic)


class Uploads:
    """The uploads under way at this front desk, in memory."""

    def __init__(self) -> None:
        self._open: dict[str, Upload] = {}
        self._lock = threading.Lock()

    def add(self, up: Upload) -> None:
        with self._lock:
            self._drop_idle()
            for tid, u in list(self._open.items()):
                if u.offer.dataset != up.offer.dataset:
                    continue
                if u.by != up.by:
                    raise Conflict(f"dataset '{up.offer.dataset}' is already being uploaded by {u.by}")
                del self._open[tid]  # the same uploader starts again: the old upload ends here
            self._open[up.offer.transfer_id] = up

    def get(self, transfer_id: str) -> Upload | None:
        with self._lock:
            up = self._open.get(transfer_id)
            if up is not None:
                up.touched = time.monotonic()
            return up

    def pop(self, transfer_id: str) -> None:
        with self._lock:
            self._open.pop(transfer_id, None)

    def for_site(self, site: str) -> list[Upload]:
        with self._lock:
            self._drop_idle()
            return [u for u in self._open.values() if u.site == site]

    def _drop_idle(self) -> None:
        now = time.monotonic()
        for tid in [t for t, u in self._open.items() if now - u.touched > IDLE_S]:
            del self._open[tid]


def _wait(wait_s: float) -> float:
    return max(0.0, min(wait_s, MAX_WAIT_S))


def _check_registration(
    control: ControlPlane,
    who: Identity,
    *,
    name: str,
    owner: str,
    site: str,
    manifest: Manifest,
    classification: Classification | None,
    derived_from: list[str],
) -> None:
    """What a registration at a site must be: the owner's members (or the admin) register, the
    manifest's chunks fit and make its root, a grade or inputs to inherit one, a known site, a new
    name, L1 for derived data."""
    require(who, Scope.DATA_WRITE)
    if not who.sees_tenant(owner):
        raise Forbidden(f"only members of '{owner}' (or the admin) register its datasets")
    try:
        check_chunk_size(manifest.chunk_size)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    try:
        rooted = manifest.verify_root()
    except ValueError:  # a chunk hash that is not hex
        rooted = False
    if not rooted:
        raise Unprocessable("the manifest's chunk hashes (BLAKE3, hex) do not make its Merkle root")
    if classification is None and not derived_from:
        raise Unprocessable("give a classification, or derived_from for a derived dataset that inherits one")
    chain = control.chain
    with chain.db.read() as s:
        registry.site_facts(s, site)
        registry.ensure_new(s, name)
        registry.check_derived_home(s, chain, name, site, derived_from)


def start(
    control: ControlPlane,
    who: Identity,
    *,
    name: str,
    owner: str,
    site: str,
    manifest: Manifest,
    classification: Classification | None,
    derived_from: list[str],
) -> dict[str, object]:
    """Open an upload of ``name`` to ``site``'s store (the owner's members and the admin)."""
    _check_registration(
        control,
        who,
        name=name,
        owner=owner,
        site=site,
        manifest=manifest,
        classification=classification,
        derived_from=derived_from,
    )
    at_rest = classification.sealed_at_rest if classification else True
    try:
        offer = Offer(uuid.uuid4().hex[:16], name, manifest, new_key(), at_rest)
    except TransferError as exc:
        raise Unprocessable(str(exc)) from None
    control.uploads.add(Upload(offer, site, owner, classification, list(derived_from), who.name))
    control.relay.open(Ticket.of(offer))
    control.signals.bump(f"site:{site}")  # the agent's held heartbeat answers with the order
    return {"id": offer.transfer_id, "dataset": name, "site": site, "chunks": manifest.count, "at_rest": at_rest}


def _mine(control: ControlPlane, who: Identity, transfer_id: str) -> Upload:
    require(who, Scope.DATA_WRITE)
    up = control.uploads.get(transfer_id)
    if up is None or not (who.is_admin or up.by == who.name):
        raise NotFound(f"no upload '{transfer_id}' under way; start it again with `suanli data register --upload`")
    return up


def check(control: ControlPlane, who: Identity, transfer_id: str) -> None:
    """That ``who`` is uploading ``transfer_id`` (before its chunk's body is read)."""
    _mine(control, who, transfer_id)


def have(control: ControlPlane, who: Identity, transfer_id: str, wait_s: float) -> list[int] | None:
    """The chunks the site's store holds, once its agent has said (``None``: not yet)."""
    _mine(control, who, transfer_id)
    try:
        got = control.relay.wait_have(transfer_id, _wait(wait_s))
    except RelayLost as exc:
        raise NotFound(str(exc)) from None
    return None if got is None else sorted(got)


def put(control: ControlPlane, who: Identity, transfer_id: str, index: int, data: bytes, wait_s: float) -> bool:
    """Check chunk ``index`` against the declared manifest, seal it, push it into the relay;
    ``False`` when the relay stayed full for ``wait_s`` (send it again)."""
    up = _mine(control, who, transfer_id)
    m = up.offer.manifest
    if not 0 <= index < m.count:
        raise Unprocessable(f"the upload has chunks 0 to {m.count - 1}, not {index}")
    if len(data) != m.chunk_len(index) or chunk_hash(data) != m.chunks[index]:
        raise Unprocessable(f"chunk {index} does not match the manifest the upload declared")
    last = index == m.count - 1
    blob = seal(up.offer.key, transfer_id, index, last, data)
    del data  # the plain chunk goes no further than this request
    try:
        return control.relay.push(transfer_id, Chunk(index, last, blob), _wait(wait_s))
    except RelayLost as exc:
        raise Conflict(f"{exc}: ask which chunks the site holds (GET …/have) before sending") from None
    except TransferError as exc:
        raise Conflict(str(exc)) from None


def finish(control: ControlPlane, who: Identity, transfer_id: str, wait_s: float) -> DatasetOut | None:
    """Register the dataset once the site's agent holds it all (``None``: it has not said yet)."""
    up = _mine(control, who, transfer_id)
    try:
        outcome = control.relay.wait_outcome(transfer_id, _wait(wait_s))
    except RelayLost as exc:
        raise NotFound(str(exc)) from None
    if outcome is None:
        return None
    m = up.offer.manifest
    if outcome.missing:
        raise Conflict(
            f"the site still lacks chunks {list(outcome.missing)[:10]}; "
            "ask which it holds (GET …/have) and send the rest"
        )
    if outcome.root != m.root:
        control.uploads.pop(transfer_id)
        control.relay.close(transfer_id)
        raise Conflict(f"the site refused the upload: {outcome.error or 'its root differs from the manifest'}")
    entry: dict[str, object] = {"transfer": transfer_id, "sealed_at_rest": up.offer.at_rest}
    out = _register_at_site(
        control, who, up.offer.dataset, up.owner, up.site, m, up.classification, up.derived_from, "upload", entry
    )
    control.uploads.pop(transfer_id)
    control.relay.close(transfer_id)
    return out


def _register_at_site(
    control: ControlPlane,
    who: Identity,
    name: str,
    owner: str,
    site: str,
    m: Manifest,
    classification: Classification | None,
    derived_from: list[str],
    kind: str,
    entry: dict[str, object],
) -> DatasetOut:
    """Register ``name`` with its home copy at ``site``'s agent; ``kind`` (``upload``,
    ``local``) goes on the ledger after ``dataset.registered``, with ``entry``."""
    chain = control.chain
    now = chain.clock.now()
    with chain.db.session() as s:
        ds = registry.register(
            s,
            chain,
            name=name,
            owner=owner,
            home_site=site,
            manifest=m,
            classification=classification,
            derived_from=derived_from,
            graded_by=who.name,
            now=now,
        )
        ds.home_at_agent = True
        body = {"dataset": name, "site": site, "root": m.root, "size": m.size, "by": who.name, **entry}
        chain.ledger.record(s, kind, body, now)
        out = registry.dataset_out(s, ds)
    chain.seal()
    return out


def register_local(
    control: ControlPlane,
    who: Identity,
    site_token: str | None,
    *,
    name: str,
    owner: str,
    site: str,
    manifest: Manifest,
    classification: Classification | None,
    derived_from: list[str],
    sealed_at_rest: bool,
) -> DatasetOut:
    """Register a file already in ``site``'s agent store (``suanli data register --local-path``,
    run at the site): the owner's member asks, and the site's token (``site_token``, which only
    the site's operator can read) says the bytes are at that site. No byte reaches the front desk."""
    _check_registration(
        control,
        who,
        name=name,
        owner=owner,
        site=site,
        manifest=manifest,
        classification=classification,
        derived_from=derived_from,
    )
    with control.db.read() as s:
        authenticate_site(s, site, site_token)
    want = classification.sealed_at_rest if classification else True
    if want and not sealed_at_rest:
        raise Unprocessable(f"'{name}' must be sealed at rest at its site (its grade asks it); register it again")
    entry: dict[str, object] = {"sealed_at_rest": sealed_at_rest}
    return _register_at_site(control, who, name, owner, site, manifest, classification, derived_from, "local", entry)


def store_orders(control: ControlPlane, site: str) -> list[StoreOrder]:
    """What ``site``'s agent is to take into its store: the uploads to it under way."""
    return [order_of(u.offer) for u in control.uploads.for_site(site)]


def ticket_for(control: ControlPlane, site: str, transfer_id: str) -> Ticket | None:
    """The relay's ticket of an upload to ``site`` (the relay desk lets its agent in as the
    destination), or ``None``."""
    up = control.uploads.get(transfer_id)
    return Ticket.of(up.offer) if up is not None and up.site == site else None
