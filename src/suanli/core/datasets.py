"""Datasets as the policy engine sees them: level, personal-information counts, categories.

Pure: no I/O. The registry (``suanli.datachain``) persists these facts; the policy engine
(:mod:`suanli.core.policy`) decides on them. Rule ids in comments refer to docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator

from suanli.core.spec import NAME_RE, StrictModel


class Level(StrEnum):
    """C1: three levels, ``core`` > ``important`` > ``general``."""

    CORE = "core"
    IMPORTANT = "important"
    GENERAL = "general"

    @property
    def rank(self) -> int:
        """Higher is more protected."""
        return {"general": 0, "important": 1, "core": 2}[self.value]

    @property
    def encrypted_at_rest(self) -> bool:
        """``important`` and above are sealed at rest (issue 9, part 4)."""
        return self.rank >= Level.IMPORTANT.rank


class Severity(StrEnum):
    ESPECIALLY_SERIOUS = "especially_serious"
    SERIOUS = "serious"
    ORDINARY = "ordinary"


class Harmed(StrEnum):
    """C2: what leaks or misuse would harm."""

    NATIONAL_SECURITY = "national_security"
    ECONOMIC_OPERATION = "economic_operation"
    SOCIAL_ORDER = "social_order"
    PUBLIC_INTEREST = "public_interest"
    ORGANISATION = "organisation"
    INDIVIDUAL = "individual"


class Classification(StrictModel):
    """One grading of a dataset. Re-grading makes a new version; old versions stay on record."""

    #: C1.
    level: Level = Level.GENERAL
    #: C3: general data may carry a sub-grade (1..4; the count is in the rule set, unverified).
    sub_grade: int | None = Field(default=None, ge=1, le=9)
    #: C4: number of individuals whose (non-sensitive) personal information the dataset holds.
    pi_count: int = Field(default=0, ge=0)
    #: C4: number of individuals whose sensitive personal information the dataset holds.
    spi_count: int = Field(default=0, ge=0)
    #: Categories, e.g. FTZ negative-list category ids (``finance``) or ``government``.
    categories: list[str] = Field(default_factory=list)
    #: X2b: PI collected abroad, processed here, nothing domestic added ("data return flow").
    return_flow: bool = False
    #: Who graded it, and when.
    graded_by: str = ""
    graded_at: datetime | None = None
    #: True for a derived dataset that inherited its level and has not been re-graded yet (C3).
    inherited: bool = False

    @property
    def sealed_at_rest(self) -> bool:
        """Whether a site stores it sealed: ``important`` and above, and any data holding personal
        information (PI or SPI), whatever its level."""
        return self.level.encrypted_at_rest or self.pi_count > 0 or self.spi_count > 0

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for c in value:
            if not NAME_RE.match(c):
                raise ValueError(f"'{c}' is not a category id; use letters, digits, '.', '_' or '-'")
        return sorted(set(value))

    @property
    def has_pi(self) -> bool:
        return self.pi_count > 0 or self.spi_count > 0


def grade_by_harm(harms: Mapping[Harmed, Severity], matrix: Mapping[str, Mapping[str, str]]) -> Level:
    """C2: the highest level any (harmed object, severity) pair maps to in the rule set's matrix."""
    best = Level.GENERAL
    for harmed, severity in harms.items():
        level = Level(matrix.get(harmed.value, {}).get(severity.value, Level.GENERAL.value))
        if level.rank > best.rank:
            best = level
    return best


def inherit(inputs: Iterable[Classification], *, graded_by: str, graded_at: datetime) -> Classification:
    """C3: a derived dataset takes the highest level of its inputs, the sum of their PI counts
    and the union of their categories, and is marked ``inherited`` until someone re-grades it.
    The sum over-counts shared individuals on purpose: it errs towards the stricter route."""
    items = list(inputs)
    if not items:
        return Classification(graded_by=graded_by, graded_at=graded_at, inherited=True)
    top = max(items, key=lambda c: c.level.rank).level
    return Classification(
        level=top,
        pi_count=sum(c.pi_count for c in items),
        spi_count=sum(c.spi_count for c in items),
        categories=sorted({cat for c in items for cat in c.categories}),
        return_flow=all(c.return_flow for c in items),
        graded_by=graded_by,
        graded_at=graded_at,
        inherited=True,
    )


def lowered(old: Classification, new: Classification) -> list[str]:
    """What ``new`` lowers against ``old``, in words (empty: it only keeps or raises). Lowering
    any of these changes every later decision, so it needs an auditor: the level, a category
    dropped, the PI or SPI count, and claiming a return flow (X2b) that was not claimed."""
    out = []
    if new.level.rank < old.level.rank:
        out.append(f"level {old.level.value} → {new.level.value}")
    dropped = sorted(set(old.categories) - set(new.categories))
    if dropped:
        out.append(f"categories dropped: {', '.join(dropped)}")
    if new.pi_count < old.pi_count:
        out.append(f"PI {old.pi_count:,} → {new.pi_count:,}")
    if new.spi_count < old.spi_count:
        out.append(f"SPI {old.spi_count:,} → {new.spi_count:,}")
    if new.return_flow and not old.return_flow:
        out.append("claims a return flow (X2b)")
    return out
