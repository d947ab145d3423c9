"""Domain errors whose messages are sentences a user can act on."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where it is, what is wrong, and how to fix it."""

    #: Dotted path of the field, e.g. ``resources.accelerators``; empty for the whole document.
    field: str
    #: What is wrong, as a sentence.
    message: str
    #: 1-based line in the source YAML, when known.
    line: int | None = None

    def render(self, source: str | None = None) -> str:
        where = []
        if source:
            where.append(source + (f":{self.line}" if self.line else ""))
        elif self.line:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SuanliError(Exception):
    """Base of every error suanli raises on purpose; its text is meant for users."""


@dataclass
class SpecError(SuanliError):
    """A job spec or network file is invalid. Carries every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)
    source: str | None = None

    def __str__(self) -> str:
        lines = [p.render(self.source) for p in self.problems]
        return "\n".join(lines) if lines else "invalid document"


class TransitionError(SuanliError):
    """An illegal state change was asked for (e.g. cancelling a finished job)."""
