"""Resource quantities: accelerator requests ("H100:8"), CPU/memory minimums ("16+")."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACCEL = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9_\-.]*)\s*(?::\s*(-?\d+))?\s*$")
_MIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(\+)?\s*$")
_DURATION = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[smhd]\s*)+$|^\s*\d+(?:\.\d+)?\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


@dataclass(frozen=True, order=True)
class Accelerator:
    """A GPU type and how many of it, per node."""

    type: str
    count: int

    def __str__(self) -> str:
        return f"{self.type}:{self.count}"


def parse_accelerator(text: str) -> Accelerator:
    """``"H100:8"`` → Accelerator("H100", 8); a bare ``"H100"`` means one."""
    m = _ACCEL.match(text)
    if not m:
        raise ValueError(f"'{text}' is not an accelerator; write TYPE:COUNT, e.g. H100:8")
    count = int(m.group(2)) if m.group(2) is not None else 1
    if count < 1:
        raise ValueError(
            f"'{text}' asks for {count} GPUs; the count must be at least 1 (omit accelerators for CPU-only work)"
        )
    if count > 1024:
        raise ValueError(f"'{text}' asks for {count} GPUs on one node; that is more than any node has")
    return Accelerator(m.group(1), count)


def parse_minimum(value: object, what: str, unit: str = "") -> float:
    """``16``, ``"16"`` or ``"16+"`` → 16.0. The ``+`` is allowed and means 'at least'."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number like 16 or '16+', not {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        m = _MIN.match(value)
        if not m:
            raise ValueError(f"{what} must be a number like 16 or '16+'{unit}, not '{value}'")
        number = float(m.group(1))
    else:
        raise ValueError(f"{what} must be a number like 16 or '16+', not {value!r}")
    if number <= 0:
        raise ValueError(f"{what} must be more than 0")
    return number


def parse_duration(value: object) -> float:
    """Seconds from ``3600``, ``"90m"``, ``"2h"``, ``"2h30m"``, ``"1.5d"``."""
    if isinstance(value, bool):
        raise ValueError(f"a duration must look like 30m, 2h or 3600, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        if not _DURATION.match(value):
            raise ValueError(f"a duration must look like 30m, 2h, 2h30m or 3600, not '{value}'")
        units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(float(n) * units[u] for n, u in _DURATION_PART.findall(value))
    else:
        raise ValueError(f"a duration must look like 30m, 2h or 3600, not {value!r}")
    if seconds <= 0:
        raise ValueError("a duration must be more than 0")
    return seconds


def format_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if rest else f"{h}h"
