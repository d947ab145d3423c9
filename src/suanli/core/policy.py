"""The data-movement policy engine: ``decide(movement) -> Decision``.

Pure and deterministic: the rule set (thresholds, routes, rule texts, validity, the FTZ
negative lists) is data handed in by the caller — ``suanli.datachain.rules`` loads the shipped
YAML files, an operator may edit them. The *order* in which rules are tried follows
docs/rules.md and lives here; every number, route and sentence lives in the data.

Every decision names the rule ids it applied and the rule set's version, so the ledger can
say later which rules made which decision.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import Field, PrivateAttr, model_validator

from suanli.core.datasets import Classification, Level
from suanli.core.network import Zone
from suanli.core.spec import StrictModel
from suanli.core.validation import parse_yaml_as


class Route(StrEnum):
    """What a movement needs before it may happen."""

    #: Not an export (both ends in China) and not core data leaving home: record and go.
    ALLOW = "allow"
    #: An export exempt from all three routes (X2a–X2f, F1): record and go.
    EXEMPT = "exempt"
    STANDARD_CONTRACT = "standard_contract"
    CERTIFICATION = "certification"
    SECURITY_ASSESSMENT = "security_assessment"
    DENY = "deny"

    @property
    def moves_now(self) -> bool:
        return self in (Route.ALLOW, Route.EXEMPT)

    @property
    def needs_filing(self) -> bool:
        return self in (Route.STANDARD_CONTRACT, Route.CERTIFICATION, Route.SECURITY_ASSESSMENT)


class MovementKind(StrEnum):
    TRANSFER = "transfer"  # a replica copied from one site to another
    JOB_READ = "job_read"  # a job at ``destination`` reads the dataset
    DOWNLOAD = "download"  # a client at ``destination`` downloads it
    OVERSEAS_ACCESS = "overseas_access"  # a query from abroad (X7: counts as export)


class Purpose(StrEnum):
    NONE = "none"
    CONTRACT = "contract"  # X2c
    HR = "hr"  # X2d
    EMERGENCY = "emergency"  # X2e
    FOREIGN_JUDICIAL = "foreign_judicial"  # L2


class PiplBasis(StrEnum):
    """PIPL: the lawful basis the individuals' notice gave for sending their PI abroad (art. 13,
    39: separate consent where consent is the basis)."""

    SEPARATE_CONSENT = "separate_consent"
    CONTRACT = "contract"
    HR = "hr"
    LEGAL_DUTY = "legal_duty"
    EMERGENCY = "emergency"
    PUBLIC_INTEREST = "public_interest"
    PUBLISHED = "published"


class SiteFacts(StrictModel):
    name: str
    region: str = ""
    zone: Zone = Zone.MAINLAND

    @property
    def abroad(self) -> bool:
        return self.zone == Zone.OVERSEAS


class Exporter(StrictModel):
    """The data handler that sends (the owner tenant)."""

    name: str
    #: Critical information infrastructure operator (X3).
    ciio: bool = False
    #: The free trade zone the exporter is registered in (matches a negative list's ``zone``), F1.
    ftz: str | None = None


#: X6 and docs/rules.md: counting years are calendar years in Beijing time.
BEIJING = ZoneInfo("Asia/Shanghai")


def counting_year(now: datetime) -> int:
    """The counting year ``now`` falls in: the calendar year in Beijing time (UTC+8), so
    00:00–08:00 Beijing time on 1 January already counts for the new year."""
    return now.astimezone(BEIJING).year if now.tzinfo else now.year


class Counters(StrictModel):
    """X6: cumulative individuals exported since 1 January, per exporter (never per transfer)."""

    year: int = 0
    pi: int = Field(default=0, ge=0)
    spi: int = Field(default=0, ge=0)

    def plus(self, pi: int, spi: int) -> Counters:
        return Counters(year=self.year, pi=self.pi + pi, spi=self.spi + spi)


class Rule(StrictModel):
    id: str
    text: str
    route: Route | None = None
    #: Whether an export decided by this rule adds to the exporter's yearly counters.
    counted: bool = True


class Thresholds(StrictModel):
    #: X2f: cumulative non-sensitive PI strictly below this (and no SPI) is exempt.
    pi_exempt_below: int = 100_000
    #: X3: cumulative non-sensitive PI at or above this needs a security assessment.
    pi_assessment_at: int = 1_000_000
    #: X3: cumulative SPI at or above this needs a security assessment.
    spi_assessment_at: int = 10_000


class NegativeCategory(StrictModel):
    id: str
    name: str
    subcategories: list[dict[str, object]] = Field(default_factory=list)


class NegativeList(StrictModel):
    """F1/F2: a free trade zone's list; exporters registered in ``zone`` may export data not on it."""

    zone: str
    name: str
    edition: str
    categories: list[NegativeCategory]

    @property
    def category_ids(self) -> set[str]:
        ids = {c.id for c in self.categories}
        for c in self.categories:
            ids |= {f"{c.id}.{s['id']}" for s in c.subcategories if "id" in s}
        return ids

    def listed(self, category: str) -> bool:
        """Whether ``category`` is on the list: named, or under a named category (fail closed:
        ``finance.payments`` is listed when ``finance`` is, whether or not the list names
        ``payments``)."""
        return any(prefix in self.category_ids for prefix in _prefixes(category))


