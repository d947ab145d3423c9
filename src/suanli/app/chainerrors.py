"""Errors of the data chain; the server turns them into problem documents by ``kind``."""

from __future__ import annotations


class DataChainError(Exception):
    kind = "invalid"


class NotFound(DataChainError):
    kind = "not_found"


class Conflict(DataChainError):
    kind = "conflict"


class Denied(DataChainError):
    kind = "forbidden"
