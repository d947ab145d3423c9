"""The owner's word, as exports and the scheduler's staging read it (``app/exports.py`` is where
owners give it): the PIPL basis and PI impact assessment each PI export records, and whether the
scheduler may copy a dataset across a border or into another zone's regime on its own."""

from __future__ import annotations

from sqlalchemy.orm import Session

from suanli.app.errors import Unprocessable
from suanli.core.policy import Decision, Movement, Route, SiteFacts
from suanli.store.models import ExportPermission


def permission_for(session: Session, dataset: str, destination: str) -> ExportPermission | None:
    return session.get(ExportPermission, (dataset, destination))


def pipl_record(session: Session, m: Movement, d: Decision) -> dict[str, str]:
    """What a PI export records (its PIPL basis and PI impact assessment); {} for a movement that
    is no PI export. A PI export the owner gave no word for is refused (422), saying how."""
    if not (d.export and m.classification.has_pi) or d.route == Route.DENY:
        return {}
    p = permission_for(session, m.dataset, m.destination.name)
    if p is None:
        download = m.destination.name.startswith("client@")
        how = f"--zone {m.destination.zone.value}" if download else f"--to {m.destination.name}"
        raise Unprocessable(
            f"exporting '{m.dataset}' to {m.destination.name} sends personal information abroad: PIPL asks for the "
            f"notice's basis and a PI impact assessment first. Its owner records them with "
            f"`suanli data permit {m.dataset} {how} --basis separate_consent --pia REF`"
        )
    return {"pipl_basis": p.basis, "pia_ref": p.pia_ref}


def crosses_regime(source: SiteFacts, dest: SiteFacts) -> bool:
    """A copy across a border, or into a zone with another regime (mainland, bonded, overseas)."""
    return source.zone != dest.zone


def staging_refusal(session: Session, dataset: str, source: SiteFacts, dest: SiteFacts) -> str | None:
    """Why the scheduler may not copy ``dataset`` from ``source`` to ``dest`` on its own (None: it may)."""
    if not crosses_regime(source, dest):
        return None
    p = permission_for(session, dataset, dest.name)
    if p is not None and p.staging:
        return None
    return (
        f"the scheduler copies '{dataset}' from {source.name} ({source.zone.value}) to {dest.name} "
        f"({dest.zone.value}) only with its owner's standing permission: "
        f"suanli data permit {dataset} --to {dest.name} --staging --basis … --pia …"
    )
