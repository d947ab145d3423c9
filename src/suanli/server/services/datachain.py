"""Glue between the HTTP layer and the data chain: the Chain per app, errors, the auditor gate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Header, Request

from suanli.datachain.chain import Chain
from suanli.datachain.errors import DataChainError
from suanli.server.control import ControlPlane
from suanli.server.services.errors import Conflict, Forbidden, NotFound, ServiceError, Unprocessable

_LOCK = threading.Lock()
ROLE_HEADER = "X-Suanli-Role"
LOOPBACK = frozenset({"127.0.0.1", "::1"})


def chain_of(request: Request) -> Chain:
    """One Chain per app, opened on first use beside the control plane's state directory."""
    app_state = request.app.state
    chain: Chain | None = getattr(app_state, "datachain", None)
    if chain is None:
        with _LOCK:
            chain = getattr(app_state, "datachain", None)
            if chain is None:
                control: ControlPlane = app_state.control
                chain = Chain.open(control.db, control.clock, control.settings.home)
                app_state.datachain = chain
    return chain


@contextmanager
def translated() -> Iterator[None]:
    """Data-chain errors become problem documents with the same sentence."""
    try:
        yield
    except DataChainError as exc:
        cls: type[ServiceError] = {
            "not_found": NotFound,
            "conflict": Conflict,
            "forbidden": Forbidden,
        }.get(exc.kind, Unprocessable)
        raise cls(str(exc)) from None
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None


def auditor(request: Request, role: Annotated[str | None, Header(alias=ROLE_HEADER)] = None) -> str:
    """PLACEHOLDER until identities and roles land: the ``auditor`` role is claimed with the
    ``X-Suanli-Role: auditor`` header and honoured only on requests from this machine
    (loopback). It keeps the regulator's actions separate and on the record; it is not
    authentication. Every auditor request is itself written to the ledger."""
    client = request.client.host if request.client else ""
    if role != "auditor":
        raise Forbidden(
            f"this needs the auditor role; send header {ROLE_HEADER}: auditor (loopback only in this version)"
        )
    if client not in LOOPBACK:
        raise Forbidden("the auditor role is accepted only from loopback until identities land")
    chain = chain_of(request)
    now = chain.clock.now()
    with chain.db.session() as session:
        chain.ledger.record(
            session, "audit.access", {"role": "auditor", "method": request.method, "path": request.url.path}, now
        )
    chain.seal()
    return f"auditor@{client}"


ChainDep = Annotated[Chain, Depends(chain_of)]
Auditor = Annotated[str, Depends(auditor)]
