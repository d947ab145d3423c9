"""Filings: the package a route needs, its states, expiry, and what an accepted one releases.

The functions that take a :class:`Chain` and an :class:`Identity` are one caller's request each
(they open their transaction, commit and seal the ledger); the rest work inside a caller's
transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import movements
from suanli.app.access import require
from suanli.app.chain import Chain
from suanli.app.datasets import actor_of, owned_dataset, visible_dataset, visible_names
from suanli.app.errors import Conflict, NotFound, Unprocessable
from suanli.core.api_data import FilingMovedOut, FilingOut
from suanli.core.holds import FILING_TRANSITIONS, FilingState
from suanli.core.identity import Identity, Scope
from suanli.core.network import Zone
from suanli.core.policy import MovementKind, Purpose, Route, counting_year, decide
from suanli.datachain.package import PackageFacts, render_html, render_pdf
from suanli.store.models import Filing


def create(
    session: Session,
    chain: Chain,
    *,
    dataset: str,
    to: str | None,
    route: Route | None,
    actor: str,
    now: datetime,
    zone: Zone | None = None,
) -> Filing:
    """A draft filing for copying ``dataset`` to site ``to``, or (``zone``) for downloads by users
    in that zone: its destination is then ``client@<zone>``, the one a download is decided for."""
    if (to is None) == (zone is None):
        raise Unprocessable("a filing is for a copy to a site (to) or for downloads to a zone (zone): give one")
    kind = MovementKind.TRANSFER if to is not None else MovementKind.DOWNLOAD
    year = counting_year(now)
    m = movements.movement_for(session, dataset, to, kind, zone=zone, purpose=Purpose.NONE, year=year)
    to = m.destination.name
    d = decide(m, chain.rules)
    if not d.route.needs_filing:
        raise Unprocessable(f"'{dataset}' to {to} needs no filing: {d.route.value} ({', '.join(d.rule_ids)})")
    chosen = route or d.route
    if chosen != d.route and chosen not in d.alternatives:
        allowed = ", ".join(r.value for r in (d.route, *d.alternatives))
        raise Unprocessable(f"route {chosen.value} does not satisfy this movement; use one of: {allowed}")
    fid = "f-" + uuid.uuid4().hex[:10]
    facts = PackageFacts.gather(m, d, chosen, fid, now)
    f = Filing(
        id=fid,
        dataset=dataset,
        exporter=m.exporter.name,
        destination=to,
        route=chosen.value,
        state=FilingState.DRAFT.value,
        package=render_html(facts),
        package_facts=facts.model_dump_json(),
        note="",
        created_at=now,
        updated_at=now,
    )
    session.add(f)
    session.flush()
    _record(session, chain, f, actor, now)
    return f


def _record(session: Session, chain: Chain, f: Filing, actor: str, now: datetime) -> None:
    chain.ledger.record(
        session,
        "filing.state",
        {
            "filing": f.id,
            "dataset": f.dataset,
            "exporter": f.exporter,
            "destination": f.destination,
            "route": f.route,
            "state": f.state,
            "actor": actor,
            "expires_at": f.expires_at.isoformat() if f.expires_at else None,
            "certificate_id": f.certificate_id,
        },
        now,
    )


def get(session: Session, filing_id: str) -> Filing:
    f = session.get(Filing, filing_id)
    if f is None:
        raise NotFound(f"no filing '{filing_id}'; see `suanli filing ls`")
    return f


def move_to(
    session: Session,
    chain: Chain,
    filing_id: str,
    state: FilingState,
    *,
    actor: str,
    now: datetime,
    note: str = "",
    expires_at: datetime | None = None,
    certificate_id: str | None = None,
) -> tuple[Filing, list[str]]:
    f = get(session, filing_id)
    current = FilingState(f.state)
    if state not in FILING_TRANSITIONS[current]:
        allowed = ", ".join(s.value for s in FILING_TRANSITIONS[current]) or "nothing (it is final)"
        raise Conflict(f"filing {f.id} is {current.value}; it can move to {allowed}")
    f.state, f.updated_at, f.note = state.value, now, note or f.note
    released: list[str] = []
    if state == FilingState.ACCEPTED:
        f.decided_by = actor
        f.expires_at = valid_until(chain, Route(f.route), now, expires_at)
        f.certificate_id = certificate_id
        if Route(f.route) == Route.CERTIFICATION and not certificate_id:
            raise Unprocessable("a certification filing is accepted with its certificate id (--certificate)")
    elif state == FilingState.REJECTED:
        f.decided_by = actor
    _record(session, chain, f, actor, now)
    if state == FilingState.ACCEPTED and (f.expires_at is None or f.expires_at > now):
        session.flush()
        released = movements.release_held(session, chain, f, now)
    return f, released


def valid_until(chain: Chain, route: Route, now: datetime, asked: datetime | None) -> datetime | None:
    """X5: an accepted filing's expiry. The rule that required it caps it (``validity_years``:
    three years for an assessment or a certification); an auditor may give an earlier date (a
    certificate's own expiry) but not a later one (422). A route the rule set gives no validity
    (a standard contract: per contract term) takes the auditor's date, or none. An expiry in
    the past is recorded as given, and such a filing releases nothing."""
    years = chain.rules.validity_years.get(route)
    if not years:
        return asked
    cap = now + timedelta(days=365 * years)
    if asked is not None and asked > cap:
        raise Unprocessable(
            f"a {route.value.replace('_', ' ')} is valid {years} years under rule set {chain.rules.version} (X5): "
            f"the expiry may be {cap:%Y-%m-%d} at the latest, not {asked:%Y-%m-%d}"
        )
    return asked or cap


def list_filings(session: Session, state: str | None = None, dataset: str | None = None) -> list[Filing]:
    q = select(Filing).order_by(Filing.created_at, Filing.id)
    if state:
        q = q.where(Filing.state == state)
    if dataset:
        q = q.where(Filing.dataset == dataset)
    return list(session.scalars(q).all())


def package_facts(f: Filing) -> PackageFacts:
    """The facts the filing's package was built from (what its PDF is rendered from)."""
    if not f.package_facts:
        raise Conflict(
            f"filing {f.id} was created before packages were kept as facts: its package is HTML only "
            "(create a new filing for a PDF)"
        )
    return PackageFacts.model_validate_json(f.package_facts)


def filing_out(f: Filing) -> FilingOut:
    return FilingOut.model_validate(f, from_attributes=True)


# -- callers' requests ---------------------------------------------------------------------------


def create_filing(
    chain: Chain,
    who: Identity,
    *,
    dataset: str,
    to: str | None,
    route: Route | None,
    actor: str = "",
    zone: Zone | None = None,
) -> FilingOut:
    """A draft filing for moving ``dataset`` to site ``to`` (or for downloads by users in
    ``zone``), by its owner (or the admin for it)."""
    with chain.db.session() as s:
        owned_dataset(s, who, dataset)
        f = create(
            s,
            chain,
            dataset=dataset,
            to=to,
            route=route,
            actor=actor_of(who, actor or "owner"),
            now=chain.clock.now(),
            zone=zone,
        )
        out = filing_out(f)
    chain.seal()
    return out


def visible_filings(
    chain: Chain, who: Identity, state: str | None = None, dataset: str | None = None
) -> list[FilingOut]:
    """The filings of the datasets ``who`` may see, oldest first."""
    with chain.db.read() as s:
        mine = visible_names(s, who)
        found = list_filings(s, state, dataset)
        return [filing_out(f) for f in found if mine is None or f.dataset in mine]


def _visible(s: Session, who: Identity, filing_id: str) -> Filing:
    """The filing, if ``who`` may read its dataset; otherwise the same 404 as a missing one."""
    f = get(s, filing_id)
    try:
        visible_dataset(s, who, f.dataset)
    except NotFound:
        raise NotFound(f"no filing '{filing_id}'; see `suanli filing ls`") from None
    return f


def show_filing(chain: Chain, who: Identity, filing_id: str) -> FilingOut:
    with chain.db.read() as s:
        return filing_out(_visible(s, who, filing_id))


@dataclass(frozen=True)
class Package:
    """A filing's package as a document: HTML, or a PDF rendered from its facts."""

    filing_id: str
    media_type: str
    content: bytes | str


def package_of(chain: Chain, who: Identity, filing_id: str, *, pdf: bool = False) -> Package:
    with chain.db.read() as s:
        f = _visible(s, who, filing_id)
        if not pdf:
            return Package(f.id, "text/html", f.package)
        facts = package_facts(f)
    return Package(facts.filing_id, "application/pdf", render_pdf(facts))


def _move(
    chain: Chain,
    filing_id: str,
    state: FilingState,
    actor: str,
    note: str = "",
    expires_at: datetime | None = None,
    certificate_id: str | None = None,
) -> FilingMovedOut:
    with chain.db.session() as s:
        f, released = move_to(
            s,
            chain,
            filing_id,
            state,
            actor=actor,
            now=chain.clock.now(),
            note=note,
            expires_at=expires_at,
            certificate_id=certificate_id,
        )
        out = FilingMovedOut(**dict(filing_out(f)), released_transfers=released)
    chain.seal()
    return out


def submit_filing(chain: Chain, who: Identity, filing_id: str) -> FilingMovedOut:
    """The owner hands a draft filing to the auditors."""
    with chain.db.read() as s:
        f = get(s, filing_id)
        try:
            owned_dataset(s, who, f.dataset)
        except NotFound:
            raise NotFound(f"no filing '{filing_id}'; see `suanli filing ls`") from None
    return _move(chain, filing_id, FilingState.SUBMITTED, actor_of(who, "owner"))


def decide_filing(
    chain: Chain,
    auditor: Identity,
    filing_id: str,
    state: FilingState,
    *,
    note: str = "",
    expires_at: datetime | None = None,
    certificate_id: str | None = None,
) -> FilingMovedOut:
    """An auditor accepts or rejects a submitted filing (the caller recorded the access:
    :func:`suanli.app.audit.record_access`)."""
    require(auditor, Scope.FILINGS_DECIDE)
    return _move(chain, filing_id, state, auditor.name, note, expires_at, certificate_id)