def _prefixes(category: str) -> list[str]:
    """``a.b.c`` → ``[a.b.c, a.b, a]``."""
    parts = category.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


class RuleSet(StrictModel):
    version: str
    name: str
    thresholds: Thresholds = Field(default_factory=Thresholds)
    #: X5: years an accepted filing of each route stays valid (None: per contract term, set on the filing).
    validity_years: dict[Route, int | None] = Field(default_factory=dict)
    #: Zones from which the X2b return-flow exemption may be claimed.
    return_flow_zones: list[Zone] = Field(default_factory=lambda: [Zone.BONDED, Zone.MAINLAND])
    #: F2: categories that stay under the general rules even for an FTZ exporter.
    general_rule_categories: list[str] = Field(default_factory=list)
    #: C2 matrix: harmed object -> severity -> level.
    grading_matrix: dict[str, dict[str, Level]] = Field(default_factory=dict)
    #: C3: number of sub-grades of general data.
    sub_grades: int = 4
    #: X1: categories notified or catalogued by a department or region, with the least level
    #: data of that category has (``finance.payments`` takes ``finance``'s entry). A dataset is
    #: decided at the higher of its grade and its categories' entries.
    catalogue: dict[str, Level] = Field(default_factory=dict)
    rules: list[Rule]
    negative_lists: list[NegativeList] = Field(default_factory=list)
    _sha256: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _ids(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"rule ids must be unique; repeated: {', '.join(dupes)}")
        missing = sorted(REQUIRED_RULES - set(ids))
        if missing:
            raise ValueError(f"the rule set lacks rules the engine applies: {', '.join(missing)}")
        return self

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    def negative_list(self, zone: str | None) -> NegativeList | None:
        return next((n for n in self.negative_lists if zone and n.zone == zone), None)

    @property
    def sha256(self) -> str:
        """SHA-256 of the rule set's canonical form (its negative lists included): sorted-key,
        compact JSON of the parsed files, so comments and layout do not change it and any
        change of substance does. Every decision records it beside ``version``."""
        if not self._sha256:
            data = self.model_dump(mode="json")
            canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            self._sha256 = hashlib.sha256(canonical.encode()).hexdigest()
        return self._sha256

    def catalogued_level(self, categories: Iterable[str]) -> tuple[Level, list[str]]:
        """X1: the highest level the catalogue gives any of ``categories`` (general if none),
        and the categories that gave it."""
        best, why = Level.GENERAL, []
        for cat in categories:
            entry = next((self.catalogue[p] for p in _prefixes(cat) if p in self.catalogue), None)
            if entry is None:
                continue
            if entry.rank > best.rank:
                best, why = entry, [cat]
            elif entry == best and entry != Level.GENERAL:
                why.append(cat)
        return best, why

    def effective(self, c: Classification) -> Classification:
        """The classification decisions use: never below what the catalogue says its
        categories are (fail closed)."""
        level, _ = self.catalogued_level(c.categories)
        return c.model_copy(update={"level": level}) if level.rank > c.level.rank else c


#: Rule ids the engine's order refers to; a rule set must define each (text, route, counted).
REQUIRED_RULES = frozenset({"D1", "L1", "L2", "F1", "X2a", "X2b", "X2c", "X2d", "X2e", "X2f", "X3", "X4", "X6", "X7"})


class Movement(StrictModel):
    kind: MovementKind
    dataset: str
    classification: Classification
    #: The dataset's home site (L1 is measured from it).
    home: SiteFacts
    #: Where the bytes come from (the home site or a replica).
    source: SiteFacts
    #: Where they go: the target site, the job's site, or the client's location.
    destination: SiteFacts
    exporter: Exporter
    purpose: Purpose = Purpose.NONE
    #: L2: approval from the competent authority for a foreign judicial request.
    judicial_approval: bool = False
    #: X6: the exporter's cumulative counters this year *before* this movement.
    counters: Counters = Field(default_factory=Counters)

    @property
    def is_export(self) -> bool:
        """X7: a download or query from abroad counts as export, like a transfer abroad."""
        return not self.source.abroad and self.destination.abroad


