"""Who is looking at the dashboard: the API token in an HttpOnly cookie, and what it may see.

Signing in stores the token the user pastes in the ``suanli_token`` cookie (HttpOnly, so
scripts on the page cannot read it; SameSite=Lax, so other sites cannot post with it). Every
page resolves it to the same :class:`~suanli.core.identity.Identity` the HTTP API uses and
hands that to the services, which scope what they read by it: a member sees its tenant's
jobs, usage and datasets; operators their sites' nodes; the admin everything.
"""

from __future__ import annotations

from suanli.app.control import ControlPlane
from suanli.app.errors import Unauthorized
from suanli.core.identity import Identity

__all__ = ["MAX_TOKEN_CHARS", "TOKEN_COOKIE", "Identity", "resolve"]

TOKEN_COOKIE = "suanli_token"  # noqa: S105 (the cookie's name, not a secret)
#: Longest token accepted (API tokens are far shorter; this bounds the cookie).
MAX_TOKEN_CHARS = 512


def resolve(control: ControlPlane, token: str | None) -> Identity | None:
    """The identity of ``token``, or None (not signed in, or a token the network rejects:
    unknown, revoked, expired, or its user disabled)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        return control.identities.authenticate(token)
    except Unauthorized:
        return None
