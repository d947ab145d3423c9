"""/api/v1/datasets/uploads: registering a dataset at a site by upload (``app/uploads.py``).

``POST`` opens the upload (the registration and the manifest the uploader computed); ``GET
…/have`` says which chunks the site's store holds once its agent has opened the transfer (204:
ask again); ``PUT …/chunks/{index}`` sends one plain chunk, which the front desk checks, seals
and passes to the site through the relay (429 while the relay is full: send it again);
``POST …/finish`` registers the dataset once the site holds it all (204: ask again).
``POST /api/v1/datasets/uploads/local`` registers a file already in the site agent's store
(with the site's token in ``X-Site-Token``). Waits are
bounded (``wait_s``, at most 25 s). Each handler makes one call of ``app/uploads.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from suanli.app import uploads
from suanli.app.errors import Unprocessable
from suanli.core.api_data import DatasetOut
from suanli.core.datasets import Classification
from suanli.datachain.manifest import MAX_CHUNK, Manifest
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1/datasets/uploads", tags=["datasets"])

Wait = Annotated[float, Query(ge=0, le=60)]


class UploadIn(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
    owner: str
    #: The site whose agent's store will hold the bytes (the dataset's home).
    site: str
    manifest: Manifest
    classification: Classification | None = None
    derived_from: list[str] = Field(default_factory=list)


class LocalIn(UploadIn):
    #: Whether the copy in the site's store is sealed at rest (refused when the grade asks it and it is not).
    sealed_at_rest: bool


class UploadOut(BaseModel):
    id: str
    dataset: str
    site: str
    chunks: int
    at_rest: bool


class HaveOut(BaseModel):
    have: list[int]


@router.post("", status_code=201, response_model=UploadOut)
def start(body: UploadIn, control: Control, who: Caller) -> UploadOut:
    return UploadOut.model_validate(
        uploads.start(
            control,
            who,
            name=body.name,
            owner=body.owner,
            site=body.site,
            manifest=body.manifest,
            classification=body.classification,
            derived_from=body.derived_from,
        )
    )


@router.post("/local", status_code=201, response_model=DatasetOut, tags=["datasets"])
def register_local(
    body: LocalIn,
    control: Control,
    who: Caller,
    x_site_token: Annotated[str | None, Header(description="The site's token: the bytes are at that site")] = None,
) -> DatasetOut:
    """Register a file already in the site agent's store (``suanli data register --local-path``,
    run at the site); 401 without the site's token."""
    return uploads.register_local(
        control,
        who,
        x_site_token,
        name=body.name,
        owner=body.owner,
        site=body.site,
        manifest=body.manifest,
        classification=body.classification,
        derived_from=body.derived_from,
        sealed_at_rest=body.sealed_at_rest,
    )


@router.get("/{upload_id}/have", response_model=None)
async def have(upload_id: str, control: Control, who: Caller, wait_s: Wait = 10.0) -> Response | HaveOut:
    got = await run_in_threadpool(uploads.have, control, who, upload_id, wait_s)
    return Response(status_code=204) if got is None else HaveOut(have=got)


@router.put("/{upload_id}/chunks/{index}")
async def put(
    upload_id: str, index: int, request: Request, control: Control, who: Caller, wait_s: Wait = 10.0
) -> Response:
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_CHUNK:
        raise Unprocessable(f"a chunk has a Content-Length of at most {MAX_CHUNK} bytes")
    # Checked before the body is read: nobody else's upload takes a byte.
    await run_in_threadpool(uploads.check, control, who, upload_id)
    body = await request.body()
    taken = await run_in_threadpool(uploads.put, control, who, upload_id, index, body, wait_s)
    return Response(status_code=200 if taken else 429)


@router.post("/{upload_id}/finish", response_model=None)
async def finish(upload_id: str, control: Control, who: Caller, wait_s: Wait = 10.0) -> Response | DatasetOut:
    out = await run_in_threadpool(uploads.finish, control, who, upload_id, wait_s)
    return Response(status_code=204) if out is None else out
