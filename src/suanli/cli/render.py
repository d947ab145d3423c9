"""Formatting shared by the commands: times in local time, ages, coloured states, GPU counts."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from suanli.core.api import GpuCount
from suanli.core.states import AttemptState, JobState

#: The clock; tests may replace it.
now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731

DASH = "-"

_STATE_STYLES = {
    "PENDING": "yellow",
    "SCHEDULED": "cyan",
    "STARTING": "cyan",
    "RUNNING": "bold blue",
    "SUCCEEDED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "LOST": "red",
    "PREEMPTED": "yellow",
}


def state_text(state: JobState | AttemptState | str) -> Text:
    value = state.value if isinstance(state, JobState | AttemptState) else state
    return Text(value, style=_STATE_STYLES.get(value, ""))


def local_time(moment: datetime | None, *, zone: bool = False) -> str:
    """``2024-05-01 14:03:12`` in the user's time zone (``zone``: followed by its UTC offset,
    ``+08:00``); naive values are taken as UTC."""
    if moment is None:
        return DASH
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone()
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    if not zone:
        return text
    offset = local.strftime("%z")
    return f"{text} {offset[:3]}:{offset[3:]}" if offset else text


def age(moment: datetime | None, until: datetime | None = None) -> str:
    """``45s``, ``3m``, ``2h``, ``5d`` since ``moment`` (to ``until``, default now)."""
    if moment is None:
        return DASH
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0, int(((until or now()) - moment).total_seconds()))
    return compact_duration(seconds)


def compact_duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def when(moment: datetime | None) -> str:
    """Local time with its UTC offset and the age, e.g. ``2024-05-01 14:03:12 +08:00 (3m ago)``."""
    if moment is None:
        return DASH
    return f"{local_time(moment, zone=True)} ({age(moment)} ago)"


def gpu_counts(gpus: Mapping[str, GpuCount]) -> str:
    """``12/16 H100, 4/8 A800`` (free/total by type)."""
    if not gpus:
        return DASH
    return ", ".join(f"{c.free}/{c.total} {kind}" for kind, c in sorted(gpus.items()))


def free_total(free: float, total: float, suffix: str = "") -> str:
    return f"{free:g}/{total:g}{suffix}"


#: Bidirectional overrides and isolates: they reorder what a terminal shows ("Trojan Source").
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str, keep: str = "") -> str:
    """``text`` with control characters (ESC, BEL, CR, ...) and bidi overrides shown as escapes
    (``\\x1b``), so a stored name cannot move the cursor, recolour or retitle the user's
    terminal. The API refuses them now; rows stored earlier may still hold some. ``keep``:
    characters to let through (a message's newlines)."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c in keep or not (c in _BIDI or unicodedata.category(c) == "Cc")
        else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
        for c in text
    )


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, ending in an ellipsis when cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1].rstrip() + "…"


Cell = str | Text


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], *, width: int, flex: int = -1) -> Trimmed:
    """A borderless table in the style of squeue / kubectl: easy to read, easy to grep.

    Every column keeps its natural width except ``flex`` (e.g. REASON), which wraps at word
    boundaries onto more lines so the table fits ``width``: nothing is cut, and identifiers are
    never broken. Lines carry no trailing padding (a pipe or a file gets exactly the text).
    """
    data = [[c if isinstance(c, Text) else Text(printable(c)) for c in row] for row in rows]
    flex %= len(headers)
    natural = [max([len(h), *(c.cell_len for c in (row[i] for row in data))]) for i, h in enumerate(headers)]
    room = width - sum(w for i, w in enumerate(natural) if i != flex) - _GAP * (len(headers) - 1)
    room = max(room, len(headers[flex]), _MIN_FLEX)
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, header in enumerate(headers):
        if i == flex:
            t.add_column(header, overflow="fold", max_width=room)
        else:
            t.add_column(header, no_wrap=True, min_width=natural[i])
    for row in data:
        cells = list(row)
        cells[flex] = Text(" ".join(cells[flex].plain.split()), style=cells[flex].style)
        t.add_row(*cells)
    return Trimmed(t)


class Trimmed:
    """A renderable printed without the spaces Rich pads the end of each line with."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in console.render_lines(self.renderable, options, pad=False):
            while line and not line[-1].text.strip() and not line[-1].control:
                line.pop()
            if line:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(), last.style, last.control)
            yield from line
            yield Segment.line()


#: Columns are separated by padding, a divider and padding.
_GAP = 3
_MIN_FLEX = 12
