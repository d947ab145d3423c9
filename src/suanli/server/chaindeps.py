"""FastAPI dependencies of the data chain's routers: the Chain per app, and the auditor's request
(recorded on the ledger by ``app/audit.py`` before the handler runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from suanli.app import audit
from suanli.app.chain import Chain
from suanli.app.control import ControlPlane
from suanli.core.identity import Identity
from suanli.server.deps import caller


def chain_of(request: Request) -> Chain:
    """The control plane's Chain (one per state directory: placements are recorded through it too)."""
    control: ControlPlane = request.app.state.control
    return control.chain


def auditor(request: Request, who: Annotated[Identity, Depends(caller)]) -> Identity:
    """An auditor's request (deciding filings): every one is itself written to the ledger."""
    audit.record_access(chain_of(request), who, request.method, request.url.path)
    return who


ChainDep = Annotated[Chain, Depends(chain_of)]
Auditor = Annotated[Identity, Depends(auditor)]
