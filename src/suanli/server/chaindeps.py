"""Glue between the HTTP layer and the data chain: the Chain per app, errors, who may see and do what."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from suanli.app.access import require, tenant_filter
from suanli.app.chain import Chain
from suanli.app.chainerrors import DataChainError
from suanli.app.control import ControlPlane
from suanli.app.errors import Conflict, Forbidden, NotFound, ServiceError, Unprocessable
from suanli.core.identity import Identity, Role, Scope
from suanli.server.deps import caller
from suanli.store.models import Dataset


def chain_of(request: Request) -> Chain:
    """The control plane's Chain (one per state directory: placements are recorded through it too)."""
    app_state = request.app.state
    chain: Chain | None = getattr(app_state, "datachain", None)
    if chain is None:
        control: ControlPlane = app_state.control
        chain = app_state.datachain = control.chain
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


def dataset_owner_filter(who: Identity) -> str | None:
    """Datasets a listing shows: the admin's and the auditor's every one (None), a member's its
    tenant's, anyone else's none."""
    require(who, Scope.DATA_READ)
    if who.role in (Role.ADMIN, Role.AUDITOR):
        return None
    return tenant_filter(who)


def visible_dataset(session: Session, who: Identity, name: str) -> Dataset:
    """The dataset if ``who`` may read it; another tenant's answers the same 404 as a missing one."""
    require(who, Scope.DATA_READ)
    ds = session.get(Dataset, name)
    if ds is None or not (who.role == Role.AUDITOR or who.sees_tenant(ds.owner)):
        raise NotFound(f"no dataset '{name}'; see `suanli data ls`")
    return ds


def owned_dataset(session: Session, who: Identity, name: str) -> Dataset:
    """The dataset if ``who`` may act for its owner (its tenant's members, the admin)."""
    require(who, Scope.DATA_WRITE)
    ds = session.get(Dataset, name)
    if ds is None or not who.sees_tenant(ds.owner):
        raise NotFound(f"no dataset '{name}'; see `suanli data ls`")
    return ds


def actor_of(who: Identity, asked: str) -> str:
    """Who the ledger records as acting: the caller; only the admin may name someone else."""
    return (asked or who.name) if who.is_admin else who.name


def auditor(request: Request, who: Annotated[Identity, Depends(caller)]) -> Identity:
    """An auditor's request (deciding filings): every one is itself written to the ledger."""
    require(who, Scope.FILINGS_DECIDE)
    chain = chain_of(request)
    now = chain.clock.now()
    with chain.db.session() as session:
        chain.ledger.record(
            session,
            "audit.access",
            {"role": who.role.value, "user": who.name, "method": request.method, "path": request.url.path},
            now,
        )
    chain.seal()
    return who


ChainDep = Annotated[Chain, Depends(chain_of)]
Auditor = Annotated[Identity, Depends(auditor)]
