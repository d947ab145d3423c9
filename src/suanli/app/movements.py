"""Decisions and transfers: every movement goes through the policy engine and onto the ledger.

A transfer is created with its decision: ``denied`` (nothing ever moves), ``held`` (waiting
for an accepted filing, the reason says which) or ``ready``. Asking for it to run re-checks the
hold and queues it (``queued``) for the transfer runner (``app/transfers.py``), which runs every
copy off the request path. Running it re-checks the hold again, adds its individuals to the
exporter's yearly counters once, then copies chunk by chunk (sealed, verified) from the source
site's store to the destination's; a run that stops half-way resumes where it stopped. Every
state change goes through :func:`suanli.core.states.check_transfer_transition`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import pipl, registry
from suanli.app.chain import Chain
from suanli.app.errors import Conflict, Forbidden, NotFound, Unprocessable
from suanli.core.api_data import DecisionOut, TransferOut
from suanli.core.holds import FilingFacts, FilingState, Hold, hold_for
from suanli.core.network import Zone
from suanli.core.policy import (
    Decision,
    Movement,
    MovementKind,
    Purpose,
    Route,
    SiteFacts,
    counting_year,
    decide,
    may_read,
)
from suanli.core.states import TransferState, check_transfer_transition
from suanli.datachain.crypto import new_key
from suanli.datachain.manifest import Manifest
from suanli.datachain.sender import SendResult, send
from suanli.datachain.site_store import LocalChannel, SiteStore
from suanli.datachain.transfer import Channel, Offer, TransferError
from suanli.store.models import DataTransfer, Filing, Replica

ChannelFactory = Callable[[SiteStore], Channel]


def decision_body(d: Decision) -> dict[str, Any]:
    return {
        "route": d.route.value,
        "rule_ids": list(d.rule_ids),
        "ruleset_version": d.ruleset_version,
        "ruleset_sha256": d.ruleset_sha256,
        "export": d.export,
        "adds_pi": d.adds_pi,
        "adds_spi": d.adds_spi,
    }


def decision_out(d: Decision) -> DecisionOut:
    """The decision as the API answers it (``check``, and each transfer's ``decision``)."""
    return DecisionOut.model_validate(d.to_dict())


def movement_for(
    session: Session,
    name: str,
    to: str | None,
    kind: MovementKind,
    *,
    zone: Zone | None = None,
    purpose: Purpose = Purpose.NONE,
    judicial_approval: bool = False,
    year: int,
) -> Movement:
    ds = registry.get_dataset(session, name)
    home = registry.site_facts(session, ds.home_site)
    if to is not None:
        dest = registry.site_facts(session, to)
    elif zone is not None:
        dest = SiteFacts(name=f"client@{zone.value}", region="", zone=zone)
    else:
        raise Unprocessable("say where the data goes: a site, or the requester's zone")
    exporter = registry.exporter_of(session, ds.owner)
    return Movement(
        kind=kind,
        dataset=name,
        classification=registry.classification_of(session, ds),
        home=home,
        source=home,
        destination=dest,
        exporter=exporter,
        purpose=purpose,
        judicial_approval=judicial_approval,
        counters=registry.counters_of(session, exporter.name, year),
    )


def filings_for(session: Session, m: Movement) -> list[FilingFacts]:
    rows = session.scalars(select(Filing).where(Filing.dataset == m.dataset, Filing.exporter == m.exporter.name)).all()
    return [
        FilingFacts(
            id=f.id,
            route=Route(f.route),
            state=FilingState(f.state),
            dataset=f.dataset,
            exporter=f.exporter,
            destination=f.destination,
            expires_at=f.expires_at,
        )
        for f in rows
    ]


def decided(session: Session, chain: Chain, m: Movement, now: datetime) -> tuple[Decision, Hold]:
    """The rules' decision on ``m`` and whether it may go now (the filings on record count)."""
    d = decide(m, chain.rules)
    return d, hold_for(d, m, filings_for(session, m), now)


def check(session: Session, chain: Chain, m: Movement, now: datetime) -> tuple[Decision, Hold]:
    """A dry run: the decision and whether it may go now, recorded nowhere. The ledger is
    permanent, so only what happens goes on it (a transfer request, a download, a placement);
    a question asked a thousand times would bury those entries."""
    return decided(session, chain, m, now)


def create_transfer(
    session: Session,
    chain: Chain,
    *,
    dataset: str,
    to: str,
    purpose: Purpose,
    bandwidth_bps: float | None,
    actor: str,
    now: datetime,
    for_job: str | None = None,
) -> DataTransfer:
    m = movement_for(session, dataset, to, MovementKind.TRANSFER, purpose=purpose, year=counting_year(now))
    if to in registry.replicas_of(session, dataset) or to == m.home.name:
        raise Conflict(f"'{dataset}' already lies at {to}")
    d, hold = decided(session, chain, m, now)
    owners_word = pipl.pipl_record(session, m, d)
    state = _refused_state(d) if not hold.ok else TransferState.READY
    t = DataTransfer(
        id=uuid.uuid4().hex[:16],
        dataset=dataset,
        source_site=m.source.name,
        dest_site=to,
        exporter=m.exporter.name,
        purpose=purpose.value,
        state=state,
        reason=hold.reason,
        decision=d.to_dict(),
        filing_id=hold.filing_id,
        counted=False,
        bytes_done=0,
        chunks_resent=0,
        bandwidth_bps=bandwidth_bps,
        for_job=for_job,
        created_at=now,
        updated_at=now,
    )
    session.add(t)
    session.flush()
    chain.ledger.record(
        session,
        "decision",
        {
            "dataset": dataset,
            "kind": m.kind.value,
            "source": m.source.name,
            "destination": to,
            "exporter": m.exporter.name,
            "actor": actor,
            "transfer": t.id,
            **({"for_job": for_job} if for_job else {}),
            "dry_run": False,
            **decision_body(d),
            **owners_word,
        },
        now,
    )
    chain.ledger.record(session, "transfer.state", {"transfer": t.id, "state": state, "filing": t.filing_id}, now)
    return t


def get_transfer(session: Session, transfer_id: str) -> DataTransfer:
    t = session.get(DataTransfer, transfer_id)
    if t is None:
        raise NotFound(f"no transfer '{transfer_id}'; see `suanli data transfers`")
    return t


def _refused_state(d: Decision) -> TransferState:
    return TransferState.DENIED if d.route == Route.DENY else TransferState.HELD


def set_state(t: DataTransfer, state: TransferState) -> None:
    """The one place a transfer's state is written: through the transition table in ``core``."""
    check_transfer_transition(TransferState(t.state), state)
    t.state = state


def _recheck(s: Session, chain: Chain, t: DataTransfer, now: datetime) -> tuple[Decision, Hold, Forbidden | None]:
    """Re-decide ``t`` and re-check its hold. A refusal is written (state, reason, ledger) and
    handed back for the caller to raise once the session is committed."""
    if t.state == TransferState.DONE:
        raise Conflict(f"transfer {t.id} is already done")
    if t.state == TransferState.DENIED:
        raise Forbidden(f"transfer {t.id} was denied by policy and never moves: {t.reason}")
    m = movement_for(
        s, t.dataset, t.dest_site, MovementKind.TRANSFER, purpose=Purpose(t.purpose), year=counting_year(now)
    )
    d, hold = decided(s, chain, m, now)
    if hold.ok:
        return d, hold, None
    set_state(t, _refused_state(d))
    t.reason, t.updated_at = hold.reason, now
    chain.ledger.record(s, "transfer.state", {"transfer": t.id, "state": t.state}, now)
    return d, hold, Forbidden(f"transfer {t.id} cannot run: {hold.reason}")


def queue_transfer(chain: Chain, transfer_id: str) -> DataTransfer:
    """Check that ``transfer_id`` may run now and mark it ``queued`` for the transfer runner.
    A refusal is committed (state, reason, ledger) before it is raised. Nothing is counted and
    nothing goes on the ledger for queueing itself: the run does that when bytes start to move."""
    now = chain.clock.now()
    with chain.db.session() as s:
        t = get_transfer(s, transfer_id)
        _, hold, refusal = _recheck(s, chain, t, now)
        if refusal is None:
            set_state(t, TransferState.QUEUED)
            t.reason, t.updated_at = f"queued to run: {hold.reason}", now
    if refusal is not None:
        chain.seal()
        raise refusal
    with chain.db.read() as s:
        return get_transfer(s, transfer_id)


def left_running(session: Session) -> list[str]:
    """Transfers a stopped server left queued or running (oldest first): the runner resumes them."""
    states = (TransferState.QUEUED, TransferState.RUNNING)
    q = select(DataTransfer.id).where(DataTransfer.state.in_(states)).order_by(DataTransfer.created_at)
    return list(session.scalars(q))


def _begin_run(chain: Chain, transfer_id: str) -> tuple[Offer, str, str]:
    """Re-decide and re-check the hold; count the export once; hand back what to send.
    A refusal is committed (state and reason) before it is raised, and moves nothing."""
    now = chain.clock.now()
    with chain.db.session() as s:
        t = get_transfer(s, transfer_id)
        d, hold, refusal = _recheck(s, chain, t, now)
        if refusal is None:
            if d.export and not t.counted:
                registry.add_to_counters(s, t.exporter, counting_year(now), d.adds_pi, d.adds_spi)
                t.counted = True
            set_state(t, TransferState.RUNNING)
            t.reason, t.filing_id, t.updated_at, t.decision = hold.reason, hold.filing_id, now, d.to_dict()
            t.started_at = now
            body = {"transfer": t.id, "state": TransferState.RUNNING, "filing": hold.filing_id}
            chain.ledger.record(s, "transfer.state", {**body, "counted_pi": d.adds_pi, "counted_spi": d.adds_spi}, now)
        ds = registry.get_dataset(s, t.dataset)
        at_rest = registry.classification_of(s, ds).sealed_at_rest
        offer = Offer(t.id, t.dataset, Manifest.model_validate(ds.manifest), new_key(), at_rest)
        source, dest = t.source_site, t.dest_site
    chain.seal()
    if refusal is not None:
        raise refusal
    return offer, source, dest


def run_transfer(
    chain: Chain,
    transfer_id: str,
    *,
    channel_factory: ChannelFactory = LocalChannel,
    progress: Callable[[int, int], None] | None = None,
    by: str = "asked by its owner",
) -> DataTransfer:
    """Run (or resume) a transfer. No database session stays open while bytes move, and a
    transfer runs once at a time (a second run is refused while the first goes on)."""
    holder = chain.claim(transfer_id, by)
    if holder is not None:
        raise already_claimed(transfer_id, holder)
    try:
        return run_claimed(chain, transfer_id, channel_factory, progress)
    finally:
        chain.release(transfer_id)


def already_claimed(transfer_id: str, holder: str) -> Conflict:
    return Conflict(
        f"transfer {transfer_id} is already queued or running ({holder}); follow it with `suanli data transfers`"
    )


class SiteCopier(Protocol):
    """Copies between two sites' agents (``app/agentcopies.py``): returns the root the
    destination reports."""

    def copy(self, offer: Offer, source: str, dest: str, progress: Callable[[int, int], None] | None = None) -> str: ...


def run_claimed(
    chain: Chain,
    transfer_id: str,
    channel_factory: ChannelFactory = LocalChannel,
    progress: Callable[[int, int], None] | None = None,
    agents: SiteCopier | None = None,
) -> DataTransfer:
    """Run (or resume) a transfer its caller has claimed (:meth:`Chain.claim`). A copy whose
    source rests at the source site's agent (``rests_at_agent``) is made by the two agents
    through the relay (``agents``), and the new copy rests at the destination's agent; any other
    is made between the site stores on this machine."""
    offer, source, dest = _begin_run(chain, transfer_id)
    key = chain.keys.get(f"transfer-{transfer_id}")
    if key is not None:  # resuming: the receiver holds chunks sealed under the first key
        offer = Offer(offer.transfer_id, offer.dataset, offer.manifest, key, offer.at_rest)
    src_store, dst_store = chain.store(source), chain.store(dest)
    via_agents = rests_at_agent(chain, offer.dataset, source)
    try:
        if via_agents:
            if agents is None:
                raise TransferError(f"'{offer.dataset}' rests at {source}'s agent: only the agents can copy it")
            result = SendResult(root=agents.copy(offer, source, dest, progress))
        else:
            with src_store.chunks(offer.dataset) as chunks:
                result = send(
                    chunks,
                    offer,
                    channel_factory(dst_store),
                    bandwidth_bps=_bandwidth(chain, transfer_id),
                    progress=progress,
                )
    except Exception as exc:
        now = chain.clock.now()
        with chain.db.session() as s:
            t = get_transfer(s, transfer_id)
            set_state(t, TransferState.FAILED)
            t.reason, t.updated_at = f"interrupted: {exc}; run it again to resume", now
            chain.ledger.record(s, "transfer.state", {"transfer": t.id, "state": TransferState.FAILED}, now)
        chain.seal()
        raise
    now = chain.clock.now()
    with chain.db.session() as s:
        t = get_transfer(s, transfer_id)
        set_state(t, TransferState.DONE)
        t.reason, t.updated_at, t.finished_at = "copied, encrypted and verified", now, now
        t.bytes_done = offer.manifest.size
        t.chunks_resent += result.resends
        s.add(Replica(dataset=t.dataset, site=dest, transfer_id=t.id, created_at=now, at_agent=via_agents))
        chain.ledger.record(
            s,
            "transfer.state",
            {
                "transfer": t.id,
                "state": TransferState.DONE,
                "root": result.root,
                "chunks_sent": result.chunks_sent,
                "chunks_skipped": result.chunks_skipped,
                "resends": result.resends,
                "encrypted_at_rest": offer.at_rest,
                "via": "agents, through the relay" if via_agents else "server",
            },
            now,
        )
    chain.seal()
    with chain.db.read() as s:
        return get_transfer(s, transfer_id)


def rests_at_agent(chain: Chain, dataset: str, site: str) -> bool:
    """Whether ``site``'s copy of ``dataset`` rests in that site agent's store (not on this machine)."""
    with chain.db.read() as s:
        ds = registry.get_dataset(s, dataset)
        if site == ds.home_site:
            return ds.home_at_agent
        q = select(Replica.at_agent).where(Replica.dataset == dataset, Replica.site == site)
        return bool(s.scalars(q).first())


def _bandwidth(chain: Chain, transfer_id: str) -> float | None:
    with chain.db.read() as s:
        return get_transfer(s, transfer_id).bandwidth_bps


def release_held(session: Session, chain: Chain, filing: Filing, now: datetime) -> list[str]:
    """After a filing is accepted: held transfers it covers become ready."""
    released = []
    held = session.scalars(
        select(DataTransfer).where(
            DataTransfer.dataset == filing.dataset,
            DataTransfer.exporter == filing.exporter,
            DataTransfer.dest_site == filing.destination,
            DataTransfer.state == TransferState.HELD,
        )
    ).all()
    for t in held:
        set_state(t, TransferState.READY)
        t.filing_id, t.updated_at = filing.id, now
        t.reason = f"allowed by accepted filing {filing.id}"
        body = {"transfer": t.id, "state": TransferState.READY, "filing": filing.id}
        chain.ledger.record(session, "transfer.state", body, now)
        released.append(t.id)
    return released


def readable_at(session: Session, chain: Chain, dataset: str, site: str, now: datetime) -> Decision:
    """The scheduler's question, answered from the store: may a job at ``site`` read ``dataset``?

    Placement owners call this (or :func:`suanli.core.policy.may_read` with their own state) for
    every dataset a job reads; only ``Decision.moves_now`` sites are candidates, and core data
    answers ``deny`` everywhere but its home site."""
    ds = registry.get_dataset(session, dataset)
    home = registry.site_facts(session, ds.home_site)
    replicas = [registry.site_facts(session, r) for r in registry.replicas_of(session, dataset)]
    exporter = registry.exporter_of(session, ds.owner)
    return may_read(
        dataset,
        registry.classification_of(session, ds),
        home,
        replicas,
        registry.site_facts(session, site),
        exporter,
        chain.rules,
        registry.counters_of(session, ds.owner, counting_year(now)),
    )


def transfer_out(t: DataTransfer) -> TransferOut:
    return TransferOut.model_validate(t, from_attributes=True)


def authorise_download(
    session: Session, chain: Chain, dataset: str, zone: Zone, now: datetime, *, actor: str
) -> tuple[Decision, Hold]:
    """Decide a download of ``dataset`` by a client in ``zone`` and put it on the record (not a
    dry run). When it may go now, an export adds to the exporter's yearly counters, as a
    transfer does, so split downloads are caught like split transfers."""
    m = movement_for(session, dataset, None, MovementKind.DOWNLOAD, zone=zone, year=counting_year(now))
    d, hold = decided(session, chain, m, now)
    owners_word = pipl.pipl_record(session, m, d)
    body = {
        "dataset": m.dataset,
        "kind": m.kind.value,
        "source": m.source.name,
        "destination": m.destination.name,
        "exporter": m.exporter.name,
        "actor": actor,
        "dry_run": False,
        **decision_body(d),
        **owners_word,
    }
    chain.ledger.record(session, "decision", body, now)
    if hold.ok:
        if d.export:
            registry.add_to_counters(session, m.exporter.name, counting_year(now), d.adds_pi, d.adds_spi)
        chain.ledger.record(
            session, "download", {"dataset": m.dataset, "zone": zone.value, "actor": actor, "route": d.route.value}, now
        )
    return d, hold
