"""Errors the SDK raises; their text is meant for users."""

from __future__ import annotations

from typing import Any

from suanli.core.errors import SuanliError


class ApiError(SuanliError):
    """The server answered with an error (an RFC 9457 problem document)."""

    def __init__(self, status: int, title: str, detail: str = "", errors: list[dict[str, Any]] | None = None) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        super().__init__(detail or title)


class ServerUnreachable(SuanliError):
    pass


class WorkdirTooLarge(SuanliError):
    pass
