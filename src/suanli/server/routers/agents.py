"""/api/v1/agents: the pull protocol of site agents, workdir downloads and checkpoint uploads
and downloads for them. Each handler makes one call of ``app/agentdesk.py``."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from suanli.app import agentdesk as desk
from suanli.app.blobstore import BlobRead
from suanli.app.workdirs import receive
from suanli.core.api_data import DatasetOut
from suanli.core.protocol import (
    CheckpointReceipt,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from suanli.datachain.manifest import Manifest
from suanli.server.deps import MAX_ROW_ID, Control, Token

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.post("/register", response_model=RegisterResponse)
def register(req: RegisterRequest, control: Control, token: Token) -> RegisterResponse:
    return desk.register(control, req, token)


@router.post("/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(req: HeartbeatRequest, control: Control, token: Token) -> HeartbeatResponse:
    """Reports in, orders out. With ``wait_s`` the reply is held until there is work for the
    site (long poll), so a new job reaches its agent at once. The wait holds no thread (as
    log followers, ``app/follow.py``): only the reads and writes go to one, briefly."""
    # Subscribed before recording: an order placed meanwhile wakes the wait below at once.
    with control.signals.subscribe(f"site:{req.site}", "shutdown") as wake:
        out = await run_in_threadpool(desk.record_heartbeat, control, req, token)
        send, store = desk.data_orders(control, req.site)  # the site is authenticated by now
        deadline = time.monotonic() + req.wait_s
        while not (out.start or out.stop or store or send) and not control.stopping:
            left = deadline - time.monotonic()
            if left <= 0 or not await wake.wait(left):
                break
            wake.clear()
            await run_in_threadpool(desk.collect_orders, control, req, token, out)
            send, store = desk.data_orders(control, req.site)
    return HeartbeatResponse(
        start=out.start,
        stop=out.stop,
        forget=out.forget,
        store=store,
        send=send,
        lease_s=control.settings.lease_s,
        server_time=control.clock.now(),
    )


def _archive(found: BlobRead) -> Response:
    """An archive from the blob store: the file itself, or its chunks as they are read."""
    if found.path is not None:
        return FileResponse(found.path, media_type="application/gzip")
    assert found.chunks is not None
    return StreamingResponse(found.chunks, media_type="application/gzip", headers={"Content-Length": str(found.size)})


@router.get("/workdirs/{digest}", response_class=FileResponse)
def download_workdir(digest: str, control: Control, token: Token) -> Response:
    return _archive(desk.workdir_file(control, token, digest))


@router.get("/datasets/{name}", response_class=StreamingResponse)
def download_dataset(
    name: str, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
) -> StreamingResponse:
    """A dataset's bytes, from this site's own copy (each chunk verified against its manifest),
    for an attempt at this site whose job reads it. Nothing crosses sites here: a copy elsewhere
    moves only through ``suanli data copy`` and its rules."""
    data = desk.dataset_bytes(control, token, attempt, name)
    return StreamingResponse(
        data.chunks, media_type="application/octet-stream", headers={"Content-Length": str(data.size)}
    )


class SiteReadIn(BaseModel):
    root: str = Field(max_length=64)


@router.post("/datasets/{name}/reads", response_model=DatasetOut)
def record_site_read(
    name: str,
    body: SiteReadIn,
    control: Control,
    token: Token,
    attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)],
) -> DatasetOut:
    """The agent hands a job the copy in its own store (a dataset registered at the site): the
    read goes on the ledger first. 409 when that copy is not the registered one."""
    return desk.record_site_read(control, token, attempt, name, body.root)


@router.post("/checkpoints", status_code=201, response_model=CheckpointReceipt)
async def upload_checkpoint(
    request: Request, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
) -> CheckpointReceipt:
    """An attempt's ``SUANLI_CHECKPOINT_DIR`` as a ``.tar.gz``: it becomes the job's latest
    checkpoint, which a retry at another site starts from. Checked like a workdir upload (size,
    unpacked size, only plain files and folders); refused (409) when a newer attempt has started."""
    # Checked before the body is read: a stale upload costs no transfer.
    await run_in_threadpool(desk.check_checkpoint_upload, control, token, attempt)
    settings = control.settings
    digest, size, spooled = await receive(
        request.headers.get("content-length"),
        request.stream(),
        settings.blob_dir,
        settings.max_workdir_bytes,
        settings.max_workdir_unpacked_bytes,
        "checkpoint",
    )
    return await run_in_threadpool(desk.record_checkpoint, control, token, attempt, digest, size, spooled)


@router.post("/outputs", status_code=201, response_model=DatasetOut)
async def upload_output(
    request: Request, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
) -> DatasetOut:
    """A succeeded attempt's ``SUANLI_OUTPUT_DIR`` as a ``.tar.gz``: it becomes the derived
    dataset its job's ``output.dataset`` names, at this site (``app/outputs.py``). Checked
    like a workdir upload; refused (409) for a job that names no output, an attempt that is not
    the job's running one, or a name already registered."""
    await run_in_threadpool(desk.check_output_upload, control, token, attempt)
    limit = control.settings.max_output_bytes
    digest, _, path = await receive(
        request.headers.get("content-length"), request.stream(), control.settings.blob_dir, limit, limit, "output"
    )
    return await run_in_threadpool(desk.register_output, control, token, attempt, path, digest)


class OutputAtSiteIn(BaseModel):
    manifest: Manifest
    archive_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@router.post("/outputs/at-site", status_code=201, response_model=DatasetOut)
def register_output_at_site(
    body: OutputAtSiteIn, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
) -> DatasetOut:
    """A succeeded attempt's output that stays in its site agent's store: registered by its
    manifest (the archive's), refused as an upload is (409 for an attempt that is not the job's
    running one, or a name already registered)."""
    return desk.register_output_at_site(control, token, attempt, body.manifest, body.archive_sha256)


@router.get("/checkpoints/{digest}", response_class=FileResponse)
def download_checkpoint(
    digest: str, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=MAX_ROW_ID)]
) -> Response:
    """The checkpoint an attempt at this site starts from (its assignment's ``checkpoint_digest``)."""
    return _archive(desk.checkpoint_file(control, token, attempt, digest))
