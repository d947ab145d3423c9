"""Several front-desk replicas behind one client: ``SUANLI_SERVER=http://a:8731,http://b:8731``.

The client talks to one server at a time and moves to the next when a connection cannot be made
(refused, unreachable, timed out while connecting): nothing of the request was sent, so any
request may go to the next replica. It stays with the replica that answered. A failure after
the request went out is not retried here: a submission is sent again by ``Client.submit`` with
its ``Idempotency-Key`` (never two jobs), and other calls surface the error.

All servers must serve the API at the same path (normally the root).
"""

from __future__ import annotations

import threading

import httpx

#: What means "no connection was made, so nothing was sent".
NOT_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout)


def parse_servers(value: str) -> list[str]:
    """``http://a:8731, http://b:8731`` → the URLs, without trailing slashes; at least one."""
    servers = [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
    if not servers:
        raise ValueError("no server URL given (SUANLI_SERVER / --server)")
    for server in servers:
        url = httpx.URL(server)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"'{server}' is not an http(s) URL of a suanli server")
    return servers


class FailoverTransport(httpx.BaseTransport):
    """Sends each request to the current server, moving on to the next on connection errors."""

    def __init__(self, servers: list[str], inner: httpx.BaseTransport | None = None) -> None:
        self.servers = [httpx.URL(s) for s in servers]
        self.inner = inner or httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._current = 0

    @property
    def current(self) -> str:
        """The server requests go to now."""
        return str(self.servers[self._current]).rstrip("/")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            first = self._current
        error: Exception | None = None
        for step in range(len(self.servers)):
            index = (first + step) % len(self.servers)
            target = self.servers[index]
            request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
            request.headers["Host"] = target.netloc.decode("ascii")
            try:
                response = self.inner.handle_request(request)
            except NOT_CONNECTED as exc:
                error = exc
                continue
            if index != first:
                with self._lock:
                    self._current = index
            return response
        assert error is not None
        raise error

    def close(self) -> None:
        self.inner.close()
