"""What callers do with identities: tokens, users and tenants. Each function is one request: it
opens its transaction and, where a change must reach every server worker at once (a revoked
token, a disabled user, a new tenant), says so to the control plane after the commit."""

from __future__ import annotations

from suanli.app import identities
from suanli.app.control import ControlPlane
from suanli.core.api import TenantIn, TenantOut, TokenCreatedOut, TokenIn, TokenOut, UserIn, UserOut, WhoAmIOut
from suanli.core.identity import Identity


def whoami(who: Identity) -> WhoAmIOut:
    """The caller: user, role, tenant or sites, and what this token may do."""
    return WhoAmIOut(
        user=who.name,
        role=who.role.value,
        tenant=who.tenant,
        sites=sorted(who.sites),
        scopes=sorted(s.value for s in who.scopes),
        token_id=who.token_id,
    )


def create_token(control: ControlPlane, who: Identity, body: TokenIn) -> TokenCreatedOut:
    with control.db.session() as session:
        return identities.create_token(session, who, body, control.clock.now())


def list_tokens(control: ControlPlane, who: Identity, user: str | None, *, all_users: bool) -> list[TokenOut]:
    """Tokens as of now: last-used times still held in memory are written first."""
    control.identities.flush_last_used()
    with control.db.read() as session:
        return identities.list_tokens(session, who, user, all_users=all_users)


def revoke_token(control: ControlPlane, who: Identity, token_id: str) -> TokenOut:
    with control.db.session() as session:
        out = identities.revoke_token(session, who, token_id, control.clock.now())
    control.identities.invalidate()
    return out


def list_users(control: ControlPlane, who: Identity) -> list[UserOut]:
    with control.db.read() as session:
        return identities.list_users(session, who)


def create_user(control: ControlPlane, who: Identity, body: UserIn) -> UserOut:
    with control.db.session() as session:
        return identities.create_user(session, who, body, control.clock.now())


def set_disabled(control: ControlPlane, who: Identity, name: str, disabled: bool) -> UserOut:
    """Disable (every token of the user's stops working at once) or enable a user."""
    with control.db.session() as session:
        out = identities.set_disabled(session, who, name, disabled)
    if disabled:
        control.identities.invalidate()
    return out


def list_tenants(control: ControlPlane, who: Identity) -> list[TenantOut]:
    with control.db.read() as session:
        return identities.list_tenants(session, who)


def create_tenant(control: ControlPlane, who: Identity, body: TenantIn) -> TenantOut:
    with control.db.session() as session:
        out = identities.create_tenant(session, who, body, control.clock.now())
    control.tenants_changed()
    return out
