"""Limits that keep hostile or careless clients from hurting the server: request body size,
header size, content type, and a per-token request rate. A pure ASGI middleware, so a refused
request costs no routing, no body parsing and no thread hand-off; every refusal is an RFC 9457
problem document, like the API's own errors.

- Bodies over ``Settings.max_body_bytes`` get 413: at once when Content-Length says so, or as soon
  as a streamed (chunked) body goes over. The workdir and checkpoint uploads have their own, larger
  limit, enforced by their routes while they stream the archive to disk.
- Request headers over :data:`MAX_HEADER_BYTES` in all get 431.
- A body sent to ``/api/v1`` that declares a content type other than JSON gets 415.
- Rate limits are token buckets; beyond one, 429 with ``Retry-After``. ``/healthz`` and
  ``/metrics`` are never limited.

  * Each API token (keyed by its SHA-256, never the token itself), or each client address for
    requests without one: ``rate_limit_burst`` requests refilled at ``rate_limit_per_s``.
  * Each user, all its tokens together (``user_rate_limit_*``): the middleware resolves the
    token to its user through the server's identity cache (the same lookup the routes make, so
    a request costs no extra database read), then answers an invalid token's 401 itself.
  * Failed sign-ins, per client address (``auth_failure_*``): only requests whose token the
    network rejects draw on it, and only they are refused once it is empty. A valid token from
    the same address is still served, so a flood of made-up tokens locks nobody else out.
  * Each site agent token on ``/api/v1/agents/`` (``agent_rate_limit_*``); a rejected site token
    is a failed sign-in like any other. The relay (``/api/v1/agents/relay/``) draws on a bucket
    of its own (``relay_rate_limit_*``), so a copy's chunks neither starve the agent's heartbeat
    nor are held to a heartbeat's rate.
- Every 5xx answer carries ``Connection: close``: after a server error the connection may be in
  a bad state, and the client must not send its next request on it.

The limits are read from the settings on every request, so changing them takes effect at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suanli.app.errors import Unauthorized
from suanli.app.settings import Settings
from suanli.core.identity import Identity

PROBLEM = "application/problem+json"

#: Largest total size of a request's headers (names and values), bytes.
MAX_HEADER_BYTES = 64 * 1024
#: Most rate-limit buckets kept; the least recently used go first (an idle bucket is full again,
#: so forgetting it changes nothing for its owner).
MAX_BUCKETS = 10_000

#: Routes that take a body of their own kind, size-limited by the route itself.
UPLOAD_PATHS = frozenset({"/api/v1/workdirs", "/api/v1/agents/checkpoints", "/api/v1/agents/outputs"})
#: A sealed chunk pushed through the relay: its route bounds it (a sealed chunk's size at most).
RELAY_CHUNK = re.compile(r"^/api/v1/agents/relay/[^/]+/chunks/[0-9]+$")
#: A plain chunk of a registration by upload: its route bounds it (a chunk's size at most).
UPLOAD_CHUNK = re.compile(r"^/api/v1/datasets/uploads/[^/]+/chunks/[0-9]+$")
#: The agent protocol (site tokens), limited per site token by its own settings.
AGENT_PREFIX = "/api/v1/agents/"
RELAY_PREFIX = "/api/v1/agents/relay/"
#: Never rate-limited: probes and scrapers.
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def problem_response(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> list[Message]:
    """The ASGI messages of an RFC 9457 problem document."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    raw = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    return [
        {"type": "http.response.start", "status": status, "headers": raw},
        {"type": "http.response.body", "body": body},
    ]


