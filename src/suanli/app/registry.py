"""The dataset registry: register, grade (versioned), list; exporter profiles and counters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from suanli.app.chain import Chain
from suanli.app.errors import Conflict, Forbidden, NotFound, Unprocessable
from suanli.core.api_data import DatasetOut, GradeOut
from suanli.core.datasets import Classification, Level, inherit
from suanli.core.network import Zone
from suanli.core.policy import Counters, Exporter, SiteFacts
from suanli.datachain.manifest import DEFAULT_CHUNK, Manifest, build_manifest, check_chunk_size
from suanli.store.models import Dataset, DatasetGrade, ExportCounter, ExporterProfile, Replica, Site


def site_facts(session: Session, name: str) -> SiteFacts:
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        known = ", ".join(sorted(session.scalars(select(Site.name)).all())) or "none"
        raise NotFound(f"no site '{name}'; known sites: {known}")
    return SiteFacts(name=site.name, region=site.region, zone=Zone(site.zone))


def get_dataset(session: Session, name: str) -> Dataset:
    ds = session.get(Dataset, name)
    if ds is None:
        raise NotFound(f"no dataset '{name}'; see `suanli data ls`")
    return ds


def classification_of(session: Session, ds: Dataset) -> Classification:
    grade = session.scalar(
        select(DatasetGrade).where(DatasetGrade.dataset == ds.name, DatasetGrade.version == ds.grade_version)
    )
    assert grade is not None, f"dataset {ds.name} has no grade {ds.grade_version}"
    return Classification.model_validate(grade.classification)


def replicas_of(session: Session, name: str) -> list[str]:
    return list(session.scalars(select(Replica.site).where(Replica.dataset == name).order_by(Replica.site)).all())


def exporter_of(session: Session, tenant: str) -> Exporter:
    p = session.get(ExporterProfile, tenant)
    return Exporter(name=tenant, ciio=bool(p and p.ciio), ftz=p.ftz if p else None)


def set_exporter(session: Session, chain: Chain, tenant: str, ciio: bool, ftz: str | None, now: datetime) -> Exporter:
    if ftz and chain.rules.negative_list(ftz) is None:
        zones = ", ".join(n.zone for n in chain.rules.negative_lists) or "none"
        raise Unprocessable(f"no negative list for free trade zone '{ftz}'; known: {zones}")
    p = session.get(ExporterProfile, tenant)
    if p is None:
        p = ExporterProfile(tenant=tenant, ciio=ciio, ftz=ftz, updated_at=now)
        session.add(p)
    else:
        p.ciio, p.ftz, p.updated_at = ciio, ftz, now
    chain.ledger.record(session, "exporter.profile", {"tenant": tenant, "ciio": ciio, "ftz": ftz}, now)
    return Exporter(name=tenant, ciio=ciio, ftz=ftz)


def counters_of(session: Session, exporter: str, year: int) -> Counters:
    row = session.get(ExportCounter, (exporter, year))
    return Counters(year=year, pi=row.pi if row else 0, spi=row.spi if row else 0)


def add_to_counters(session: Session, exporter: str, year: int, pi: int, spi: int) -> Counters:
    """X6: add to the exporter's counters of ``year`` (a Beijing calendar year) in the database
    itself (``SET pi = pi + k``), so two transactions that count at once both count, on
    PostgreSQL as on SQLite. The first count of a year inserts the row; if another transaction
    inserted it first, the insert's savepoint rolls back and the update runs again."""
    where = (ExportCounter.exporter == exporter) & (ExportCounter.year == year)
    bump = update(ExportCounter).where(where).values(pi=ExportCounter.pi + pi, spi=ExportCounter.spi + spi)
    if _rowcount(session.execute(bump)) == 0:
        try:
            with session.begin_nested():
                session.add(ExportCounter(exporter=exporter, year=year, pi=pi, spi=spi))
        except IntegrityError:
            session.execute(bump)
    row = session.execute(select(ExportCounter.pi, ExportCounter.spi).where(where)).one()
    return Counters(year=year, pi=row.pi, spi=row.spi)


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def prepare(path: Path, chunk_size: int = DEFAULT_CHUNK) -> Manifest:
    """Hash the file before any transaction opens (it may take a while)."""
    if not path.is_file():
        raise Unprocessable(f"'{path}' is not a file the server can read; give a path on the server's machine")
    try:
        chunk_size = check_chunk_size(chunk_size)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    return build_manifest(path, chunk_size)


