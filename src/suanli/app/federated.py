"""Federated runs at the front desk: owners' consent, the rounds' relay, and their record.

The front desk is the relay between a run's clients (one per dataset, at that dataset's site)
and its aggregator: both call it outward over HTTP, so no site accepts a connection. It holds
only public keys, masked updates, example counts and the seeds survivors reveal for dropped
clients (``core.secagg``) — never a plaintext update. A round moves ``keys`` → ``updates`` →
``reveals`` → the next round's ``keys`` (``done`` after the last); the aggregator moves it on.

- Consent: another tenant's dataset joins a run only with its owner's grant
  (``federated.grant`` on the ledger).
- DP: a run with ``dp`` spends ε (zCDP over all its rounds) and δ from every dataset's budget
  when it is created, each a ``privacy.spend`` on the ledger; past a budget it is refused (409)
  with the numbers, before any round.
- Every round goes on the ledger (``federated.round``): participants, dropped clients, example
  counts, ε per dataset and the SHA-256 of the aggregate. The front desk recomputes the
  aggregate from the masked updates and refuses one the aggregator got wrong.
- Raw data never moves: :func:`raw_bytes_moved` reads from the ledger every copy or download of
  the run's datasets.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.app import registry
from suanli.app.access import require
from suanli.app.chain import Chain
from suanli.app.datasets import owned_dataset
from suanli.app.errors import Conflict, NotFound, Unprocessable
from suanli.app.privacy import record_spend
from suanli.core.api_data import DpIn, FederationIn, FederationOut, RoundMessagesOut
from suanli.core.federated import FederatedError, next_params
from suanli.core.identity import Identity, Scope
from suanli.core.privacy import Spend, gaussian_rounds_epsilon
from suanli.core.secagg import SecAggError, unpack
from suanli.store.models import Dataset, FederatedGrant, FederatedMessage, Federation, LedgerEntry

#: The aggregate the aggregator posts must match the front desk's to this many parameter units.
_TOLERANCE = 1e-6


def digest(params: Sequence[float]) -> str:
    """SHA-256 of the parameters' canonical JSON: the aggregate's digest on the ledger."""
    return hashlib.sha256(json.dumps([float(p) for p in params], separators=(",", ":")).encode()).hexdigest()


def run_epsilon(dp: DpIn | None, rounds: int) -> float:
    return 0.0 if dp is None else gaussian_rounds_epsilon(dp.noise_multiplier, rounds, dp.delta)


# --- consent ---------------------------------------------------------------------------------


def grant(chain: Chain, who: Identity, name: str, tenant: str, *, granted: bool = True) -> None:
    """The owner's consent (or its withdrawal) that ``tenant``'s federated runs use ``name``."""
    now = chain.clock.now()
    with chain.db.session() as s:
        owned_dataset(s, who, name)
        row = s.get(FederatedGrant, (name, tenant))
        if granted and row is None:
            s.add(FederatedGrant(dataset=name, tenant=tenant, granted_by=who.name, granted_at=now))
        elif not granted:
            if row is None:
                raise NotFound(f"'{name}' has no federated grant for tenant {tenant}")
            s.delete(row)
        chain.ledger.record(
            s, "federated.grant", {"dataset": name, "tenant": tenant, "granted": granted, "actor": who.name}, now
        )
    chain.seal()


def _consented(s: Session, ds: Dataset, tenant: str) -> bool:
    return ds.owner == tenant or s.get(FederatedGrant, (ds.name, tenant)) is not None


# --- runs ------------------------------------------------------------------------------------


def _get(
    s: Session, who: Identity, fid: str, client: str | None = None, *, scope: Scope = Scope.JOBS_READ
) -> Federation:
    """The run, if ``who`` acts for its tenant, or (for a client's message) for the client's
    dataset's owner; anyone else gets the 404 a missing run gets. ``scope``: ``jobs:write`` for
    what moves the run on (a message, a round's close, the aggregate)."""
    require(who, scope)
    fed = s.get(Federation, fid)
    if fed is not None and who.sees_tenant(fed.tenant):
        return fed
    if fed is not None and client in fed.datasets:
        ds = s.get(Dataset, client)
        if ds is not None and who.sees_tenant(ds.owner):
            return fed
    raise NotFound(f"no federated run '{fid}'")


def _messages(s: Session, fed: Federation, kind: str) -> dict[str, FederatedMessage]:
    q = select(FederatedMessage).where(
        FederatedMessage.federation == fed.id, FederatedMessage.round == fed.round, FederatedMessage.kind == kind
    )
    return {m.client: m for m in s.scalars(q)}


def _out(s: Session, fed: Federation) -> FederationOut:
    keys = {c: m.payload for c, m in _messages(s, fed, "key").items()} if fed.phase != "keys" else {}
    sent = sorted(_messages(s, fed, "update"))
    dp = DpIn.model_validate(fed.dp) if fed.dp else None
    return FederationOut(
        id=fed.id,
        tenant=fed.tenant,
        datasets=fed.datasets,
        strategy=fed.strategy,
        mu=fed.mu,
        rounds=fed.rounds,
        dp=dp,
        round=fed.round,
        phase=fed.phase,
        params=fed.params,
        keys=keys,
        sent=sent,
        dropped=sorted(set(keys) - set(sent)) if fed.phase == "reveals" else [],
        epsilon_per_dataset=run_epsilon(dp, fed.rounds),
    )


def create(chain: Chain, who: Identity, body: FederationIn) -> FederationOut:
    """Start a run for ``who``'s tenant; each dataset needs its owner's consent, and with DP,
    enough budget for all the rounds (spent now, on the ledger)."""
    require(who, Scope.JOBS_WRITE)
    if who.tenant is None:
        raise Unprocessable("a federated run belongs to a tenant; the admin has none: use a member's token")
    if len(set(body.datasets)) != len(body.datasets):
        raise Unprocessable("each dataset may join a run once")
    now = chain.clock.now()
    fid = uuid.uuid4().hex[:16]
    eps = run_epsilon(body.dp, body.rounds)
    with chain.db.session() as s:
        for name in body.datasets:
            ds = registry.get_dataset(s, name)
            if not _consented(s, ds, who.tenant):
                raise NotFound(
                    f"no dataset '{name}' that tenant {who.tenant} may train on: its owner grants that with "
                    f"`suanli data federate {name} --tenant {who.tenant}`"
                )
        fed = Federation(
            id=fid,
            tenant=who.tenant,
            created_by=who.name,
            created_at=now,
            datasets=list(body.datasets),
            strategy=body.strategy,
            mu=body.mu,
            rounds=body.rounds,
            dp=body.dp.model_dump() if body.dp else None,
            round=0,
            phase="keys",
            params=[float(p) for p in body.params],
        )
        s.add(fed)
        s.flush()
        chain.ledger.record(
            s,
            "federated.start",
            {
                "job": fid,
                "tenant": who.tenant,
                "actor": who.name,
                "datasets": list(body.datasets),
                "strategy": body.strategy,
                "rounds": body.rounds,
                "dp": fed.dp,
                "params_sha256": digest(fed.params),
            },
            now,
        )
        if body.dp is not None:
            for name in body.datasets:
                record_spend(
                    s,
                    chain,
                    name,
                    Spend(eps, body.dp.delta),
                    purpose="federated",
                    actor=who.name,
                    job_id=fid,
                    note=f"{body.rounds} rounds, noise multiplier {body.dp.noise_multiplier:g}",
                )
        out = _out(s, fed)
    chain.seal()
    return out


def show(chain: Chain, who: Identity, fid: str, client: str | None = None) -> FederationOut:
    with chain.db.read() as s:
        return _out(s, _get(s, who, fid, client))


def _expect(fed: Federation, round_no: int, phase: str) -> None:
    if fed.phase == "done":
        raise Conflict(f"federated run {fed.id} is done after {fed.rounds} rounds")
    if fed.round != round_no or fed.phase != phase:
        raise Conflict(
            f"federated run {fed.id} is in round {fed.round}, phase {fed.phase}; "
            f"this was for round {round_no}, phase {phase}"
        )


def _check_payload(fed: Federation, kind: str, payload: object) -> None:
    """A key is 32 bytes of hex; an update has the model's length; a reveal names only clients
    of the run, each with a 32-byte seed."""
    if payload is None:
        field = {"key": "key", "update": "masked", "reveal": "seeds"}[kind]
        raise Unprocessable(f"a {kind} message needs '{field}'")
    try:
        if kind == "key" and len(bytes.fromhex(str(payload))) != 32:
            raise ValueError("an X25519 public key is 32 bytes (64 hex digits)")
        if kind == "update":
            unpack(str(payload), len(fed.params))
        if kind == "reveal":
            seeds = payload if isinstance(payload, dict) else {}
            for d, seed in seeds.items():
                if d not in fed.datasets or len(bytes.fromhex(str(seed))) != 32:
                    raise ValueError(f"a revealed seed names a client of the run and is 32 bytes; {d!r} is not")
    except (SecAggError, ValueError) as exc:
        raise Unprocessable(str(exc)) from exc


def post(
    chain: Chain, who: Identity, fid: str, round_no: int, client: str, kind: str, payload: object, n: int = 0
) -> None:
    """A client's message: its ``key`` (phase keys), masked ``update`` (updates) or ``reveal`` (reveals)."""
    phase = {"key": "keys", "update": "updates", "reveal": "reveals"}[kind]
    with chain.db.session() as s:
        fed = _get(s, who, fid, client, scope=Scope.JOBS_WRITE)
        if client not in fed.datasets:
            raise Unprocessable(f"{client} is not a dataset of federated run {fid}")
        _expect(fed, round_no, phase)
        keys = _messages(s, fed, "key")
        if kind != "key" and client not in keys:
            raise Conflict(f"{client} published no key in round {round_no}; it sits this round out")
        _check_payload(fed, kind, payload)
        if s.get(FederatedMessage, (fid, round_no, client, kind)) is not None:
            raise Conflict(f"{client} already sent its {kind} for round {round_no}")
        s.add(FederatedMessage(federation=fid, round=round_no, client=client, kind=kind, payload=payload, n=n))
        try:
            s.flush()
        except IntegrityError as exc:  # the same message twice at once
            raise Conflict(f"{client} already sent its {kind} for round {round_no}") from exc


def advance(chain: Chain, who: Identity, fid: str, round_no: int, to: str) -> FederationOut:
    """The aggregator moves the round on: ``updates`` freezes the keys; ``reveals`` closes the
    round to updates, declaring every keyed client without one dropped."""
    with chain.db.session() as s:
        fed = _get(s, who, fid, scope=Scope.JOBS_WRITE)
        _expect(fed, round_no, {"updates": "keys", "reveals": "updates"}[to])
        if to == "updates" and len(_messages(s, fed, "key")) < 2:
            raise Conflict("secure aggregation needs at least two clients' keys before a round starts")
        if to == "reveals" and not _messages(s, fed, "update"):
            raise Conflict(f"no client has sent an update in round {round_no} yet")
        fed.phase = to
        s.flush()
        return _out(s, fed)


def messages(chain: Chain, who: Identity, fid: str) -> RoundMessagesOut:
    """What the aggregator receives for the round in progress."""
    with chain.db.read() as s:
        return messages_in(s, _get(s, who, fid))


def aggregate(chain: Chain, who: Identity, fid: str, round_no: int, params: Sequence[float]) -> FederationOut:
    """The aggregator's new global parameters for the round: checked against the front desk's
    own unmasking, recorded on the ledger, and the next round opened."""
    now = chain.clock.now()
    with chain.db.session() as s:
        fed = _get(s, who, fid, scope=Scope.JOBS_WRITE)
        _expect(fed, round_no, "reveals")
        msgs = messages_in(s, fed)
        try:
            expected = next_params(fid, fed.params, msgs)
        except (SecAggError, FederatedError) as exc:
            raise Conflict(str(exc)) from exc
        if len(params) != len(expected) or any(abs(a - b) > _TOLERANCE for a, b in zip(params, expected, strict=False)):
            raise Unprocessable("the aggregate does not match the masked updates' sum; nothing was recorded")
        dp = DpIn.model_validate(fed.dp) if fed.dp else None
        chain.ledger.record(
            s,
            "federated.round",
            {
                "job": fid,
                "round": round_no,
                "participants": sorted(msgs.masked),
                "dropped": sorted(set(msgs.keys) - set(msgs.masked)),
                "sizes": dict(sorted(msgs.sizes.items())),
                "epsilon_per_dataset": run_epsilon(dp, 1) if dp else 0.0,
                "aggregate_sha256": digest(expected),
            },
            now,
        )
        fed.params = list(expected)
        fed.round += 1
        fed.phase = "done" if fed.round >= fed.rounds else "keys"
        s.flush()
        out = _out(s, fed)
    chain.seal()
    return out


def messages_in(s: Session, fed: Federation) -> RoundMessagesOut:
    updates = _messages(s, fed, "update")
    return RoundMessagesOut(
        round=fed.round,
        keys={c: m.payload for c, m in _messages(s, fed, "key").items()},
        masked={c: m.payload for c, m in updates.items()},
        sizes={c: m.n for c, m in updates.items()},
        reveals={c: m.payload for c, m in _messages(s, fed, "reveal").items()},
    )


def raw_bytes_moved(chain: Chain, who: Identity, fid: str) -> int:
    """Bytes of the run's datasets that ever left their home site, from the ledger: every
    completed copy and every download of them, at the dataset's size."""
    with chain.db.read() as s:
        fed = _get(s, who, fid)
        names = set(fed.datasets)
        sizes = {n: int(registry.get_dataset(s, n).manifest["size"]) for n in names}
        by_transfer: dict[str, str] = {}
        moved = 0
        for kind, data in s.execute(select(LedgerEntry.kind, LedgerEntry.data).order_by(LedgerEntry.index)):
            body = json.loads(data)["body"]
            if kind == "decision" and body.get("dataset") in names and body.get("transfer"):
                by_transfer[body["transfer"]] = body["dataset"]
            elif kind == "transfer.state" and body.get("state") == "done" and body.get("transfer") in by_transfer:
                moved += sizes[by_transfer[body["transfer"]]]
            elif kind == "download" and body.get("dataset") in names:
                moved += sizes[body["dataset"]]
        return moved
