"""Compute to data: where a job that reads datasets may run, and the record of where it did.

A job reads a dataset only where a copy lies (its home site or a replica) and the rules allow
reading it there (``core.policy.may_read``: core data is read at its home site only, L1).
A site without a copy is refused with the copy's route in words ("a copy there would need a
standard contract filing: suanli data copy notes --to singapore"), or with the copy on its way
when the scheduler started one for a job (``app/staging.py``). Every placement of a job on
data is written to the ledger with the decision for each dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app import registry
from suanli.app.pipl import crosses_regime
from suanli.core.datasets import Classification, Level
from suanli.core.network import Zone
from suanli.core.policy import Counters, Exporter, Route, RuleSet, SiteFacts, counting_year, may_read
from suanli.core.scheduler import PendingJob, SiteRule, SiteState
from suanli.store.models import Dataset, DataTransfer, ExportPermission, Site


@dataclass(frozen=True)
class DatasetFacts:
    name: str
    owner: str
    size: int
    classification: Classification
    home: SiteFacts
    replicas: tuple[SiteFacts, ...]
    exporter: Exporter
    counters: Counters
    #: Sites its owner lets the scheduler copy it to across a border or regime (``app/pipl.py``).
    staging_to: frozenset[str] = frozenset()

    @property
    def copies(self) -> tuple[str, ...]:
        return (self.home.name, *(r.name for r in self.replicas if r.name != self.home.name))


def load_facts(session: Session, names: Iterable[str], now: datetime) -> dict[str, DatasetFacts]:
    """What the rules need to know of each registered dataset among ``names`` (others: absent)."""
    out: dict[str, DatasetFacts] = {}
    wanted = sorted(set(names))
    if not wanted:
        return out
    for ds in session.scalars(select(Dataset).where(Dataset.name.in_(wanted))):
        out[ds.name] = DatasetFacts(
            name=ds.name,
            owner=ds.owner,
            size=ds.size,
            classification=registry.classification_of(session, ds),
            home=registry.site_facts(session, ds.home_site),
            replicas=tuple(registry.site_facts(session, r) for r in registry.replicas_of(session, ds.name)),
            exporter=registry.exporter_of(session, ds.owner),
            counters=registry.counters_of(session, ds.owner, counting_year(now)),
        )
    permitted = select(ExportPermission.dataset, ExportPermission.destination).where(
        ExportPermission.dataset.in_(wanted), ExportPermission.staging.is_(True)
    )
    staging: dict[str, set[str]] = {}
    for dataset, destination in session.execute(permitted):
        staging.setdefault(dataset, set()).add(destination)
    for name, dest in staging.items():
        if name in out:
            out[name] = replace(out[name], staging_to=frozenset(dest))
    return out


#: A transfer that is neither finished nor refused: a copy that is (or will be) on its way.
OPEN_STATES = ("ready", "queued", "running", "failed")


def open_transfers(session: Session, datasets: Iterable[str]) -> dict[tuple[str, str], DataTransfer]:
    """(dataset, destination) → the open transfer bringing it there (the newest, if several)."""
    wanted = sorted(set(datasets))
    if not wanted:
        return {}
    rows = session.scalars(
        select(DataTransfer)
        .where(DataTransfer.dataset.in_(wanted), DataTransfer.state.in_(OPEN_STATES))
        .order_by(DataTransfer.created_at)
    )
    return {(t.dataset, t.dest_site): t for t in rows}


def site_facts(session: Session) -> dict[str, SiteFacts]:
    return {s.name: SiteFacts(name=s.name, region=s.region, zone=Zone(s.zone)) for s in session.scalars(select(Site))}


def never(facts: DatasetFacts | None, name: str, site: SiteFacts, rules: RuleSet) -> str | None:
    """Why a job at ``site`` may never read dataset ``name``, whatever is copied (None: it could)."""
    if facts is None:
        return f"dataset '{name}' is not registered"
    decision = may_read(
        name, facts.classification, facts.home, facts.replicas, site, facts.exporter, rules, facts.counters
    )
    if decision.route == Route.DENY:
        why = decision.reasons[0] if decision.reasons else "the rules deny it"
        if facts.classification.level == Level.CORE:
            return f"'{name}' is core data: it is read at its home site {facts.home.name} only ({why})"
        return f"may not read '{name}' here: {why}"
    return None


def why_not(
    facts: DatasetFacts | None, name: str, site: SiteFacts, rules: RuleSet, moving: DataTransfer | None = None
) -> str | None:
    """Why a job at ``site`` may not read dataset ``name`` now (None: it may); ``moving`` is the
    open transfer bringing it there, if any."""
    forbidden = never(facts, name, site, rules)
    if forbidden or facts is None:
        return forbidden
    decision = may_read(
        name, facts.classification, facts.home, facts.replicas, site, facts.exporter, rules, facts.counters
    )
    if site.name not in facts.copies and moving is not None:
        done = f"{100 * moving.bytes_done / facts.size:.0f}% done" if facts.size else moving.state
        return f"'{name}' is being copied here (transfer {moving.id}, {done})"
    if site.name not in facts.copies:
        where = ", ".join(facts.copies)
        route = "is allowed now" if decision.moves_now else f"needs {decision.route.value.replace('_', ' ')}"
        why = f"'{name}' is not here (copies at {where}); a copy here {route}: suanli data copy {name} --to {site.name}"
        if crosses_regime(facts.home, site) and site.name not in facts.staging_to:
            why += (
                f"; the scheduler will not copy it there on its own: its owner gave no standing permission "
                f"(suanli data permit {name} --to {site.name} --staging --basis … --pia …)"
            )
        return why
    return None


def data_rule(session: Session, jobs: Sequence[PendingJob], now: datetime, rules: RuleSet) -> SiteRule | None:
    """The scheduler's data rule for this pass under ``rules`` (None when no job reads a dataset)."""
    names = {d for j in jobs for d in j.datasets}
    if not names:
        return None
    facts = load_facts(session, names, now)
    sites = site_facts(session)
    moving = open_transfers(session, names)
    verdicts: dict[tuple[str, str], str | None] = {}

    def rule(job: PendingJob, site: SiteState) -> str | None:
        here = sites.get(site.name)
        for name in job.datasets:
            key = (name, site.name)
            if key not in verdicts:
                verdicts[key] = (
                    why_not(facts.get(name), name, here, rules, moving.get(key))
                    if here
                    else f"site '{site.name}' is not known"
                )
            why = verdicts[key]
            if why:
                return why
        return None

    return rule


def readable_sites(
    session: Session, datasets: Sequence[str], now: datetime, rules: RuleSet
) -> tuple[list[str], list[str]]:
    """(sites where every dataset could be read, once copied if need be; 'site: why never' for
    the others): what decides whether a job is refused at submit."""
    facts = load_facts(session, datasets, now)
    ok: list[str] = []
    refused: list[str] = []
    for name, site in sorted(site_facts(session).items()):
        why = next((w for d in datasets if (w := never(facts.get(d), d, site, rules))), None)
        if why:
            refused.append(f"{name}: {why}")
        else:
            ok.append(name)
    return ok, refused


def placement_decisions(
    session: Session, datasets: Sequence[str], site: str, now: datetime, rules: RuleSet
) -> dict[str, str]:
    """Dataset → the route that allowed reading it at ``site`` (for the ledger)."""
    facts = load_facts(session, datasets, now)
    here = site_facts(session)[site]
    out: dict[str, str] = {}
    for name in datasets:
        f = facts[name]
        d = may_read(name, f.classification, f.home, f.replicas, here, f.exporter, rules, f.counters)
        out[name] = d.route.value
    return out
