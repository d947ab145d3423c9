"""Exports need the owner's word (docs/rules.md: exemption from assessment is not exemption
from PIPL).

An owner records, per dataset and destination (a site, or ``client@<zone>`` for downloads by
users in a zone), the PIPL basis its notice gave and the reference of its PI protection impact
assessment, and whether the scheduler may stage copies there for waiting jobs:

- every export of personal information (a copy abroad, a download abroad) records that basis and
  reference on its ``decision`` ledger entry, and is refused (422) when the owner gave none;
- the scheduler copies data across a border, or into a zone with another regime (mainland,
  bonded, overseas), only where the owner's word for that destination says ``staging``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import registry
from suanli.app.chain import Chain
from suanli.app.datasets import owned_dataset, visible_dataset
from suanli.app.errors import NotFound, Unprocessable
from suanli.core.api_data import ExportPermissionOut
from suanli.core.identity import Identity
from suanli.core.network import Zone
from suanli.core.policy import PiplBasis
from suanli.store.models import ExportPermission


def destination_of(session: Session, to: str | None, zone: Zone | None) -> str:
    """A site's name, or ``client@<zone>`` (the destination a download is decided for)."""
    if (to is None) == (zone is None):
        raise Unprocessable("give the destination: a site (to) or, for downloads, a zone")
    if to is not None:
        registry.site_facts(session, to)
        return to
    assert zone is not None
    return f"client@{zone.value}"


def permission_out(p: ExportPermission) -> ExportPermissionOut:
    return ExportPermissionOut.model_validate(p, from_attributes=True)


def set_permission(
    chain: Chain,
    who: Identity,
    name: str,
    *,
    to: str | None,
    zone: Zone | None,
    basis: PiplBasis,
    pia_ref: str,
    staging: bool,
) -> ExportPermissionOut:
    """The owner's word for exports of ``name`` to one destination (replaces an earlier one)."""
    pia_ref = pia_ref.strip()
    if not pia_ref:
        raise Unprocessable("give the reference of the PI protection impact assessment (PIPL art. 55): --pia")
    now = chain.clock.now()
    with chain.db.session() as s:
        owned_dataset(s, who, name)
        dest = destination_of(s, to, zone)
        p = s.get(ExportPermission, (name, dest))
        if p is None:
            p = ExportPermission(dataset=name, destination=dest)
            s.add(p)
        p.basis, p.pia_ref, p.staging, p.granted_by, p.granted_at = basis.value, pia_ref, staging, who.name, now
        _record(s, chain, p, who.name, now, granted=True)
        out = permission_out(p)
    chain.seal()
    return out


def revoke_permission(chain: Chain, who: Identity, name: str, *, to: str | None, zone: Zone | None) -> None:
    now = chain.clock.now()
    with chain.db.session() as s:
        owned_dataset(s, who, name)
        dest = destination_of(s, to, zone)
        p = s.get(ExportPermission, (name, dest))
        if p is None:
            raise NotFound(f"'{name}' has no export permission for {dest}; see `suanli data permits {name}`")
        _record(s, chain, p, who.name, now, granted=False)
        s.delete(p)
    chain.seal()


def list_permissions(chain: Chain, who: Identity, name: str) -> list[ExportPermissionOut]:
    with chain.db.read() as s:
        visible_dataset(s, who, name)
        q = select(ExportPermission).where(ExportPermission.dataset == name).order_by(ExportPermission.destination)
        return [permission_out(p) for p in s.scalars(q)]


def _record(s: Session, chain: Chain, p: ExportPermission, actor: str, now: datetime, *, granted: bool) -> None:
    chain.ledger.record(
        s,
        "export.permission",
        {
            "dataset": p.dataset,
            "destination": p.destination,
            "granted": granted,
            "basis": p.basis,
            "pia_ref": p.pia_ref,
            "staging": p.staging,
            "actor": actor,
        },
        now,
    )
