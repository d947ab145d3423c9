"""/api/v1/datasets and /api/v1/exporters: the registry, grading, and ``check`` (a dry-run decision)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from suanli.app import movements, registry
from suanli.app.access import require, require_role
from suanli.app.errors import Forbidden
from suanli.core.datasets import Classification
from suanli.core.identity import Role, Scope
from suanli.core.network import Zone
from suanli.core.policy import MovementKind, Purpose
from suanli.datachain.manifest import DEFAULT_CHUNK, MiB
from suanli.server.chaindeps import (
    ChainDep,
    dataset_owner_filter,
    owned_dataset,
    translated,
    visible_dataset,
)
from suanli.server.deps import Caller

router = APIRouter(prefix="/api/v1", tags=["datasets"])


class DatasetIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
    owner: str
    home_site: str
    #: A file on the server's machine (this version has no upload).
    path: str
    chunk_mib: int = DEFAULT_CHUNK // MiB
    classification: Classification | None = None
    derived_from: list[str] = Field(default_factory=list)
    graded_by: str = ""


class GradeIn(BaseModel):
    classification: Classification
    graded_by: str


class CheckIn(BaseModel):
    to: str | None = None
    zone: Zone | None = None
    kind: MovementKind = MovementKind.TRANSFER
    purpose: Purpose = Purpose.NONE
    judicial_approval: bool = False
    #: Ignored: a check records nothing, so it names no actor (kept so older clients still validate).
    actor: str = ""


class ExporterIn(BaseModel):
    ciio: bool = False
    ftz: str | None = None


@router.post("/datasets", status_code=201)
def register(body: DatasetIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    """Register a file on the server's machine as a dataset (admin only: it reads a server path)."""
    require(who, Scope.DATA_WRITE)
    require_role(who, Role.ADMIN)
    with translated():
        manifest = registry.prepare(Path(body.path), body.chunk_mib * MiB)
        with chain.db.read() as s:
            registry.site_facts(s, body.home_site)
            registry.ensure_new(s, body.name)
            at_rest = body.classification.level.encrypted_at_rest if body.classification else True
        chain.store(body.home_site).adopt(body.name, Path(body.path), manifest, at_rest=at_rest)
        now = chain.clock.now()
        with chain.db.session() as s:
            ds = registry.register(
                s,
                chain,
                name=body.name,
                owner=body.owner,
                home_site=body.home_site,
                manifest=manifest,
                classification=body.classification,
                derived_from=body.derived_from,
                graded_by=body.graded_by or body.owner,
                now=now,
            )
            out = registry.dataset_out(s, ds)
    chain.seal()
    return out


@router.get("/datasets")
def list_datasets(chain: ChainDep, who: Caller, owner: str | None = None) -> dict[str, Any]:
    scope = dataset_owner_filter(who)
    if scope is not None:
        if owner is not None and owner != scope:
            return {"items": [], "next_cursor": None}
        owner = scope
    with chain.db.read() as s:
        return {"items": [registry.dataset_out(s, d) for d in registry.list_datasets(s, owner)], "next_cursor": None}


@router.get("/datasets/{name}")
def show(name: str, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.read() as s:
        out = registry.dataset_out(s, visible_dataset(s, who, name))
        out["grades"] = [
            {
                "version": g.version,
                "classification": g.classification,
                "graded_by": g.graded_by,
                "graded_at": g.graded_at.isoformat(),
            }
            for g in registry.grades(s, name)
        ]
        return out


@router.post("/datasets/{name}/grade")
def grade(name: str, body: GradeIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    with translated(), chain.db.session() as s:
        owned_dataset(s, who, name)
        out = registry.dataset_out(
            s, registry.grade(s, chain, name, body.classification, body.graded_by, chain.clock.now())
        )
    chain.seal()
    return out


@router.post("/datasets/{name}/check")
def check(name: str, body: CheckIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    """A dry run: what the rules decide for this movement, and whether it may go now. It moves
    nothing and records nothing (the ledger holds what happens, not what was asked)."""
    now = chain.clock.now()
    with translated(), chain.db.read() as s:
        visible_dataset(s, who, name)
        m = movements.movement_for(
            s,
            name,
            body.to,
            body.kind,
            zone=body.zone,
            purpose=body.purpose,
            judicial_approval=body.judicial_approval,
            year=now.year,
        )
        d, hold = movements.check(s, chain, m, now)
    return {**d.to_dict(), "explain": d.explain(), "may_move_now": hold.ok, "hold": hold.reason}


@router.put("/exporters/{tenant}")
def set_exporter(tenant: str, body: ExporterIn, chain: ChainDep, who: Caller) -> dict[str, Any]:
    """Record a tenant's standing as a data exporter (CIIO, free-trade zone): admin only."""
    require(who, Scope.DATA_WRITE)
    require_role(who, Role.ADMIN)
    with translated(), chain.db.session() as s:
        e = registry.set_exporter(s, chain, tenant, body.ciio, body.ftz, chain.clock.now())
    chain.seal()
    return e.model_dump()


@router.get(
    "/datasets/{name}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(name: str, zone: Zone, chain: ChainDep, who: Caller) -> StreamingResponse:
    """The dataset's bytes from its home site, for its owner's members (and the admin), to a
    client in ``zone`` — decided as a download by the rules (outside the mainland it is an export,
    counted and perhaps needing a filing) and put on the record before a byte moves."""
    now = chain.clock.now()
    with translated(), chain.db.session() as s:
        ds = owned_dataset(s, who, name)
        home = ds.home_site
        decision, hold = movements.authorise_download(s, chain, name, zone, now, actor=who.name)
    chain.seal()
    if not hold.ok:
        raise Forbidden(f"the rules hold this download: {hold.reason or decision.explain()}")
    store = chain.store(home)
    size = store.manifest_of(name).size
    headers = {"Content-Length": str(size), "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(store.read_plain(name), media_type="application/octet-stream", headers=headers)
