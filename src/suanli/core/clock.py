"""Time as a dependency, so loops and leases can be driven by tests without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol

from pydantic import AfterValidator

#: The instants an API input may name (``from``/``to``, ``effective_from``, ``expires_at``):
#: any real one, none that overflows date arithmetic once a zone or a day is added.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def check_instant(when: datetime, what: str = "a time") -> datetime:
    """``when`` unchanged if it lies in [EARLIEST, LATEST) (a naive one is left to the caller,
    who asks for a zone); ValueError in words otherwise."""
    if when.tzinfo is None:
        return when
    try:
        inside = EARLIEST <= when.astimezone(UTC) < LATEST
    except (OverflowError, ValueError):
        inside = False
    if not inside:
        raise ValueError(f"{what} must lie in the years {EARLIEST.year} to {LATEST.year - 1}, not {when.isoformat()}")
    return when


#: A datetime field bounded as ``check_instant`` says (422 at the API).
Instant = Annotated[datetime, AfterValidator(check_instant)]


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now
