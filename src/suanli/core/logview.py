"""Which part of a job's output to show and how (``suanli logs --since/--rank/--timestamps``,
``GET /api/v1/jobs/{id}/logs?since=&rank=&timestamps=``). Pure: the app layer turns a view into
a query and a formatter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from suanli.core.resources import parse_duration


@dataclass(frozen=True)
class LogView:
    """A filter and a format over stored log chunks; the default shows everything, plain."""

    #: Only output that reached the front desk at or after this instant.
    since: datetime | None = None
    #: Only this node rank's output (multi-node jobs; single-node jobs are rank 0).
    rank: int | None = None
    #: Prefix every line with the instant it reached the front desk (RFC 3339, UTC).
    timestamps: bool = False

    @property
    def plain(self) -> bool:
        return self.since is None and self.rank is None and not self.timestamps


def parse_since(value: str, now: datetime) -> datetime:
    """An instant from ``--since``: a duration back from ``now`` (``90s``, ``10m``, ``2h``,
    ``1d``), or a date and time (``2026-12-03T06:40:00``, ``2026-12-03 06:40``; UTC unless it
    names its offset, like ``+08:00``). Raises ValueError with a sentence."""
    text = value.strip()
    try:
        return now - timedelta(seconds=parse_duration(text, "--since"))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError:
        raise ValueError(
            f"--since must be a duration like 10m or 2h, or a time like 2026-12-03T06:40:00Z, not '{text[:40]}'"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def stamp(when: datetime) -> str:
    """The prefix ``--timestamps`` puts before a line."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z "
