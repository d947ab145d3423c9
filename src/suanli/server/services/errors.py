"""Errors services raise; the app turns them into RFC 9457 problem documents."""

from __future__ import annotations

from typing import Any

from suanli.core.errors import SuanliError


class ServiceError(SuanliError):
    status = 400
    title = "Bad request"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Unprocessable(ServiceError):
    status = 422
    title = "Invalid request"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class TooLarge(ServiceError):
    status = 413
    title = "Request too large"
