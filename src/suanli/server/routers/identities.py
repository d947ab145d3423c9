"""/api/v1/whoami, /api/v1/tokens, /api/v1/users, /api/v1/tenants: who may do what."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from suanli.app import accounts
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
    return accounts.whoami(who)


@router.post("/tokens", status_code=201, response_model=TokenCreatedOut)
def create_token(body: TokenIn, who: Caller, control: Control) -> TokenCreatedOut:
    """A new API token, shown once in the reply. The admin may make one for any user."""
    return accounts.create_token(control, who, body)


@router.get("/tokens", response_model=Page[TokenOut])
def list_tokens(
    who: Caller,
    control: Control,
    user: Annotated[str | None, Query(max_length=64)] = None,
    all: bool = False,
) -> Page[TokenOut]:
    """Your tokens (never the tokens themselves: their ids, scopes and dates)."""
    return Page[TokenOut](items=accounts.list_tokens(control, who, user, all_users=all))


@router.delete("/tokens/{token_id}", response_model=TokenOut)
def revoke_token(token_id: str, who: Caller, control: Control) -> TokenOut:
    """Revoke a token: it stops working at once."""
    return accounts.revoke_token(control, who, token_id)


@router.get("/users", response_model=Page[UserOut])
def list_users(who: Caller, control: Control) -> Page[UserOut]:
    return Page[UserOut](items=accounts.list_users(control, who))


@router.post("/users", status_code=201, response_model=UserOut)
def create_user(body: UserIn, who: Caller, control: Control) -> UserOut:
    """A user: a member of a tenant, an operator of sites, an auditor, or another admin."""
    return accounts.create_user(control, who, body)


@router.post("/users/{name}/disable", response_model=UserOut)
def disable_user(name: str, who: Caller, control: Control) -> UserOut:
    """Disable a user: every token of theirs stops working at once."""
    return accounts.set_disabled(control, who, name, True)


@router.post("/users/{name}/enable", response_model=UserOut)
def enable_user(name: str, who: Caller, control: Control) -> UserOut:
    return accounts.set_disabled(control, who, name, False)


@router.get("/tenants", response_model=Page[TenantOut])
def list_tenants(who: Caller, control: Control) -> Page[TenantOut]:
    """Every tenant (admin), or your own (member)."""
    return Page[TenantOut](items=accounts.list_tenants(control, who))


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantIn, who: Caller, control: Control) -> TenantOut:
    return accounts.create_tenant(control, who, body)
