"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from suanli.server.control import ControlPlane


def get_control(request: Request) -> ControlPlane:
    control: ControlPlane = request.app.state.control
    return control


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


Control = Annotated[ControlPlane, Depends(get_control)]
Token = Annotated[str | None, Depends(bearer_token)]
