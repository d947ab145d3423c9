"""/api/v1/workdirs: upload a job's working directory (a .tar.gz) once, by content."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from suanli.app import jobrequests
from suanli.app import workdirs as service
from suanli.core.api import WorkdirOut
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1/workdirs", tags=["jobs"])


@router.post("", status_code=201, response_model=WorkdirOut)
async def upload(request: Request, control: Control, who: Caller) -> WorkdirOut:
    service.may_upload(who)
    settings = control.settings
    digest, size, spooled = await service.receive(
        request.headers.get("content-length"),
        request.stream(),
        settings.blob_dir,
        settings.max_workdir_bytes,
        settings.max_workdir_unpacked_bytes,
        "workdir",
    )

    await run_in_threadpool(jobrequests.record_workdir, control, who, digest, size, spooled)
    return WorkdirOut(digest=digest, size=size)
