"""Resource quantities: accelerator requests ("H100:8"), CPU/memory minimums ("16+")."""

from __future__ import annotations

import math
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
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a number like 16 or '16+', not {number}")
    if number <= 0:
        raise ValueError(f"{what} must be more than 0")
    return number


#: The highest price anything accepts, CNY per hour (a GPU-hour, a CPU-hour, a GiB-hour, and a
#: job's ``max_price_per_gpu_hour``): far above any real one, far below where sums lose cents.
MAX_PRICE_CNY_PER_HOUR = 1_000_000.0
#: The longest duration anything accepts (a job's ``time_limit``, the network file's
#: ``scheduling:`` durations): a year. Longer ones would only overflow date arithmetic.
MAX_DURATION_S = 365 * 86400.0


def check_price(value: object, what: str) -> object:
    """A price in CNY per hour must be finite, at least 0 and at most MAX_PRICE_CNY_PER_HOUR.
    Returns ``value`` unchanged (what is not a number is left to the field's type check)."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    if number is None:
        return value
    if math.isnan(number):
        raise ValueError(f"{what} must be a price in CNY per hour, like 28, not NaN")
    if number < 0:
        raise ValueError(f"{what} must be at least 0 CNY per hour, not {number:g}")
    if number > MAX_PRICE_CNY_PER_HOUR:
        raise ValueError(f"{what} {number:g} is over the limit of {MAX_PRICE_CNY_PER_HOUR:,.0f} CNY per hour")
    return value


def parse_duration(value: object, what: str = "", limit_s: float = MAX_DURATION_S) -> float:
    """Seconds from ``3600``, ``"90m"``, ``"2h"``, ``"2h30m"``, ``"1.5d"``: more than 0 and at
    most ``limit_s`` (a year unless a field says less), never NaN or infinity. ``what`` names
    the field in the errors."""
    should = f"{what} must be a duration like" if what else "a duration must look like"
    what = what or "a duration"
    if isinstance(value, bool):
        raise ValueError(f"{should} 30m, 2h or 3600, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        shown = f"{value:g}" if isinstance(value, float) else str(value)
    elif isinstance(value, str):
        if not _DURATION.match(value):
            raise ValueError(f"{should} 30m, 2h, 2h30m or 3600, not '{value[:40]}'")
        units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(float(n) * units[u] for n, u in _DURATION_PART.findall(value))
        shown = value.strip()
    else:
        raise ValueError(f"{should} 30m, 2h or 3600, not {value!r}")
    if math.isnan(seconds):
        raise ValueError(f"{should} 30m, 2h or 3600 (seconds), not NaN")
    if seconds <= 0:
        raise ValueError(f"{what} must be more than 0")
    if seconds > limit_s:
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise ValueError(f"{what} {shown} is over the limit of {_in_words(limit_s)}")
    return seconds


def format_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s % 60 else f"{s // 60}m"
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if rest else f"{h}h"


def _in_words(seconds: float) -> str:
    """A limit as the spec would write it: ``365d``, ``12h``, ``90s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
