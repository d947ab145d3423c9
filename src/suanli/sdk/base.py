"""What every suanli client shares: the connection (one server, or replicas it fails over
between, ``sdk/failover.py``), the token, and turning answers into models or errors."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from suanli.core.api import Page
from suanli.sdk.credentials import discover_token
from suanli.sdk.errors import ApiError, ServerUnreachable
from suanli.sdk.failover import FailoverTransport, parse_servers

DEFAULT_SERVER = "http://127.0.0.1:8731"

M = TypeVar("M", bound=BaseModel)


def default_server() -> str:
    return os.environ.get("SUANLI_SERVER", DEFAULT_SERVER)


class BaseClient:
    """The HTTP plumbing of :class:`suanli.sdk.Client` and the site agent's client."""

    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        submit_retries: int = 3,
        retry_backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``submit_retries``: how often :meth:`submit` resends after a connection error or a
        502/503/504 (pauses of ``retry_backoff_s``, doubling; ``sleep`` waits them)."""
        #: Every server URL given (``SUANLI_SERVER`` may list replicas, comma-separated).
        self.servers = parse_servers(server or default_server())
        self.server = self.servers[0]
        self.submit_retries = max(0, submit_retries)
        self.retry_backoff_s = retry_backoff_s
        self._sleep = sleep
        if token is None:
            token = discover_token(self.server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = FailoverTransport(self.servers) if len(self.servers) > 1 else None
        self._http = http or httpx.Client(base_url=self.server, timeout=timeout, headers=headers, transport=transport)
        if http is not None and token:
            self._http.headers.update(headers)

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.status_code >= 400:
            raise _api_error(response)
        return response

    def _unreachable(self, exc: httpx.TransportError) -> ServerUnreachable:
        where = f"at {self.server}" if len(self.servers) == 1 else f"at any of {', '.join(self.servers)}"
        return ServerUnreachable(
            f"cannot reach the suanli server {where} ({exc.__class__.__name__}). "
            "Is it running? Start one with 'suanli up', or point --server / SUANLI_SERVER at it."
        )

    def _get(self, path: str, model: type[M], **kwargs: Any) -> M:
        return model.model_validate_json(self._request("GET", path, **kwargs).content)

    def _download(self, path: str, dest: IO[bytes], params: dict[str, Any] | None = None) -> int:
        """Stream GET ``path`` into ``dest``; returns the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                for data in response.iter_bytes():
                    dest.write(data)
                    written += len(data)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.server} ({exc.__class__.__name__})") from None
        return written

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()


def _list_of(model: type[M], response: httpx.Response) -> list[M]:
    page = TypeAdapter(Page[model]).validate_json(response.content)  # type: ignore[valid-type]
    items: list[M] = page.items
    return items


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or ""),
        body.get("errors") if isinstance(body.get("errors"), list) else None,
    )