@dataclass(frozen=True)
class Decision:
    route: Route
    reasons: tuple[str, ...]
    rule_ids: tuple[str, ...]
    ruleset_version: str
    #: True when the movement takes data out of China (X7).
    export: bool = False
    #: Individuals this movement adds to the exporter's counters once it happens (X6).
    adds_pi: int = 0
    adds_spi: int = 0
    #: Other routes that satisfy the rule (X4: certification instead of a standard contract).
    alternatives: tuple[Route, ...] = ()
    #: Counters after this movement, when it is an export.
    counters_after: Counters | None = None
    #: SHA-256 of the rule set's canonical form (:attr:`RuleSet.sha256`).
    ruleset_sha256: str = ""

    @property
    def moves_now(self) -> bool:
        return self.route.moves_now

    def explain(self) -> str:
        head = {
            Route.ALLOW: "allowed",
            Route.EXEMPT: "allowed: exempt from cross-border filing",
            Route.STANDARD_CONTRACT: "needs an accepted standard-contract filing",
            Route.CERTIFICATION: "needs a valid certification",
            Route.SECURITY_ASSESSMENT: "needs an approved CAC security assessment",
            Route.DENY: "denied",
        }[self.route]
        alt = f" (or: {', '.join(a.value for a in self.alternatives)})" if self.alternatives else ""
        lines = [f"{head}{alt} — rules {', '.join(self.rule_ids)} (rule set {self.ruleset_version})"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "route": self.route.value,
            "reasons": list(self.reasons),
            "rule_ids": list(self.rule_ids),
            "ruleset_version": self.ruleset_version,
            "ruleset_sha256": self.ruleset_sha256,
            "export": self.export,
            "adds_pi": self.adds_pi,
            "adds_spi": self.adds_spi,
            "alternatives": [a.value for a in self.alternatives],
            "counters_after": self.counters_after.model_dump() if self.counters_after else None,
        }


@dataclass
class _Builder:
    rules: RuleSet
    movement: Movement
    ids: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def note(self, rule_id: str, reason: str) -> None:
        self.ids.append(rule_id)
        self.reasons.append(f"{rule_id}: {reason}")

    def done(self, route: Route, *, alternatives: Sequence[Route] = (), counted: bool = False) -> Decision:
        m = self.movement
        c = m.classification
        adds_pi, adds_spi = (c.pi_count, c.spi_count) if (m.is_export and counted) else (0, 0)
        after = m.counters.plus(adds_pi, adds_spi) if m.is_export else None
        return Decision(
            route=route,
            reasons=tuple(self.reasons),
            rule_ids=tuple(dict.fromkeys(self.ids)),
            ruleset_version=self.rules.version,
            ruleset_sha256=self.rules.sha256,
            export=m.is_export,
            adds_pi=adds_pi,
            adds_spi=adds_spi,
            alternatives=tuple(alternatives),
            counters_after=after,
        )


def decide(movement: Movement, rules: RuleSet) -> Decision:
    """The verdict on one movement. Order: L1 core data, domestic (D1), L2 foreign judicial,
    F1 FTZ negative list, X2a–X2e exemptions, X3 assessment, X4 contract/certification, X2f."""
    declared = movement.classification.level
    movement = _fail_closed(movement, rules)
    b = _Builder(rules, movement)
    m, c = movement, movement.classification
    if c.level != declared:
        _, why = rules.catalogued_level(c.categories)
        b.note("X1", f"categories {', '.join(why)} are catalogued as {c.level.value} data (graded {declared.value})")
    leaves_home = m.destination.name != m.home.name
    if c.level == Level.CORE and (leaves_home or m.kind in (MovementKind.DOWNLOAD, MovementKind.OVERSEAS_ACCESS)):
        where = m.destination.name
        b.note("L1", f"'{m.dataset}' is core data; it never leaves its home site {m.home.name} (asked: {where})")
        return b.done(Route.DENY)
    if m.source.abroad:
        b.note(
            "D2", f"{m.source.name} is abroad ({m.source.zone.value}): the bytes leave no Chinese site; not an export"
        )
        return b.done(Route.ALLOW)
    if not m.is_export:
        b.note("D1", f"{m.source.name} → {m.destination.name} stays in China; not an export")
        return b.done(Route.ALLOW)
    b.note("X7", f"{m.kind.value} to {m.destination.name} ({m.destination.zone.value}) counts as export")
    return _decide_export(b)


def _fail_closed(m: Movement, rules: RuleSet) -> Movement:
    """The movement with its data at the level the catalogue gives its categories, if higher."""
    c = rules.effective(m.classification)
    return m if c is m.classification else m.model_copy(update={"classification": c})


