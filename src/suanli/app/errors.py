"""The application layer's one error type; the HTTP API turns it into RFC 9457 problem documents."""

from __future__ import annotations

import errno
from typing import Any

from suanli.core.errors import SuanliError


class ServiceError(SuanliError):
    status = 400
    title = "Bad request"
    #: Seconds the client should wait before trying again (sent as ``Retry-After``), if any.
    retry_after: int | None = None

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


class InsufficientStorage(ServiceError):
    """The server's disk (or its database's) is full: nothing of the request was kept."""

    status = 507
    title = "Insufficient storage"
    retry_after = 60


#: SQLite's result code for "database or disk is full"; PostgreSQL's SQLSTATE disk_full.
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk is full: ENOSPC/EDQUOT from the OS,
    SQLITE_FULL from SQLite, disk_full from PostgreSQL; through SQLAlchemy's wrapping too."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(e, "sqlite_errorcode", None) == SQLITE_FULL:
            return True
        if getattr(e, "pgcode", None) == PG_DISK_FULL or getattr(e, "sqlstate", None) == PG_DISK_FULL:
            return True
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        todo += [orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__]
    return False


def is_nul_in_text(exc: BaseException) -> bool:
    """Whether the database refused a NUL character in a text value (PostgreSQL does; SQLite
    stores it): the request's fault, answered 422, not a server error."""
    orig = getattr(exc, "orig", None)
    return "cannot contain NUL" in str(orig if orig is not None else exc)


class Unavailable(ServiceError):
    """No replica could take the request in time (a service scaling from zero, or all down)."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BadGateway(ServiceError):
    """A replica failed the request and it could not be tried on another."""

    status = 502
    title = "Bad gateway"
