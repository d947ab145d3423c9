"""Who is looking at the dashboard: the API token in an HttpOnly cookie, and what it may see.

Signing in stores the token the user pastes in the ``suanli_token`` cookie (HttpOnly, so
scripts on the page cannot read it; SameSite=Lax, so other sites cannot post with it). Every
page resolves it to an :class:`Identity` and hands that to the queries, which scope what they
read by it (``Identity.tenant``).

This network has no users, tenants or API tokens yet (they are a later issue): until then
:func:`resolve` accepts any non-empty token as the network administrator, who sees
everything, exactly as the HTTP API does today. When identities land, only :func:`resolve`
changes: it looks the token up and returns the user's tenant and roles.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from suanli.server.control import ControlPlane

TOKEN_COOKIE = "suanli_token"  # noqa: S105 (the cookie's name, not a secret)
#: Longest token accepted (API tokens are far shorter; this bounds the cookie).
MAX_TOKEN_CHARS = 512


@dataclass(frozen=True)
class Identity:
    """The caller, as the services should see it."""

    #: Shown in the header.
    name: str
    #: The tenant whose jobs, usage and bills this identity sees; None: every tenant.
    tenant: str | None = None
    #: admin | operator | member | auditor
    roles: frozenset[str] = field(default_factory=frozenset)
    #: The token, kept to derive the form key (never shown, never logged).
    token: str = field(default="", repr=False)

    @property
    def is_operator(self) -> bool:
        return bool(self.roles & {"admin", "operator"})

    def sees_tenant(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant

    @property
    def form_key(self) -> str:
        """A per-token secret every form posts back (a second guard against cross-site posts)."""
        return hmac.new(self.token.encode(), b"suanli-dashboard-form", hashlib.sha256).hexdigest()[:32]

    def form_key_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.form_key, value or "")


def resolve(control: ControlPlane, token: str | None) -> Identity | None:
    """The identity of ``token``, or None (not signed in, or a token the network rejects).

    No identities exist yet, so any token is the administrator (see the module docstring)."""
    del control  # tokens will be looked up in its database
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return Identity(name="admin", tenant=None, roles=frozenset({"admin"}), token=token)
