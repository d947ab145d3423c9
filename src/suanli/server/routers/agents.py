"""/api/v1/agents: the pull protocol of site agents, and workdir downloads for them."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import FileResponse

from suanli.core.protocol import HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse
from suanli.server.deps import Control, Token
from suanli.server.services import agents as service
from suanli.server.services.errors import NotFound
from suanli.server.services.sites import authenticate_site, site_for_token
from suanli.server.services.workdirs import blob_path

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
def heartbeat(req: HeartbeatRequest, control: Control, token: Token) -> HeartbeatResponse:
    """Reports in, orders out. With ``wait_s`` the reply is held until there is work for the
    site (long poll), so a new job reaches its agent at once."""
    key = f"site:{req.site}"
    seen = control.signals.version(key)
    with control.db.session() as session:
        site = authenticate_site(session, req.site, token)
        grace = control.scheduler_config.policy.preempt_grace_s
        out = service.record_heartbeat(
            session, site, req, control.clock.now(), control.settings.lease_s, grace, control.secrets
        )
    if out.inventory_changed:
        control.invalidate_capacity()
    if out.logs_added or out.changed_jobs:
        control.signals.bump("logs", "jobs")
    if out.freed_capacity or out.inventory_changed:
        control.capacity_changed()
    deadline = time.monotonic() + req.wait_s
    while not (out.start or out.stop) and not control.stopping:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        now_seen = control.signals.wait(key, seen, left)
        if now_seen == seen:
            continue
        seen = now_seen
        with control.db.session() as session:
            site = authenticate_site(session, req.site, token)
            service.collect_orders(session, site, control.clock.now(), out, grace, control.secrets)
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