def _mib(n: int) -> str:
    """``n`` bytes for people: '5 MiB', '97.7 KiB', '300 bytes'."""
    for unit, size in (("MiB", 2**20), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class RateLimiter:
    """Token buckets keyed by a string, bounded in number (LRU). Thread-safe; one short lock per call."""

    def __init__(self, max_keys: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        #: key -> [tokens, time of last update]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, rate: float, burst: int) -> float:
        """Spend one token of ``key``'s bucket. Returns 0 if allowed, else the seconds until a
        token will be available."""
        capacity = float(max(burst, 1))
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [capacity, now]
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / rate

    def waiting(self, key: str, rate: float, burst: int) -> float:
        """Seconds until ``key``'s bucket has a token again (0: it has one); spends nothing."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(float(max(burst, 1)), bucket[0] + (self.clock() - bucket[1]) * rate)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def bearer(authorization: bytes | None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (as Starlette decodes headers)."""
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        token = authorization[7:].strip()
        if token:
            return token.decode("latin-1")
    return None


def rate_key(scope: Scope, authorization: bytes | None) -> str:
    """Whose bucket a request draws on: its bearer token's hash, else its client address."""
    token = bearer(authorization)
    if token is not None:
        return "token:" + hashlib.sha256(token.encode("latin-1")).hexdigest()
    return "addr:" + _address(scope)


#: Where the middleware leaves the identity it resolved, in the request's state (``request.state.identity``),
#: so the route's own authentication does not look the token up a second time.
IDENTITY_KEY = "identity"
#: Resolves an API token to its identity (cached), raising Unauthorized for one the network rejects.
Authenticate = Callable[[str], Identity]
#: Whether a token is some site's agent token.
SiteTokenValid = Callable[[str], bool]


@dataclass(frozen=True)
class _Refusal:
    status: int
    title: str
    detail: str
    retry_after: float | None = None

    def messages(self) -> list[Message]:
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="suanli"'
        return problem_response(self.status, self.title, self.detail, headers)


def _too_many(detail: str, wait: float) -> _Refusal:
    return _Refusal(429, "Too many requests", f"{detail}; retry after {max(1, math.ceil(wait))} s", wait)


class _BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body goes over the limit."""


class LimitsMiddleware:
    """``authenticate`` and ``site_token_valid`` come from the server (``install_limits``); a bare
    app without them cannot tell a valid token from a made-up one, and then refuses every token
    from an address out of failed sign-ins."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        limiter: RateLimiter | None = None,
        authenticate: Authenticate | None = None,
        site_token_valid: SiteTokenValid | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.authenticate = authenticate
        self.site_token_valid = site_token_valid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        authorization: bytes | None = None
        content_length: bytes | None = None
        content_type: bytes | None = None
        chunked = False
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                content_length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"transfer-encoding":
                chunked = True

        if header_bytes > MAX_HEADER_BYTES:
            await self._refuse(
                send,
                431,
                "Request headers too large",
                f"the request's headers are {_mib(header_bytes)} in all, over the {_mib(MAX_HEADER_BYTES)} limit",
            )
            return

        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            # No name, id or filter holds a NUL; PostgreSQL cannot even compare one in text.
            await self._refuse(
                send, 422, "Unprocessable request", "the URL holds a NUL character (%00), which no name or value may"
            )
            return

        settings = self.settings
        token = bearer(authorization)
        if path not in UNLIMITED_PATHS:
            refusal = self._rate_limit(scope, path, token)
            if refusal is not None:
                for message in refusal.messages():
                    await send(message)
                return
        send = self._watched(send, _address(scope) if authorization is not None or path == "/login" else None)

        if path in UPLOAD_PATHS or RELAY_CHUNK.match(path) or UPLOAD_CHUNK.match(path):
            await self.app(scope, receive, send)
            return

        declared: int | None = None
        if content_length is not None and content_length.isdigit():
            # (more digits than any real body has: no need to parse them to say no)
            declared = int(content_length) if len(content_length) <= 18 else 10**18
        has_body = chunked or bool(declared)
        if has_body and content_type is not None and scope["method"] in _BODY_METHODS and path.startswith("/api/"):
            media = content_type.split(b";", 1)[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                shown = media.decode("latin-1")[:100]
                await self._refuse(
                    send,
                    415,
                    "Unsupported media type",
                    f"send the request body as JSON with 'Content-Type: application/json', not '{shown}'",
                )
                return

        limit = settings.max_body_bytes
        if declared is not None:
            if declared > limit:
                await self._refuse(send, 413, "Request too large", _too_large(declared, limit))
                return
            # The server will not pass on more bytes than Content-Length declares.
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass on a body of unknown length, refusing it once it goes over ``limit``."""
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app makes of the interrupted body, the answer is 413
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:  # a real error of the app's: not ours to answer
                raise
        if over and not started:
            await self._refuse(send, 413, "Request too large", _too_large(None, limit))

    def _rate_limit(self, scope: Scope, path: str, token: str | None) -> _Refusal | None:
        """Why this request is refused by a rate limit, or None (then it has paid its way)."""
        settings = self.settings
        address = _address(scope)
        if path.startswith(AGENT_PREFIX):
            relay = path.startswith(RELAY_PREFIX)
            if relay:
                rate, burst = settings.relay_rate_limit_per_s, settings.relay_rate_limit_burst
            else:
                rate, burst = settings.agent_rate_limit_per_s, settings.agent_rate_limit_burst
            if rate <= 0:
                return None
            if token is not None:
                check = self.site_token_valid
                refusal = self._failed_sign_ins(address, check is None or not check(token))
                if refusal is not None:
                    return refusal
            key = "site:" + hashlib.sha256(token.encode("latin-1")).hexdigest() if token else "agent-addr:" + address
            wait = self.limiter.take(("relay:" if relay else "") + key, rate, burst)
            if wait > 0:
                who = "this site agent token" if token else "this client address"
                what = "relay" if relay else "agent"
                return _too_many(
                    f"{who} sent more than {rate:g} {what} requests per second (bursts up to {burst})", wait
                )
            return None

        rate, burst = settings.rate_limit_per_s, settings.rate_limit_burst
        if rate <= 0:
            return None
        identity: Identity | None = None
        if token is not None:
            if self.authenticate is not None and path.startswith("/api/"):
                try:
                    identity = self.authenticate(token)
                    scope.setdefault("state", {})[IDENTITY_KEY] = identity
                except Unauthorized as exc:
                    refusal = self._failed_sign_ins(address, True)
                    if refusal is not None:
                        return refusal
                    self._charge_failure(address)
                    return _Refusal(401, "Unauthorized", exc.detail)
            else:
                refusal = self._failed_sign_ins(address, self.authenticate is None)
                if refusal is not None:
                    return refusal
        key = "token:" + hashlib.sha256(token.encode("latin-1")).hexdigest() if token else "addr:" + address
        wait = self.limiter.take(key, rate, burst)
        if wait > 0:
            who = "this API token" if token else "this client address"
            return _too_many(f"{who} sent more than {rate:g} requests per second (bursts up to {burst})", wait)
        if identity is not None:
            rate, burst = settings.user_rate_limit_per_s, settings.user_rate_limit_burst
            wait = self.limiter.take("user:" + identity.name, rate, burst) if rate > 0 else 0.0
            if wait > 0:
                return _too_many(
                    f"user '{identity.name}' sent more than {rate:g} requests per second with all its tokens "
                    f"together (bursts up to {burst})",
                    wait,
                )
        return None

    def _failed_sign_ins(self, address: str, failing: bool) -> _Refusal | None:
        """429 for a ``failing`` sign-in from an address out of its failed-sign-in budget."""
        settings = self.settings
        if not failing or settings.rate_limit_per_s <= 0 or settings.auth_failure_rate_per_s <= 0:
            return None
        wait = self.limiter.waiting(
            "authfail:" + address, settings.auth_failure_rate_per_s, settings.auth_failure_burst
        )
        if wait <= 0:
            return None
        return _too_many("too many requests with invalid API tokens from this address", wait)

    def _charge_failure(self, address: str) -> None:
        settings = self.settings
        if settings.auth_failure_rate_per_s > 0:
            self.limiter.take("authfail:" + address, settings.auth_failure_rate_per_s, settings.auth_failure_burst)

    def _watched(self, send: Send, failures_of: str | None) -> Send:
        """``send``, adding ``Connection: close`` to a 5xx answer and, for a request that tried to
        sign in (``failures_of``: its address), charging a failed sign-in for a 401."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401 and failures_of is not None:
                    self._charge_failure(failures_of)
                elif status >= 500:
                    headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return watched

    @staticmethod
    async def _refuse(send: Send, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        for message in problem_response(status, title, detail, headers):
            await send(message)


def _too_large(size: int | None, limit: int) -> str:
    if size is None:
        return f"the request body goes over the {_mib(limit)} limit"
    return f"the request body is {_mib(size)}, over the {_mib(limit)} limit"


def install_limits(
    app: Starlette,
    settings: Settings,
    authenticate: Authenticate | None = None,
    site_token_valid: SiteTokenValid | None = None,
) -> None:
    """Add :class:`LimitsMiddleware` to a Starlette/FastAPI ``app`` (before it first serves)."""
    app.add_middleware(
        LimitsMiddleware, settings=settings, authenticate=authenticate, site_token_valid=site_token_valid
    )
