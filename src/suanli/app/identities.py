"""Users, tenants and API tokens; turning a bearer token into an :class:`Identity`.

Tokens are ``sl_<id>_<secret>``: 10 characters of id that find the row, and 32 random bytes.
Only the SHA-256 of the whole token is stored (the token has 256 bits of entropy, so a slow
password hash would add nothing), and it is compared in constant time. A token is shown once,
when it is made.

The server looks tokens up on every request, so resolved identities are cached for a few
seconds; revoking a token or disabling a user clears the cache at once (one server process
per database, see docs/operators.md).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from suanli.app.access import require, require_delegable, require_full_admin, require_role
from suanli.app.errors import Conflict, NotFound, Unauthorized, Unprocessable
from suanli.app.sites import hash_token
from suanli.core.api import TenantIn, TenantOut, TokenCreatedOut, TokenIn, TokenOut, UserIn, UserOut
from suanli.core.clock import Clock
from suanli.core.identity import (
    ALL_SCOPES,
    ROLE_SCOPES,
    TOKEN_ID_RE,
    TOKEN_PREFIX,
    Identity,
    Role,
    Scope,
    parse_scopes,
)
from suanli.store.db import Database
from suanli.store.models import ApiToken, Site, Tenant, User

log = logging.getLogger("suanli.server")

ADMIN_USER = "admin"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 (a file name)
#: Tokens made without an explicit lifetime expire after this long.
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
#: How long a resolved identity is trusted without asking the database again.
CACHE_TTL_S = 5.0
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SCOPE_VALUES = frozenset(s.value for s in ALL_SCOPES)


def _new_token() -> tuple[str, str]:
    token_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, _, rest = token[len(TOKEN_PREFIX) :].partition("_")
    return token_id if TOKEN_ID_RE.match(token_id) and rest else None


# -- authentication ------------------------------------------------------------------------


@dataclass
class _Cached:
    identity: Identity
    until: float


class Authenticator:
    """Bearer token → Identity, with a short cache and deferred ``last_used_at`` writes."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}
        self._used: dict[str, datetime] = {}

    def authenticate(self, token: str | None) -> Identity:
        if not token:
            raise Unauthorized("this needs an API token: send 'Authorization: Bearer <token>' ('suanli login')")
        key = hash_token(token)
        now_mono = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit.until > now_mono:
                self._used[hit.identity.token_id] = self.clock.now()
                return hit.identity
        identity, until = self._lookup(token, key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = _Cached(identity, min(now_mono + CACHE_TTL_S, now_mono + until))
            self._used[identity.token_id] = self.clock.now()
        return identity

    def _lookup(self, token: str, key: str) -> tuple[Identity, float]:
        token_id = token_id_of(token)
        now = self.clock.now()
        with self.db.read() as session:
            row = session.get(ApiToken, token_id) if token_id else None
            if row is None or not hmac.compare_digest(row.token_hash, key):
                raise Unauthorized("the API token is not valid (unknown, or mistyped)")
            if row.revoked_at is not None:
                raise Unauthorized(f"the API token {row.id} was revoked")
            if row.expires_at is not None and row.expires_at <= now:
                raise Unauthorized(f"the API token {row.id} expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
            user = session.get(User, row.user)
            if user is None or user.disabled:
                raise Unauthorized(f"the user of token {row.id} is disabled")
            identity = identity_of(user, row, token)
            left = (row.expires_at - now).total_seconds() if row.expires_at else CACHE_TTL_S
        return identity, left

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    def flush_last_used(self) -> None:
        """Write when tokens were last used (batched: never on a request's path)."""
        with self._lock:
            used, self._used = self._used, {}
        if not used:
            return
        with self.db.session() as session:
            for token_id, when in used.items():
                session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=when))


def identity_of(user: User, row: ApiToken, token: str = "") -> Identity:
    role = Role(user.role)
    held = frozenset(Scope(s) for s in row.scopes if s in _SCOPE_VALUES)
    return Identity(
        name=user.name,
        role=role,
        tenant=user.tenant,
        sites=frozenset(user.sites or []),
        zone=user.zone or "mainland",
        scopes=held & ROLE_SCOPES[role],
        token_id=row.id,
        token=token,
    )


# -- bootstrap ------------------------------------------------------------------------------


