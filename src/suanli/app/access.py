"""Authorisation checks every service calls with the caller's :class:`Identity`.

Two kinds of refusal: a caller whose role or token lacks a permission gets 403 with the scope
it needs (that reveals nothing about anyone's objects); a caller asking for another tenant's
object gets exactly the 404 an absent object gets, so nothing leaks that it exists.
"""

from __future__ import annotations

from suanli.app.errors import Forbidden, NotFound
from suanli.core.identity import ROLE_SCOPES, Identity, Role, Scope


def require(who: Identity, scope: Scope) -> None:
    if not who.can(scope):
        held = "your role" if scope not in ROLE_SCOPES[who.role] else "this token"
        raise Forbidden(
            f"{held} may not do this: it needs the '{scope.value}' scope ({who.role.value} '{who.name}', "
            f"token {who.token_id or '-'})"
        )


def require_delegable(who: Identity, wanted: frozenset[Scope], what: str, hint: str = "") -> None:
    """The caller may hand out (to a new user's role, or to a token for someone else) only the
    scopes its own token holds: a narrowed token never makes a wider identity. Scopes the
    caller's role can never hold (the admin cannot decide filings, an auditor's scope) may be
    handed out only by a caller holding every scope of its role: the full admin."""
    full = ROLE_SCOPES[who.role] <= who.scopes
    beyond_role = wanted - ROLE_SCOPES[who.role]
    if beyond_role and not full:
        raise Forbidden(
            f"{what} would hold {_names(beyond_role)}, which only a token with every scope of the "
            f"{who.role.value} role may hand out; this token ({who.token_id or '-'}) lacks "
            f"{_names(ROLE_SCOPES[who.role] - who.scopes)}"
        )
    missing = (wanted & ROLE_SCOPES[who.role]) - who.scopes
    if missing:
        raise Forbidden(
            f"{what} would hold {_names(missing)}, which this token ({who.token_id or '-'}) does not: "
            f"use a token that holds them{hint}"
        )


def require_full_admin(who: Identity, what: str) -> None:
    """Only the admin with a token holding every admin scope may make or restore an admin."""
    if who.role != Role.ADMIN or not ROLE_SCOPES[Role.ADMIN] <= who.scopes:
        raise Forbidden(
            f"{what} needs an admin token with every admin scope; you are {who.role.value} '{who.name}' "
            f"with token {who.token_id or '-'}"
        )


def _names(scopes: frozenset[Scope]) -> str:
    return ", ".join(f"'{s.value}'" for s in sorted(scopes))


def require_role(who: Identity, *roles: Role) -> None:
    if who.role not in roles:
        names = " or ".join(r.value for r in roles)
        raise Forbidden(f"only {names} users may do this; you are {who.role.value} '{who.name}'")


def require_site(who: Identity, scope: Scope, site: str) -> None:
    """Operators act only on the sites they run; the admin on all."""
    require(who, scope)
    if not who.runs_site(site):
        raise Forbidden(f"you do not operate site '{site}'")


#: The tenant filter of a caller who sees no tenant's objects: a name no tenant can have.
NO_TENANT = "(no tenant)"


def tenant_filter(who: Identity) -> str | None:
    """The tenant a listing is limited to: None for the admin (every tenant). Anyone else who
    is not a member gets a name no tenant can have (names start with a letter or digit), so a
    listing is empty rather than wide. Not a NUL byte: PostgreSQL refuses NUL in text."""
    if who.all_tenants:
        return None
    return who.tenant if who.role == Role.MEMBER and who.tenant else NO_TENANT


def visible(who: Identity, tenant: str, what: str) -> None:
    """404 (the same sentence as for a missing object) unless ``who`` may see ``tenant``'s objects."""
    if not who.sees_tenant(tenant):
        raise NotFound(what)
