"""Who is calling, and what each role may do: roles, scopes, and the identity the services see.

A *user* has one role. Members belong to a tenant and see only its jobs, logs, usage, bills and
datasets; operators run named sites (their nodes, tariffs and revenue); auditors read the data
ledger and filings and decide filings; the admin runs the network and sees everything.

An API token carries *scopes*. What a request may do is the token's scopes intersected with
its user's role: a token made for a script that only reads jobs gets ``jobs:read`` and nothing
else, even when its user is the admin. The matrix of who may call which endpoint is in
docs/identities.md and is tested endpoint by endpoint (tests/integration/test_isolation.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    MEMBER = "member"
    AUDITOR = "auditor"


class Scope(StrEnum):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    USAGE_READ = "usage:read"
    NETWORK_READ = "network:read"
    NETWORK_WRITE = "network:write"
    DATA_READ = "data:read"
    DATA_WRITE = "data:write"
    LEDGER_READ = "ledger:read"
    FILINGS_DECIDE = "filings:decide"
    IDENTITIES = "identities"
    TOKENS = "tokens"
    #: Call a tenant's services (``/serve/…``, ``/v1/…``): what a token for an application holds.
    SERVE_INVOKE = "serve:invoke"


ALL_SCOPES = frozenset(Scope)

#: What each role may ever do; a token narrows it further.
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: ALL_SCOPES - {Scope.FILINGS_DECIDE},
    Role.OPERATOR: frozenset({Scope.NETWORK_READ, Scope.NETWORK_WRITE, Scope.USAGE_READ, Scope.TOKENS}),
    Role.MEMBER: frozenset(
        {
            Scope.JOBS_READ,
            Scope.JOBS_WRITE,
            Scope.USAGE_READ,
            Scope.NETWORK_READ,
            Scope.DATA_READ,
            Scope.DATA_WRITE,
            Scope.TOKENS,
            Scope.SERVE_INVOKE,
        }
    ),
    Role.AUDITOR: frozenset(
        {Scope.NETWORK_READ, Scope.DATA_READ, Scope.LEDGER_READ, Scope.FILINGS_DECIDE, Scope.TOKENS}
    ),
}

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")

#: Tokens look like ``sl_<id>_<secret>``: the id finds the row, the secret is checked by hash.
TOKEN_PREFIX = "sl_"  # noqa: S105 (a prefix, not a secret)
TOKEN_ID_RE = re.compile(r"^[a-z0-9]{10}$")


def parse_scopes(values: list[str] | None, role: Role) -> frozenset[Scope]:
    """Scopes asked for (None: all the role allows). Raises ValueError naming a bad one."""
    allowed = ROLE_SCOPES[role]
    if not values:
        return allowed
    out: set[Scope] = set()
    for raw in values:
        for item in (s.strip() for s in raw.split(",")):
            if not item:
                continue
            if item in ("*", "all"):
                out |= allowed
                continue
            try:
                scope = Scope(item)
            except ValueError:
                raise ValueError(f"unknown scope '{item}'; scopes are {', '.join(sorted(ALL_SCOPES))}") from None
            if scope not in allowed:
                raise ValueError(f"a {role.value} cannot hold the '{scope.value}' scope")
            out.add(scope)
    return frozenset(out)


@dataclass(frozen=True)
class Identity:
    """The caller as every service sees it. ``tenant`` None with the admin role: every tenant."""

    name: str
    role: Role
    tenant: str | None = None
    #: Sites an operator runs.
    sites: frozenset[str] = field(default_factory=frozenset)
    #: Where the user is (``core.network.Zone``: mainland, bonded, overseas), as the operator
    #: recorded it: a download is decided for this zone (X7), never for one the client declares.
    zone: str = "mainland"
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    token_id: str = ""
    #: The raw token, kept only to derive the dashboard's form key (never shown, never logged).
    token: str = field(default="", repr=False, compare=False)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset({self.role.value})

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_operator(self) -> bool:
        return self.role in (Role.ADMIN, Role.OPERATOR)

    def can(self, scope: Scope) -> bool:
        return scope in self.scopes

    @property
    def all_tenants(self) -> bool:
        """Sees every tenant's jobs and bills (the admin), as opposed to one tenant's."""
        return self.role == Role.ADMIN

    def sees_tenant(self, tenant: str) -> bool:
        if self.role == Role.ADMIN:
            return True
        return self.role == Role.MEMBER and self.tenant == tenant

    def runs_site(self, site: str) -> bool:
        return self.role == Role.ADMIN or (self.role == Role.OPERATOR and site in self.sites)

    @property
    def form_key(self) -> str:
        """A per-token secret every dashboard form posts back (a second guard against cross-site posts)."""
        return hmac.new(self.token.encode(), b"suanli-dashboard-form", hashlib.sha256).hexdigest()[:32]

    def form_key_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.form_key, value or "")


#: The server acting on its own behalf (scheduler passes, bootstrap); never a request's identity.
SYSTEM = Identity(name="system", role=Role.ADMIN, scopes=ALL_SCOPES)