def bootstrap_admin(session: Session, home: Path, now: datetime, *, sole_home: bool = True) -> Path | None:
    """Make sure the network has an admin and ``$SUANLI_HOME/admin.token`` holds a valid token
    for it (mode 0600). Returns the file's path when a new token was written.

    ``sole_home=False`` (PostgreSQL: replicas each have a home): a home without the file, on a
    network whose bootstrap token is still valid, is another replica's; the token stays (it is
    in the first replica's home) rather than being replaced under every other replica's users."""
    path = home / ADMIN_TOKEN_FILE
    user = session.get(User, ADMIN_USER)
    if user is not None and not sole_home and not path.exists() and _bootstrap_tokens(session):
        log.info("%s is missing; the network's admin token is in the first replica's home (copy it here)", path)
        return None
    if user is None:
        user = User(name=ADMIN_USER, role=Role.ADMIN.value, tenant=None, sites=[], disabled=False, created_at=now)
        session.add(user)
        session.flush()
    elif path.exists():
        token = path.read_text().strip()
        token_id = token_id_of(token)
        row = session.get(ApiToken, token_id) if token_id else None
        if row is not None and row.revoked_at is None and hmac.compare_digest(row.token_hash, hash_token(token)):
            return None
    # No valid bootstrap token on disk: revoke older ones and write a fresh one.
    for old in _bootstrap_tokens(session):
        old.revoked_at = now
    token_id, token = _new_token()
    session.add(
        ApiToken(
            id=token_id,
            user=ADMIN_USER,
            name="bootstrap",
            token_hash=hash_token(token),
            scopes=sorted(s.value for s in ROLE_SCOPES[Role.ADMIN]),
            created_at=now,
        )
    )
    write_secret(path, token)
    return path


def _bootstrap_tokens(session: Session) -> list[ApiToken]:
    """The admin's bootstrap tokens not revoked."""
    rows = session.scalars(select(ApiToken).where(ApiToken.user == ADMIN_USER, ApiToken.name == "bootstrap"))
    return [row for row in rows if row.revoked_at is None]


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, without a moment where others could."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# -- tenants --------------------------------------------------------------------------------


def create_tenant(session: Session, who: Identity, body: TenantIn, now: datetime) -> TenantOut:
    require(who, Scope.IDENTITIES)
    if session.get(Tenant, body.name) is not None:
        raise Conflict(f"tenant '{body.name}' exists")
    row = Tenant(name=body.name, home_region=body.home_region, weight=body.weight, created_at=now)
    session.add(row)
    session.flush()
    return _tenant_out(row, 0)


def list_tenants(session: Session, who: Identity) -> list[TenantOut]:
    """The admin sees every tenant; a member sees its own; others none."""
    query = select(Tenant).order_by(Tenant.name)
    if not who.all_tenants:
        if who.role != Role.MEMBER or not who.tenant:
            return []
        query = query.where(Tenant.name == who.tenant)
    counts = dict(
        session.execute(select(User.tenant, func.count()).where(User.tenant.is_not(None)).group_by(User.tenant)).all()
    )
    return [_tenant_out(t, int(counts.get(t.name, 0))) for t in session.scalars(query)]


def _tenant_out(t: Tenant, users: int) -> TenantOut:
    return TenantOut(name=t.name, home_region=t.home_region, weight=t.weight, users=users, created_at=t.created_at)


# -- users ----------------------------------------------------------------------------------


