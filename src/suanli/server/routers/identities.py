"""/api/v1/whoami, /api/v1/tokens, /api/v1/users, /api/v1/tenants: who may do what."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from suanli.app import identities as service
from suanli.core.api import (
    Page,
    TenantIn,
    TenantOut,
    TokenCreatedOut,
    TokenIn,
    TokenOut,
    UserIn,
    UserOut,
    WhoAmIOut,
)
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1", tags=["identities"])


@router.get("/whoami", response_model=WhoAmIOut)
def whoami(who: Caller) -> WhoAmIOut:
    """The caller: user, role, tenant or sites, and what this token may do."""
    return WhoAmIOut(
        user=who.name,
        role=who.role.value,
        tenant=who.tenant,
        sites=sorted(who.sites),
        scopes=sorted(s.value for s in who.scopes),
        token_id=who.token_id,
    )


@router.post("/tokens", status_code=201, response_model=TokenCreatedOut)
def create_token(body: TokenIn, who: Caller, control: Control) -> TokenCreatedOut:
    """A new API token, shown once in the reply. The admin may make one for any user."""
    with control.db.session() as session:
        return service.create_token(session, who, body, control.clock.now())


@router.get("/tokens", response_model=Page[TokenOut])
def list_tokens(
    who: Caller,
    control: Control,
    user: Annotated[str | None, Query(max_length=64)] = None,
    all: bool = False,
) -> Page[TokenOut]:
    """Your tokens (never the tokens themselves: their ids, scopes and dates)."""
    control.identities.flush_last_used()
    with control.db.read() as session:
        return Page[TokenOut](items=service.list_tokens(session, who, user, all_users=all))


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, who: Caller, control: Control) -> TokenOut:
    """Revoke a token: it stops working at once."""
    with control.db.session() as session:
        out = service.revoke_token(session, who, token_id, control.clock.now())
    control.identities.invalidate()
    return out


@router.get("/users", response_model=Page[UserOut])
def list_users(who: Caller, control: Control) -> Page[UserOut]:
    with control.db.read() as session:
        return Page[UserOut](items=service.list_users(session, who))


@router.post("/users", status_code=201, response_model=UserOut)
def create_user(body: UserIn, who: Caller, control: Control) -> UserOut:
    """A user: a member of a tenant, an operator of sites, an auditor, or another admin."""
    with control.db.session() as session:
        return service.create_user(session, who, body, control.clock.now())


@router.post("/users/{name}/disable", response_model=UserOut)
def disable_user(name: str, who: Caller, control: Control) -> UserOut:
    """Disable a user: every token of theirs stops working at once."""
    with control.db.session() as session:
        out = service.set_disabled(session, who, name, True)
    control.identities.invalidate()
    return out


@router.post("/users/{name}/enable", response_model=UserOut)
def enable_user(name: str, who: Caller, control: Control) -> UserOut:
    with control.db.session() as session:
        return service.set_disabled(session, who, name, False)


@router.get("/tenants", response_model=Page[TenantOut])
def list_tenants(who: Caller, control: Control) -> Page[TenantOut]:
    """Every tenant (admin), or your own (member)."""
    with control.db.read() as session:
        return Page[TenantOut](items=service.list_tenants(session, who))


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantIn, who: Caller, control: Control) -> TenantOut:
    with control.db.session() as session:
        out = service.create_tenant(session, who, body, control.clock.now())
    control.tenants_changed()
    return out
