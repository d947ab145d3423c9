"""/api/v1/workdirs: upload a job's working directory (a .tar.gz) once, by content."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from suanli.core.api import WorkdirOut
from suanli.server.deps import Caller, Control
from suanli.server.services import workdirs as service
from suanli.server.services.errors import TooLarge

router = APIRouter(prefix="/api/v1/workdirs", tags=["jobs"])


@router.post("", status_code=201, response_model=WorkdirOut)
async def upload(request: Request, control: Control, who: Caller) -> WorkdirOut:
    service.may_upload(who)
    limit = control.settings.max_workdir_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(
            f"the workdir archive is {int(declared) / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit"
        )
    receiver = service.Receiver(control.settings.blob_dir, limit, control.settings.max_workdir_unpacked_bytes)
    try:
        async for data in request.stream():
            receiver.write(data)
    except BaseException:
        receiver.abort()
        raise
    digest, size, _ = await run_in_threadpool(receiver.finish)

    def store() -> None:
        with control.db.session() as session:
            service.record(session, digest, size, control.clock.now(), who)

    await run_in_threadpool(store)
    return WorkdirOut(digest=digest, size=size)