def create_user(session: Session, who: Identity, body: UserIn, now: datetime) -> UserOut:
    require(who, Scope.IDENTITIES)
    try:
        role = Role(body.role)
    except ValueError:
        raise Unprocessable(f"unknown role '{body.role}'; roles are {', '.join(r.value for r in Role)}") from None
    _require_may_manage(who, role, f"a user with the {role.value} role")
    if session.get(User, body.name) is not None:
        raise Conflict(f"user '{body.name}' exists")
    if role == Role.MEMBER:
        if not body.tenant:
            raise Unprocessable("a member belongs to a tenant: give --tenant")
        if session.get(Tenant, body.tenant) is None:
            raise Unprocessable(f"no tenant '{body.tenant}'; 'suanli tenant create {body.tenant}' makes it")
    elif body.tenant:
        raise Unprocessable(f"only members belong to a tenant; a {role.value} does not")
    if role == Role.OPERATOR:
        if not body.sites:
            raise Unprocessable("an operator runs sites: give --site (repeatable)")
        known = set(session.scalars(select(Site.name).where(Site.name.in_(body.sites))))
        missing = sorted(set(body.sites) - known)
        if missing:
            raise Unprocessable(f"no site {', '.join(missing)}; 'suanli sites' lists them")
    elif body.sites:
        raise Unprocessable(f"only operators run sites; a {role.value} does not")
    user = User(
        name=body.name,
        role=role.value,
        tenant=body.tenant,
        sites=sorted(set(body.sites)),
        zone=body.zone,
        disabled=False,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return _user_out(user, 0)


def list_users(session: Session, who: Identity) -> list[UserOut]:
    require(who, Scope.IDENTITIES)
    counts = dict(
        session.execute(
            select(ApiToken.user, func.count()).where(ApiToken.revoked_at.is_(None)).group_by(ApiToken.user)
        ).all()
    )
    return [_user_out(u, int(counts.get(u.name, 0))) for u in session.scalars(select(User).order_by(User.name))]


def set_disabled(session: Session, who: Identity, name: str, disabled: bool) -> UserOut:
    require(who, Scope.IDENTITIES)
    user = session.get(User, name)
    if user is None:
        raise NotFound(f"no user '{name}'")
    if disabled and user.name == who.name:
        raise Unprocessable("you cannot disable yourself")
    # Enabling brings back every token the user holds; disabling can lock out a wider admin.
    _require_may_manage(who, Role(user.role), f"{'disabling' if disabled else 'enabling'} {user.role} '{name}'")
    user.disabled = disabled
    live = session.scalar(
        select(func.count()).select_from(ApiToken).where(ApiToken.user == name, ApiToken.revoked_at.is_(None))
    )
    return _user_out(user, int(live or 0))


def _require_may_manage(who: Identity, role: Role, what: str) -> None:
    """Making, enabling or disabling a user needs every scope its role holds (docs/identities.md)."""
    if role == Role.ADMIN:
        require_full_admin(who, what)
    require_delegable(who, ROLE_SCOPES[role], what)


def _user_out(u: User, tokens: int) -> UserOut:
    return UserOut(
        name=u.name,
        role=u.role,
        tenant=u.tenant,
        sites=list(u.sites or []),
        zone=u.zone or "mainland",
        disabled=u.disabled,
        tokens=tokens,
        created_at=u.created_at,
    )


# -- tokens ---------------------------------------------------------------------------------


def create_token(session: Session, who: Identity, body: TokenIn, now: datetime) -> TokenCreatedOut:
    """A new token for the caller, or (admin) for any user. Its scopes never exceed the target
    user's role, nor the caller's own token's (for oneself, and for anyone else: a narrowed admin
    token cannot mint a wider token for another user)."""
    require(who, Scope.TOKENS)
    target_name = body.user or who.name
    if target_name != who.name:
        require(who, Scope.IDENTITIES)
    user = session.get(User, target_name)
    if user is None:
        raise NotFound(f"no user '{target_name}'")
    if user.disabled:
        raise Unprocessable(f"user '{target_name}' is disabled")
    role = Role(user.role)
    try:
        scopes = parse_scopes(body.scopes, role)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    if target_name == who.name:
        if body.scopes is None:
            scopes = scopes & who.scopes
        elif not scopes <= who.scopes:
            extra = ", ".join(sorted(s.value for s in scopes - who.scopes))
            raise Unprocessable(f"a token cannot grant more than the token that makes it: {extra}")
    else:
        require_delegable(who, scopes, f"a token for {role.value} '{target_name}'", hint=", or ask for fewer (--scope)")
    if body.expires_in_s is None:
        expires: datetime | None = now + DEFAULT_TOKEN_LIFETIME
    elif body.expires_in_s == 0:
        expires = None
    else:
        expires = now + timedelta(seconds=body.expires_in_s)
    token_id, token = _new_token()
    row = ApiToken(
        id=token_id,
        user=target_name,
        name=body.name,
        token_hash=hash_token(token),
        scopes=sorted(s.value for s in scopes),
        created_at=now,
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    return TokenCreatedOut(**token_out(row).model_dump(), token=token)


def list_tokens(session: Session, who: Identity, user: str | None = None, *, all_users: bool = False) -> list[TokenOut]:
    """The caller's tokens; the admin may ask for one user's or everyone's."""
    require(who, Scope.TOKENS)
    query = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if (user and user != who.name) or all_users:
        require(who, Scope.IDENTITIES)
        if user:
            query = query.where(ApiToken.user == user)
    else:
        query = query.where(ApiToken.user == who.name)
    return [token_out(t) for t in session.scalars(query)]


def revoke_token(session: Session, who: Identity, token_id: str, now: datetime) -> TokenOut:
    """Revoke a token (one's own; the admin: anyone's). Someone else's token answers 404."""
    require(who, Scope.TOKENS)
    row = session.get(ApiToken, token_id)
    if row is None or (row.user != who.name and not who.can(Scope.IDENTITIES)):
        raise NotFound(f"no token '{token_id}'; 'suanli token list' shows yours")
    if row.revoked_at is None:
        row.revoked_at = now
    return token_out(row)


def token_out(t: ApiToken) -> TokenOut:
    return TokenOut(
        id=t.id,
        user=t.user,
        name=t.name,
        scopes=list(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked_at=t.revoked_at,
        last_used_at=t.last_used_at,
    )


def require_admin(who: Identity) -> None:
    require_role(who, Role.ADMIN)
