"""Languages of the dashboard: which one a request gets, its messages, and locale formatting.

Chinese and English. The choice is, in order: the ``suanli_lang`` cookie (set by the language
switch), else the browser's ``Accept-Language`` (the first of zh/en it prefers), else English.
Times are shown in Asia/Shanghai, the zone the network bills in; money is CNY.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from suanli.web import reasons

LANGS = ("zh", "en")
DEFAULT_LANG = "en"
LANG_COOKIE = "suanli_lang"
ZONE = ZoneInfo("Asia/Shanghai")


@cache
def catalog(lang: str) -> dict[str, str]:
    text = resources.files("suanli.web").joinpath("translations", f"{lang}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language for a request (see the module docstring)."""
    if cookie in LANGS:
        return cookie
    best: tuple[float, int, str] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        candidate = (-q, position, primary)
        if q > 0 and (best is None or candidate < best):
            best = candidate
    return best[2] if best else DEFAULT_LANG


@dataclass(frozen=True)
class Locale:
    """Messages and formatting for one language; templates get its methods as filters."""

    lang: str

    def gettext(self, key: str, **values: object) -> str:
        """The message for ``key`` (English when a translation is missing, the key as a last resort)."""
        text = catalog(self.lang).get(key) or catalog("en").get(key) or key
        return text.format(**values) if values else text

    def maybe(self, key: str, default: str) -> str:
        """The message for ``key`` if there is one in this language or English, else ``default``."""
        return catalog(self.lang).get(key) or catalog("en").get(key) or default

    def reason(self, text: str | None) -> str:
        """A service's sentence (reason, verdict, error) in this language and Beijing time."""
        return reasons.show(text, self.lang)

    def title(self, text: str) -> str:
        """An error's title in this language."""
        return reasons.title(text, self.lang)

    def word(self, group: str, value: str | None) -> str:
        """A state or level the services name in English (``done``, ``accepted``, ``general``),
        by its message key ``group.value``; the value itself when there is none."""
        if not value:
            return "–"
        return self.maybe(f"{group}.{value}", value)

    def number(self, value: float | int | Decimal | None, digits: int = 0) -> str:
        if value is None:
            return "–"
        return f"{float(value):,.{digits}f}" if digits else f"{round(float(value)):,}"

    def percent(self, value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.0f}%"

    def cny(self, value: str | Decimal | float | None) -> str:
        """CNY with two decimals (half-even, as bills round): ``¥1,234.50`` / ``CN¥1,234.50``."""
        if value is None or value == "":
            return "–"
        try:
            amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        except InvalidOperation:
            return str(value)
        sign = "-" if amount < 0 else ""
        symbol = "¥" if self.lang == "zh" else "CN¥"
        return f"{sign}{symbol}{abs(amount):,.2f}"

    def datetime(self, value: datetime | None) -> str:
        if value is None:
            return "–"
        local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(ZONE)
        if self.lang == "zh":
            return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M:%S}"
        return f"{local.day} {local:%b} {local.year}, {local:%H:%M:%S}"

    def duration(self, seconds: float | None) -> str:
        """A short age or length: ``3m 20s`` / ``3分20秒``."""
        if seconds is None:
            return "–"
        s = max(int(seconds), 0)
        d, rem = divmod(s, 86400)
        h, rem = divmod(rem, 3600)
        m, sec = divmod(rem, 60)
        units = ("天", "小时", "分", "秒") if self.lang == "zh" else ("d", "h", "m", "s")
        parts = [(d, units[0]), (h, units[1]), (m, units[2]), (sec, units[3])]
        shown = [f"{n}{u}" for n, u in parts if n][:2]
        sep = "" if self.lang == "zh" else " "
        return sep.join(shown) or f"0{units[3]}"
