"""What callers do with datasets: who may see and act on one, register, grade, dry-run a movement,
download, and exporters' standing. Each function is one caller's request: it opens its own
transaction, commits, and seals the ledger over what it recorded.

Who may see what: the admin and the auditor see every dataset; a member its tenant's; anyone else
none. Another tenant's dataset answers the same 404 as a missing one, so nothing leaks that it
exists.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import movements, pipl, registry
from suanli.app.access import require, require_role, tenant_filter
from suanli.app.chain import Chain
from suanli.app.errors import Conflict, Forbidden, NotFound, Unprocessable
from suanli.core.api_data import CheckOut, DatasetDetailOut, DatasetOut
from suanli.core.datasets import Classification
from suanli.core.identity import Identity, Role, Scope
from suanli.core.network import Zone
from suanli.core.policy import Exporter, MovementKind, Purpose, counting_year
from suanli.datachain.crypto import new_key
from suanli.datachain.manifest import DEFAULT_CHUNK, Manifest, MiB
from suanli.datachain.transfer import Offer
from suanli.store.models import Dataset

#: A new dataset's chunk size unless its registration says otherwise, MiB.
DEFAULT_CHUNK_MIB = DEFAULT_CHUNK // MiB


def dataset_owner_filter(who: Identity) -> str | None:
    """Datasets a listing shows: the admin's and the auditor's every one (None), a member's its
    tenant's, anyone else's none."""
    require(who, Scope.DATA_READ)
    if who.role in (Role.ADMIN, Role.AUDITOR):
        return None
    return tenant_filter(who)


def visible_dataset(session: Session, who: Identity, name: str) -> Dataset:
    """The dataset if ``who`` may read it; another tenant's answers the same 404 as a missing one."""
    require(who, Scope.DATA_READ)
    ds = session.get(Dataset, name)
    if ds is None or not (who.role == Role.AUDITOR or who.sees_tenant(ds.owner)):
        raise NotFound(f"no dataset '{name}'; see `suanli data ls`")
    return ds


def owned_dataset(session: Session, who: Identity, name: str) -> Dataset:
    """The dataset if ``who`` may act for its owner (its tenant's members, the admin)."""
    require(who, Scope.DATA_WRITE)
    ds = session.get(Dataset, name)
    if ds is None or not who.sees_tenant(ds.owner):
        raise NotFound(f"no dataset '{name}'; see `suanli data ls`")
    return ds


def actor_of(who: Identity, asked: str) -> str:
    """Who the ledger records as acting: the caller; only the admin may name someone else."""
    return (asked or who.name) if who.is_admin else who.name


def visible_names(session: Session, who: Identity) -> set[str] | None:
    """Names of the datasets ``who`` may see; None when it sees every one."""
    owner = dataset_owner_filter(who)
    if owner is None:
        return None
    return set(session.scalars(select(Dataset.name).where(Dataset.owner == owner)))


def register_dataset(
    chain: Chain,
    who: Identity,
    *,
    name: str,
    owner: str,
    home_site: str,
    path: Path,
    chunk_mib: int,
    classification: Classification | None,
    derived_from: list[str],
) -> DatasetOut:
    """Register a file on the server's machine as a dataset (admin only: it reads a server path).
    The file is hashed before any transaction opens. The grade is recorded as given by the
    caller: who graded is the authenticated user, never a name the client sends."""
    require(who, Scope.DATA_WRITE)
    require_role(who, Role.ADMIN)
    manifest = registry.prepare(path, chunk_mib * MiB)
    with chain.db.read() as s:
        registry.site_facts(s, home_site)
        registry.ensure_new(s, name)
        registry.check_derived_home(s, chain, name, home_site, derived_from)
    at_rest = classification.sealed_at_rest if classification else True
    chain.store(home_site).adopt(name, path, manifest, at_rest=at_rest)
    now = chain.clock.now()
    with chain.db.session() as s:
        ds = registry.register(
            s,
            chain,
            name=name,
            owner=owner,
            home_site=home_site,
            manifest=manifest,
            classification=classification,
            derived_from=derived_from,
            graded_by=who.name,
            now=now,
        )
        out = registry.dataset_out(s, ds)
    chain.seal()
    return out


def list_datasets(chain: Chain, who: Identity, owner: str | None = None) -> list[DatasetOut]:
    """The datasets ``who`` may see, of ``owner`` if given (another tenant's: none)."""
    scope = dataset_owner_filter(who)
    if scope is not None:
        if owner is not None and owner != scope:
            return []
        owner = scope
    with chain.db.read() as s:
        return [registry.dataset_out(s, d) for d in registry.list_datasets(s, owner)]


