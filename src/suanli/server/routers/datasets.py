"""/api/v1/datasets and /api/v1/exporters: the registry, grading, and ``check`` (a dry-run decision)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from suanli.app import datasets, exports, grading
from suanli.core.api import Page
from suanli.core.api_data import (
    CheckOut,
    DatasetDetailOut,
    DatasetOut,
    ExportPermissionOut,
    GradedOut,
    GradeRequestOut,
)
from suanli.core.datasets import Classification
from suanli.core.network import Zone
from suanli.core.policy import Exporter, MovementKind, PiplBasis, Purpose
from suanli.server.chaindeps import Auditor, ChainDep
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1", tags=["datasets"])


class DatasetIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
    owner: str
    home_site: str
    #: A file on the server's machine (this version has no upload).
    path: str
    chunk_mib: int = datasets.DEFAULT_CHUNK_MIB
    classification: Classification | None = None
    derived_from: list[str] = Field(default_factory=list)
    #: Ignored: who graded is the authenticated caller (kept so older clients still validate).
    graded_by: str = ""


class GradeIn(BaseModel):
    classification: Classification
    #: Ignored: who graded is the authenticated caller (kept so older clients still validate).
    graded_by: str = ""


class DecideGradeIn(BaseModel):
    note: str = ""


class PermitIn(BaseModel):
    #: The destination: a site, or (downloads) the users' zone.
    to: str | None = None
    zone: Zone | None = None
    #: The PIPL basis the individuals' notice gave (separate consent, contract, …).
    basis: PiplBasis
    #: The reference of the owner's PI protection impact assessment (PIPL art. 55).
    pia_ref: str = Field(min_length=1, max_length=128)
    #: Whether the scheduler may copy it there for a waiting job.
    staging: bool = False


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


@router.post("/datasets", status_code=201, response_model=DatasetOut)
def register(body: DatasetIn, chain: ChainDep, who: Caller) -> DatasetOut:
    """Register a file on the server's machine as a dataset (admin only: it reads a server path)."""
    return datasets.register_dataset(
        chain,
        who,
        name=body.name,
        owner=body.owner,
        home_site=body.home_site,
        path=Path(body.path),
        chunk_mib=body.chunk_mib,
        classification=body.classification,
        derived_from=body.derived_from,
    )


@router.get("/datasets", response_model=Page[DatasetOut])
def list_datasets(chain: ChainDep, who: Caller, owner: str | None = None) -> Page[DatasetOut]:
    return Page(items=datasets.list_datasets(chain, who, owner))


@router.get("/datasets/{name}", response_model=DatasetDetailOut)
def show(name: str, chain: ChainDep, who: Caller) -> DatasetDetailOut:
    return datasets.show_dataset(chain, who, name)


@router.post("/datasets/{name}/grade", response_model=GradedOut, responses={202: {"model": GradedOut}})
def grade(name: str, body: GradeIn, chain: ChainDep, who: Caller, response: Response) -> GradedOut:
    """Keep or raise the grade at once (200); a grading that lowers anything is held as a
    request for an auditor (202) and the dataset keeps its grade until then."""
    out = grading.grade_dataset(chain, who, name, body.classification)
    if not out.applied:
        response.status_code = 202
    return out


@router.get("/grade-requests", response_model=Page[GradeRequestOut])
def grade_requests(
    chain: ChainDep, who: Caller, state: str | None = None, dataset: str | None = None
) -> Page[GradeRequestOut]:
    return Page(items=grading.list_requests(chain, who, state, dataset))


@router.get("/grade-requests/{request_id}", response_model=GradeRequestOut)
def grade_request(request_id: str, chain: ChainDep, who: Caller) -> GradeRequestOut:
    return grading.show_request(chain, who, request_id)


@router.post("/grade-requests/{request_id}/approve", response_model=GradedOut)
def approve_grade(request_id: str, chain: ChainDep, who: Auditor, body: DecideGradeIn | None = None) -> GradedOut:
    """An auditor approves a lowering: the dataset takes the requested grade."""
    return grading.decide_request(chain, who, request_id, approve=True, note=(body or DecideGradeIn()).note)


@router.post("/grade-requests/{request_id}/deny", response_model=GradedOut)
def deny_grade(request_id: str, chain: ChainDep, who: Auditor, body: DecideGradeIn | None = None) -> GradedOut:
    """An auditor denies a lowering: the dataset keeps its grade."""
    return grading.decide_request(chain, who, request_id, approve=False, note=(body or DecideGradeIn()).note)


@router.post("/datasets/{name}/check", response_model=CheckOut)
def check(name: str, body: CheckIn, chain: ChainDep, who: Caller) -> CheckOut:
    """A dry run: what the rules decide for this movement, and whether it may go now. It moves
    nothing and records nothing (the ledger holds what happens, not what was asked)."""
    return datasets.check_movement(
        chain,
        who,
        name,
        to=body.to,
        zone=body.zone,
        kind=body.kind,
        purpose=body.purpose,
        judicial_approval=body.judicial_approval,
    )


@router.put("/exporters/{tenant}", response_model=Exporter)
def set_exporter(tenant: str, body: ExporterIn, chain: ChainDep, who: Caller) -> Exporter:
    """Record a tenant's standing as a data exporter (CIIO, free-trade zone): admin only."""
    return datasets.set_exporter(chain, who, tenant, body.ciio, body.ftz)


@router.get(
    "/datasets/{name}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download(name: str, chain: ChainDep, control: Control, who: Caller, zone: Zone | None = None) -> StreamingResponse:
    """The dataset's bytes from its home site, for its owner's members (and the admin), to the
    caller's zone as their user record gives it (``zone``, if sent, must agree: 422 otherwise) —
    decided as a download by the rules (outside the mainland it is an export, counted and perhaps
    needing a filing) and put on the record before a byte moves."""
    d = datasets.download(chain, who, name, zone, control.agent_copies)
    headers = {"Content-Length": str(d.size), "Content-Disposition": f'attachment; filename="{d.name}"'}
    return StreamingResponse(d.chunks, media_type="application/octet-stream", headers=headers)


@router.get("/datasets/{name}/exports", response_model=Page[ExportPermissionOut])
def export_permissions(name: str, chain: ChainDep, who: Caller) -> Page[ExportPermissionOut]:
    """The owner's word for exports of the dataset, per destination."""
    return Page(items=exports.list_permissions(chain, who, name))


@router.put("/datasets/{name}/exports", response_model=ExportPermissionOut)
def permit(name: str, body: PermitIn, chain: ChainDep, who: Caller) -> ExportPermissionOut:
    """The owner records the PIPL basis and PI impact assessment for exports to one destination,
    and whether the scheduler may stage copies there (replaces an earlier word for it)."""
    return exports.set_permission(
        chain, who, name, to=body.to, zone=body.zone, basis=body.basis, pia_ref=body.pia_ref, staging=body.staging
    )


@router.delete("/datasets/{name}/exports", status_code=204)
def revoke(name: str, chain: ChainDep, who: Caller, to: str | None = None, zone: Zone | None = None) -> Response:
    exports.revoke_permission(chain, who, name, to=to, zone=zone)
    return Response(status_code=204)