def check_derived_home(session: Session, chain: Chain, name: str, home_site: str, derived_from: list[str]) -> None:
    """L1: data derived from core data is registered at that core data's home site only (it
    would otherwise be core data living elsewhere)."""
    for d in derived_from:
        src = get_dataset(session, d)
        if chain.rules.effective(classification_of(session, src)).level == Level.CORE and src.home_site != home_site:
            raise Forbidden(
                f"'{name}' is derived from core data '{d}', which never leaves its home site {src.home_site} (L1): "
                f"register it at {src.home_site}, not {home_site}"
            )


def ensure_new(session: Session, name: str) -> None:
    if session.get(Dataset, name) is not None:
        raise Conflict(f"dataset '{name}' is already registered; grade it with `suanli data grade {name}`")


def register(
    session: Session,
    chain: Chain,
    *,
    name: str,
    owner: str,
    home_site: str,
    manifest: Manifest,
    classification: Classification | None,
    derived_from: list[str],
    graded_by: str,
    now: datetime,
) -> Dataset:
    ensure_new(session, name)
    site_facts(session, home_site)
    check_derived_home(session, chain, name, home_site, derived_from)
    if classification is None:
        if not derived_from:
            raise Unprocessable("give a classification, or derived_from for a derived dataset that inherits one")
        inputs = [classification_of(session, get_dataset(session, d)) for d in derived_from]
        classification = inherit(inputs, graded_by=graded_by, graded_at=now)
    else:
        classification = classification.model_copy(update={"graded_by": graded_by, "graded_at": now})
    ds = Dataset(
        name=name,
        owner=owner,
        home_site=home_site,
        size=manifest.size,
        manifest=manifest.model_dump(),
        root=manifest.root,
        derived_from=list(derived_from),
        grade_version=1,
        created_at=now,
    )
    session.add(ds)
    session.add(
        DatasetGrade(
            dataset=name,
            version=1,
            classification=classification.model_dump(mode="json"),
            graded_by=graded_by,
            graded_at=now,
        )
    )
    session.flush()
    chain.ledger.record(
        session,
        "dataset.registered",
        {
            "dataset": name,
            "owner": owner,
            "home_site": home_site,
            "size": manifest.size,
            "root": manifest.root,
            "derived_from": list(derived_from),
        },
        now,
    )
    _record_grade(session, chain, name, 1, classification, now)
    return ds


def _record_grade(session: Session, chain: Chain, name: str, version: int, c: Classification, now: datetime) -> None:
    chain.ledger.record(
        session,
        "dataset.graded",
        {
            "dataset": name,
            "version": version,
            "level": c.level.value,
            "sub_grade": c.sub_grade,
            "pi_count": c.pi_count,
            "spi_count": c.spi_count,
            "categories": c.categories,
            "return_flow": c.return_flow,
            "inherited": c.inherited,
            "graded_by": c.graded_by,
        },
        now,
    )


def grade(session: Session, chain: Chain, name: str, c: Classification, graded_by: str, now: datetime) -> Dataset:
    ds = get_dataset(session, name)
    if c.sub_grade is not None and c.sub_grade > chain.rules.sub_grades:
        raise Unprocessable(f"sub-grade {c.sub_grade} is beyond the rule set's {chain.rules.sub_grades} sub-grades")
    ds.grade_version += 1
    c = c.model_copy(update={"graded_by": graded_by, "graded_at": now, "inherited": False})
    session.add(
        DatasetGrade(
            dataset=name,
            version=ds.grade_version,
            classification=c.model_dump(mode="json"),
            graded_by=graded_by,
            graded_at=now,
        )
    )
    _record_grade(session, chain, name, ds.grade_version, c, now)
    return ds


def grades(session: Session, name: str) -> list[DatasetGrade]:
    get_dataset(session, name)
    return list(
        session.scalars(select(DatasetGrade).where(DatasetGrade.dataset == name).order_by(DatasetGrade.version))
    )


def dataset_out(session: Session, ds: Dataset) -> DatasetOut:
    return DatasetOut(
        name=ds.name,
        owner=ds.owner,
        home_site=ds.home_site,
        size=ds.size,
        root=ds.root,
        chunks=len(ds.manifest.get("chunks", [])),
        chunk_size=ds.manifest.get("chunk_size"),
        derived_from=ds.derived_from,
        grade_version=ds.grade_version,
        classification=classification_of(session, ds),
        replicas=replicas_of(session, ds.name),
        created_at=ds.created_at,
    )


def grade_out(g: DatasetGrade) -> GradeOut:
    return GradeOut(
        version=g.version,
        classification=Classification.model_validate(g.classification),
        graded_by=g.graded_by,
        graded_at=g.graded_at,
    )


def list_datasets(session: Session, owner: str | None = None) -> list[Dataset]:
    q = select(Dataset).order_by(Dataset.name)
    if owner:
        q = q.where(Dataset.owner == owner)
    return list(session.scalars(q).all())