def show_dataset(chain: Chain, who: Identity, name: str) -> DatasetDetailOut:
    """One dataset with every grade it was given, oldest first."""
    with chain.db.read() as s:
        out = registry.dataset_out(s, visible_dataset(s, who, name))
        grades = [registry.grade_out(g) for g in registry.grades(s, name)]
    return DatasetDetailOut(**dict(out), grades=grades)


def check_movement(
    chain: Chain,
    who: Identity,
    name: str,
    *,
    to: str | None,
    zone: Zone | None,
    kind: MovementKind,
    purpose: Purpose,
    judicial_approval: bool,
) -> CheckOut:
    """A dry run: what the rules decide for this movement, and whether it may go now. It moves
    nothing and records nothing (the ledger holds what happens, not what was asked)."""
    now = chain.clock.now()
    with chain.db.read() as s:
        visible_dataset(s, who, name)
        m = movements.movement_for(
            s, name, to, kind, zone=zone, purpose=purpose, judicial_approval=judicial_approval, year=counting_year(now)
        )
        d, hold = movements.check(s, chain, m, now)
        try:
            pipl.pipl_record(s, m, d)
            needs_word = ""
        except Unprocessable as exc:
            needs_word = str(exc)
    # A PI export also needs its owner's word (app/pipl.py): say so beside the filing's hold.
    reason = hold.reason if not needs_word else needs_word if hold.ok else f"{hold.reason}; and {needs_word}"
    ok = hold.ok and not needs_word
    return CheckOut(**movements.decision_out(d).model_dump(), explain=d.explain(), may_move_now=ok, hold=reason)


def set_exporter(chain: Chain, who: Identity, tenant: str, ciio: bool, ftz: str | None) -> Exporter:
    """Record a tenant's standing as a data exporter (CIIO, free-trade zone): admin only."""
    require(who, Scope.DATA_WRITE)
    require_role(who, Role.ADMIN)
    with chain.db.session() as s:
        e = registry.set_exporter(s, chain, tenant, ciio, ftz, chain.clock.now())
    chain.seal()
    return e


@dataclass(frozen=True)
class Download:
    """A dataset's bytes, decided and on the record, ready to send."""

    name: str
    size: int
    chunks: Iterator[bytes]


def requester_zone(who: Identity, declared: Zone | None = None) -> Zone:
    """Where the caller is: the zone the operator recorded for the user (``suanli user create
    --zone``), never one the client declares. A declared zone must agree with it (422)."""
    zone = Zone(who.zone)
    if declared is not None and declared != zone:
        raise Unprocessable(
            f"you are recorded in the {zone.value} zone, not {declared.value}: downloads are decided for the zone "
            "your user record gives (an operator sets it with `suanli user create --zone`)"
        )
    return zone


class Fetcher(Protocol):
    """Downloads of data at a site's agent, through the relay (``app/agentcopies.py``)."""

    def fetch(self, offer: Offer, source: str) -> Iterator[bytes]: ...


def download(
    chain: Chain, who: Identity, name: str, declared: Zone | None = None, agents: Fetcher | None = None
) -> Download:
    """The dataset's bytes from its home site, for its owner's members (and the admin), to a
    client in the caller's zone (:func:`requester_zone`): decided as a download by the rules
    (outside the mainland it is an export, counted and perhaps needing a filing) and put on the
    record before a byte moves. A held download is refused (403) after its decision is recorded.
    Data whose home copy rests at the home site's agent comes from it through the relay (``agents``)."""
    zone = requester_zone(who, declared)
    now = chain.clock.now()
    with chain.db.session() as s:
        home = owned_dataset(s, who, name).home_site
        decision, hold = movements.authorise_download(s, chain, name, zone, now, actor=who.name)
    chain.seal()
    if not hold.ok:
        raise Forbidden(f"the rules hold this download: {hold.reason or decision.explain()}")
    if movements.rests_at_agent(chain, name, home):
        if agents is None:
            raise Conflict(f"'{name}' rests at {home}'s agent, which this server cannot reach for a download")
        with chain.db.read() as s:
            manifest = Manifest.model_validate(registry.get_dataset(s, name).manifest)
        offer = Offer(uuid.uuid4().hex[:16], name, manifest, new_key())
        return Download(name, manifest.size, agents.fetch(offer, home))
    store = chain.store(home)
    return Download(name, store.manifest_of(name).size, store.read_plain(name))
