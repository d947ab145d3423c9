"""/api/v1/services: start (``suanli serve``), list, show, scale, stop."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from suanli.app import servicerequests as requests
from suanli.core.api import JobSubmit, Page
from suanli.core.services import ServiceOut, ServiceScale
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1/services", tags=["services"])


@router.post("", status_code=201, response_model=ServiceOut)
async def start(body: JobSubmit, control: Control, who: Caller) -> ServiceOut:
    """Start a service from a job spec with a ``service:`` section; its replicas follow."""
    return await run_in_threadpool(requests.start, control, who, body)


@router.get("", response_model=Page[ServiceOut])
def listing(control: Control, who: Caller) -> Page[ServiceOut]:
    return Page[ServiceOut](items=requests.listing(control, who), next_cursor=None)


@router.get("/{name}", response_model=ServiceOut)
def show(name: str, control: Control, who: Caller, tenant: str | None = None) -> ServiceOut:
    return requests.get(control, who, name, tenant)


@router.post("/{name}/scale", response_model=ServiceOut)
def scale(name: str, body: ServiceScale, control: Control, who: Caller, tenant: str | None = None) -> ServiceOut:
    return requests.scale(control, who, name, body.replicas, tenant)


@router.post("/{name}/stop", response_model=ServiceOut)
def stop(name: str, control: Control, who: Caller, tenant: str | None = None) -> ServiceOut:
    """Stop the service: its replicas are cancelled; ``suanli serve`` starts it again."""
    return requests.stop(control, who, name, tenant)
