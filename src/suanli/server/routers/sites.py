"""/api/v1/sites and /api/v1/nodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from suanli.app import network
from suanli.core.api import NodeOut, Page, PlainText, SiteOut
from suanli.server.deps import Caller, Control

T = TypeVar("T")

router = APIRouter(prefix="/api/v1", tags=["sites"])


@router.get("/sites", response_model=Page[SiteOut])
def list_sites(
    control: Control, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None
) -> Page[SiteOut]:
    return _page(network.list_sites(control, who), limit, cursor, key=lambda s: s.name)


@router.get("/nodes", response_model=Page[NodeOut])
def list_nodes(
    control: Control,
    who: Caller,
    site: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    cursor: str | None = None,
) -> Page[NodeOut]:
    return _page(network.list_nodes(control, who, site), limit, cursor, key=lambda n: n.name)


def _page(items: list[T], limit: int, cursor: str | None, *, key: Callable[[T], str]) -> Page[T]:
    """Pages by name: the cursor is the last name of the previous page."""
    ordered = sorted(items, key=key)
    if cursor:
        ordered = [i for i in ordered if key(i) > cursor]
    page = ordered[:limit]
    nxt = key(page[-1]) if len(ordered) > limit and page else None
    return Page[T](items=page, next_cursor=nxt)


class DrainIn(BaseModel):
    #: Shown to everyone who lists nodes: no control characters.
    reason: PlainText = Field(max_length=1000)


@router.post("/nodes/{name}/drain", response_model=NodeOut)
def drain(name: str, body: DrainIn, control: Control, who: Caller) -> NodeOut:
    """Take a node out of scheduling (for repair); its running attempts finish first."""
    return network.drain_node(control, who, name, body.reason)


@router.post("/nodes/{name}/undrain", response_model=NodeOut)
def undrain(name: str, control: Control, who: Caller) -> NodeOut:
    return network.undrain_node(control, who, name)
