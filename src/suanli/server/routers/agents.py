"""/api/v1/agents: the pull protocol of site agents, workdir downloads and checkpoint uploads
and downloads for them."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from suanli.app import agents as service
from suanli.app import checkpoints, outputs
from suanli.app.errors import NotFound
from suanli.app.sites import authenticate_site, site_for_token
from suanli.app.workdirs import blob_path, receive
from suanli.core.protocol import (
    CheckpointReceipt,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from suanli.server.chaindeps import translated
from suanli.server.deps import Control, Token

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.post("/register", response_model=RegisterResponse)
def register(req: RegisterRequest, control: Control, token: Token) -> RegisterResponse:
    now = control.clock.now()
    with control.db.session() as session:
        site = authenticate_site(session, req.site, token)
        changed = service.register(session, site, req, now)
    if changed:
        control.invalidate_capacity()
    control.capacity_changed()
    return RegisterResponse(
        site=req.site, lease_s=control.settings.lease_s, heartbeat_s=control.settings.heartbeat_s, server_time=now
    )


@router.post("/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(req: HeartbeatRequest, control: Control, token: Token) -> HeartbeatResponse:
    """Reports in, orders out. With ``wait_s`` the reply is held until there is work for the
    site (long poll), so a new job reaches its agent at once. The wait holds no thread (as
    log followers, ``server/follow.py``): only the reads and writes go to one, briefly."""
    grace = control.scheduler_config.policy.preempt_grace_s

    def record() -> service.HeartbeatOutcome:
        with control.db.session() as session:
            site = authenticate_site(session, req.site, token)
            return service.record_heartbeat(
                session,
                site,
                req,
                control.clock.now(),
                control.settings.lease_s,
                grace,
                control.secrets,
                policy=control.scheduler_config.policy,
            )

    def collect(out: service.HeartbeatOutcome) -> None:
        with control.db.session() as session:
            site = authenticate_site(session, req.site, token)
            service.collect_orders(session, site, control.clock.now(), out, grace, control.secrets)

    # Subscribed before recording: an order placed meanwhile wakes the wait below at once.
    with control.signals.subscribe(f"site:{req.site}", "shutdown") as wake:
        out = await run_in_threadpool(record)
        if out.inventory_changed:
            control.invalidate_capacity()
        if out.logs_added or out.changed_jobs:
            control.signals.bump("logs", "jobs")
        if out.freed_capacity or out.inventory_changed:
            control.capacity_changed()
        deadline = time.monotonic() + req.wait_s
        while not (out.start or out.stop) and not control.stopping:
            left = deadline - time.monotonic()
            if left <= 0 or not await wake.wait(left):
                break
            wake.clear()
            await run_in_threadpool(collect, out)
    return HeartbeatResponse(
        start=out.start,
        stop=out.stop,
        forget=out.forget,
        lease_s=control.settings.lease_s,
        server_time=control.clock.now(),
    )


@router.get("/workdirs/{digest}", response_class=FileResponse)
def download_workdir(digest: str, control: Control, token: Token) -> FileResponse:
    with control.db.read() as session:
        site = site_for_token(session, token)
        if not service.site_runs_workdir(session, site.name, digest):
            raise NotFound(f"no workdir {digest} for site '{site.name}'")
    path = blob_path(control.settings.blob_dir, digest)
    if not path.is_file():
        raise NotFound(f"no workdir {digest}")
    return FileResponse(path, media_type="application/gzip")


@router.get("/datasets/{name}", response_class=StreamingResponse)
def download_dataset(
    name: str, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=2**62)]
) -> StreamingResponse:
    """A dataset's bytes, from this site's own copy (each chunk verified against its manifest),
    for an attempt at this site whose job reads it. Nothing crosses sites here: a copy elsewhere
    moves only through ``suanli data copy`` and its rules."""
    with control.db.read() as session:
        site = site_for_token(session, token)
        if not service.site_reads_dataset(session, site.name, attempt, name):
            raise NotFound(f"no dataset '{name}' for attempt {attempt} at site '{site.name}'")
    store = control.chain.store(site.name)
    if not store.has(name):
        raise NotFound(f"site '{site.name}' holds no copy of dataset '{name}'")
    size = store.manifest_of(name).size
    return StreamingResponse(
        store.read_plain(name), media_type="application/octet-stream", headers={"Content-Length": str(size)}
    )


@router.post("/checkpoints", status_code=201, response_model=CheckpointReceipt)
async def upload_checkpoint(
    request: Request, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=2**62)]
) -> CheckpointReceipt:
    """An attempt's ``SUANLI_CHECKPOINT_DIR`` as a ``.tar.gz``: it becomes the job's latest
    checkpoint, which a retry at another site starts from. Checked like a workdir upload (size,
    unpacked size, only plain files and folders); refused (409) when a newer attempt has started."""

    def check() -> None:
        with control.db.read() as session:
            checkpoints.check_upload(session, site_for_token(session, token).name, attempt)

    await run_in_threadpool(check)  # before reading the body: a stale upload costs no transfer
    settings = control.settings
    digest, size, _ = await receive(
        request, settings.blob_dir, settings.max_workdir_bytes, settings.max_workdir_unpacked_bytes, "checkpoint"
    )

    def store() -> CheckpointReceipt:
        with control.db.session() as session:
            site = site_for_token(session, token)
            return checkpoints.record_upload(session, site.name, attempt, digest, size, control.clock.now())

    return await run_in_threadpool(store)


@router.post("/outputs", status_code=201)
async def upload_output(
    request: Request, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=2**62)]
) -> dict[str, Any]:
    """A succeeded attempt's ``SUANLI_OUTPUT_DIR`` as a ``.tar.gz``: it becomes the derived
    dataset its job's ``output.dataset`` names, at this site (``services/outputs.py``). Checked
    like a workdir upload; refused (409) for a job that names no output, an attempt that is not
    the job's running one, or a name already registered."""

    def check() -> None:
        with control.db.read() as session:
            outputs.check_upload(session, site_for_token(session, token).name, attempt)

    await run_in_threadpool(check)
    limit = control.settings.max_output_bytes
    digest, _, path = await receive(request, control.settings.blob_dir, limit, limit, "output")

    def register() -> dict[str, Any]:
        with control.db.read() as session:
            site = site_for_token(session, token).name
        with translated():
            try:
                return outputs.register(control.chain, site, attempt, path, digest, control.clock.now())
            finally:
                path.unlink(missing_ok=True)  # the site's store holds it now (sealed if need be)

    return await run_in_threadpool(register)


@router.get("/checkpoints/{digest}", response_class=FileResponse)
def download_checkpoint(
    digest: str, control: Control, token: Token, attempt: Annotated[int, Query(ge=0, le=2**62)]
) -> FileResponse:
    """The checkpoint an attempt at this site starts from (its assignment's ``checkpoint_digest``)."""
    with control.db.read() as session:
        site = site_for_token(session, token)
        if not checkpoints.may_download(session, site.name, attempt, digest):
            raise NotFound(f"no checkpoint {digest} for attempt {attempt} at site '{site.name}'")
    path = blob_path(control.settings.blob_dir, digest)
    if not path.is_file():
        raise NotFound(f"no checkpoint {digest}")
    return FileResponse(path, media_type="application/gzip")
