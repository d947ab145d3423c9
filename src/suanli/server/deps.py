"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from suanli.app.control import ControlPlane
from suanli.core.identity import Identity
from suanli.server.limits import IDENTITY_KEY

#: The largest row id a query may name: PostgreSQL's INTEGER (ledger positions, attempt ids).
MAX_ROW_ID = 2**31 - 1


def get_control(request: Request) -> ControlPlane:
    control: ControlPlane = request.app.state.control
    return control


_SITE_BEARER = HTTPBearer(
    auto_error=False, scheme_name="SiteToken", description="A site agent's token ($SUANLI_HOME/tokens/site-NAME.token)"
)


def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_SITE_BEARER)]) -> str | None:
    """A site agent's token (the agent protocol's endpoints take nothing else)."""
    return credentials.credentials.strip() or None if credentials else None


#: Declares the scheme in the OpenAPI document (the "Authorize" button of /docs); the check
#: itself is :func:`caller`'s, so a missing or malformed header is a 401 problem document.
_BEARER = HTTPBearer(auto_error=False, description="An API token: 'suanli token create', or $SUANLI_HOME/admin.token")


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> Identity:
    """The identity behind the request's bearer token; 401 without a valid one.

    Async on purpose: a cached token resolves without a thread hand-off (the submit path);
    a cache miss is one indexed read."""
    known = request.scope.get("state", {}).get(IDENTITY_KEY)
    if isinstance(known, Identity):  # the rate limiter resolved this very request's token
        return known
    control: ControlPlane = request.app.state.control
    identity = control.identities.authenticate(credentials.credentials.strip() if credentials else None)
    request.state.identity = identity
    return identity


Control = Annotated[ControlPlane, Depends(get_control)]
Token = Annotated[str | None, Depends(bearer_token)]
Caller = Annotated[Identity, Depends(caller)]