def _decide_export(b: _Builder) -> Decision:
    rules, m = b.rules, b.movement
    c = m.classification
    t = rules.thresholds
    if m.purpose == Purpose.FOREIGN_JUDICIAL and not m.judicial_approval:
        b.note("L2", "data for a foreign judicial or law-enforcement body needs the competent authority's approval")
        return b.done(Route.DENY)
    nl = rules.negative_list(m.exporter.ftz)
    if nl is not None and not c.categories:
        b.note(
            "F1", f"'{m.dataset}' has no category tag: fail closed, no {nl.name} exemption; the general routes apply"
        )
    elif nl is not None:
        listed = sorted(cat for cat in c.categories if nl.listed(cat))
        general = sorted(cat for cat in c.categories if any(p in rules.general_rule_categories for p in _prefixes(cat)))
        if not listed and not general:
            b.note("F1", f"exporter is in {nl.zone} and no category of the data is on the {nl.name} ({nl.edition})")
            return b.done(Route.EXEMPT, counted=rules.rule("F1").counted)
        why = f"on the {nl.name}: {', '.join(listed)}" if listed else f"under the general rules: {', '.join(general)}"
        b.note("F1", f"categories {why}; the general routes apply")
    important = c.level == Level.IMPORTANT
    if not c.has_pi and not important:
        b.note("X2a", "no personal information and no important data")
        return b.done(Route.EXEMPT, counted=rules.rule("X2a").counted)
    if c.return_flow and not important and m.source.zone in rules.return_flow_zones:
        b.note("X2b", "personal information collected abroad and sent back with nothing domestic added")
        return b.done(Route.EXEMPT, counted=rules.rule("X2b").counted)
    purpose_rule = {Purpose.CONTRACT: "X2c", Purpose.HR: "X2d", Purpose.EMERGENCY: "X2e"}.get(m.purpose)
    if purpose_rule and not important:
        b.note(purpose_rule, rules.rule(purpose_rule).text)
        return b.done(Route.EXEMPT, counted=rules.rule(purpose_rule).counted)
    pi_after = m.counters.pi + c.pi_count
    spi_after = m.counters.spi + c.spi_count
    b.note(
        "X6",
        f"{m.exporter.name} has exported PI of {m.counters.pi:,} and SPI of {m.counters.spi:,} people "
        f"in {m.counters.year or 'this year'}; with this movement {pi_after:,} and {spi_after:,}",
    )
    triggers = []
    if m.exporter.ciio:
        triggers.append("the exporter is a CIIO exporting personal information or important data")
    if important:
        triggers.append(f"'{m.dataset}' is important data")
    if pi_after >= t.pi_assessment_at:
        triggers.append(f"cumulative non-sensitive PI {pi_after:,} ≥ {t.pi_assessment_at:,}")
    if spi_after >= t.spi_assessment_at:
        triggers.append(f"cumulative sensitive PI {spi_after:,} ≥ {t.spi_assessment_at:,}")
    if triggers:
        b.note("X3", "; ".join(triggers))
        return b.done(Route.SECURITY_ASSESSMENT, counted=rules.rule("X3").counted)
    if pi_after >= t.pi_exempt_below or spi_after >= 1:
        b.note(
            "X4",
            f"cumulative non-sensitive PI {pi_after:,} (exempt below {t.pi_exempt_below:,}) "
            f"or sensitive PI {spi_after:,} > 0",
        )
        return b.done(Route.STANDARD_CONTRACT, alternatives=[Route.CERTIFICATION], counted=rules.rule("X4").counted)
    b.note("X2f", f"cumulative non-sensitive PI {pi_after:,} < {t.pi_exempt_below:,} and no sensitive PI")
    return b.done(Route.EXEMPT, counted=rules.rule("X2f").counted)


def may_read(
    dataset: str,
    classification: Classification,
    home: SiteFacts,
    replicas: Sequence[SiteFacts],
    site: SiteFacts,
    exporter: Exporter,
    rules: RuleSet,
    counters: Counters | None = None,
) -> Decision:
    """The scheduler's hook: may a job at ``site`` read ``dataset``? Reading where a copy already
    lies (home or replica) is a local read; otherwise the answer is that of bringing the data
    from home to ``site``. Core data is readable at its home site only (L1)."""
    classification = rules.effective(classification)
    local = site.name == home.name or any(r.name == site.name for r in replicas)
    if local and not (classification.level == Level.CORE and site.name != home.name):
        return Decision(
            route=Route.ALLOW,
            reasons=(f"D1: '{dataset}' already lies at {site.name}",),
            rule_ids=("D1",),
            ruleset_version=rules.version,
            ruleset_sha256=rules.sha256,
        )
    movement = Movement(
        kind=MovementKind.JOB_READ,
        dataset=dataset,
        classification=classification,
        home=home,
        source=home,
        destination=site,
        exporter=exporter,
        counters=counters or Counters(),
    )
    return decide(movement, rules)


def parse_ruleset(text: str, source: str | None = None) -> RuleSet:
    return parse_yaml_as(RuleSet, text, source)


def parse_negative_list(text: str, source: str | None = None) -> NegativeList:
    return parse_yaml_as(NegativeList, text, source)
