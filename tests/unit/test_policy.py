"""Every row of REGULATIONS.md as a table: the movement, the route, the rule ids it must name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from suanli.core.datasets import Classification, Harmed, Level, Severity, grade_by_harm, inherit, lowered
from suanli.core.errors import SpecError
from suanli.core.holds import FilingFacts, FilingState, hold_for
from suanli.core.network import Zone, parse_network
from suanli.core.policy import (
    Counters,
    Exporter,
    Movement,
    MovementKind,
    Purpose,
    Route,
    RuleSet,
    SiteFacts,
    counting_year,
    decide,
    may_read,
    parse_ruleset,
)
from suanli.datachain.rulesets import default_ruleset, ruleset_of

BJ = SiteFacts(name="beijing-yizhuang", region="beijing", zone=Zone.MAINLAND)
TJ = SiteFacts(name="tianjin-gaocun", region="tianjin", zone=Zone.MAINLAND)
BONDED = SiteFacts(name="tianjin-bonded", region="tianjin", zone=Zone.BONDED)
SG = SiteFacts(name="singapore-1", region="singapore", zone=Zone.OVERSEAS)
SG2 = SiteFacts(name="frankfurt-1", region="frankfurt", zone=Zone.OVERSEAS)
RULES = default_ruleset()


def move(
    *,
    level: Level = Level.GENERAL,
    pi: int = 0,
    spi: int = 0,
    categories: tuple[str, ...] = (),
    return_flow: bool = False,
    kind: MovementKind = MovementKind.TRANSFER,
    source: SiteFacts = BJ,
    to: SiteFacts = SG,
    ciio: bool = False,
    ftz: str | None = None,
    purpose: Purpose = Purpose.NONE,
    approved: bool = False,
    counters: tuple[int, int] = (0, 0),
) -> Movement:
    return Movement(
        kind=kind,
        dataset="notes",
        classification=Classification(
            level=level, pi_count=pi, spi_count=spi, categories=list(categories), return_flow=return_flow
        ),
        home=BJ,
        source=source,
        destination=to,
        exporter=Exporter(name="bj-ai", ciio=ciio, ftz=ftz),
        purpose=purpose,
        judicial_approval=approved,
        counters=Counters(year=2026, pi=counters[0], spi=counters[1]),
    )


E, SC, SA, D, A = Route.EXEMPT, Route.STANDARD_CONTRACT, Route.SECURITY_ASSESSMENT, Route.DENY, Route.ALLOW

CASES: list[tuple[str, dict[str, Any], Route, str]] = [
    # -- domestic
    ("domestic general", {"to": TJ, "pi": 5_000_000}, A, "D1"),
    ("domestic important", {"to": TJ, "level": Level.IMPORTANT}, A, "D1"),
    ("to bonded is domestic", {"to": BONDED, "pi": 2_000_000}, A, "D1"),
    # -- X2a
    ("X2a no PI no important", {}, E, "X2a"),
    ("X2a even a CIIO", {"ciio": True}, E, "X2a"),
    # -- X2f / X4 edges, non-sensitive PI
    ("X2f 1 person", {"pi": 1}, E, "X2f"),
    ("X2f 99,999", {"pi": 99_999}, E, "X2f"),
    ("X4 100,000", {"pi": 100_000}, SC, "X4"),
    ("X4 999,999", {"pi": 999_999}, SC, "X4"),
    ("X3 1,000,000", {"pi": 1_000_000}, SA, "X3"),
    # -- SPI edges
    ("X4 SPI 1", {"spi": 1}, SC, "X4"),
    ("X4 SPI 9,999", {"spi": 9_999}, SC, "X4"),
    ("X3 SPI 10,000", {"spi": 10_000}, SA, "X3"),
    # -- X3 other triggers
    ("X3 important data", {"level": Level.IMPORTANT}, SA, "X3"),
    ("X3 CIIO with PI", {"pi": 10, "ciio": True}, SA, "X3"),
    # -- X6 counters across the year / split transfers
    ("X6 split: 60k after 60k", {"pi": 60_000, "counters": (60_000, 0)}, SC, "X4"),
    ("X6 split: 1 after 99,999", {"pi": 1, "counters": (99_999, 0)}, SC, "X4"),
    ("X6 split: 0 after 99,998", {"pi": 1, "counters": (99_998, 0)}, E, "X2f"),
    ("X6 split: 1 after 999,999", {"pi": 1, "counters": (999_999, 0)}, SA, "X3"),
    ("X6 split SPI: 1 after 9,999", {"spi": 1, "counters": (0, 9_999)}, SA, "X3"),
    ("X6 earlier SPI makes new PI need filing", {"pi": 10, "counters": (0, 1)}, SC, "X4"),
    # -- X2b return flow (bonded zone)
    ("X2b return flow from bonded", {"pi": 5_000_000, "return_flow": True, "source": BONDED}, E, "X2b"),
    ("X2b not for important data", {"level": Level.IMPORTANT, "return_flow": True, "source": BONDED}, SA, "X3"),
    # -- X2c/d/e purposes
    ("X2c contract", {"pi": 2_000_000, "purpose": Purpose.CONTRACT}, E, "X2c"),
    ("X2d HR", {"pi": 200_000, "purpose": Purpose.HR}, E, "X2d"),
    ("X2e emergency", {"spi": 50_000, "purpose": Purpose.EMERGENCY}, E, "X2e"),
    # -- X7: download and query from abroad count as export
    ("X7 download abroad", {"kind": MovementKind.DOWNLOAD, "pi": 100_000}, SC, "X7"),
    ("X7 overseas access", {"kind": MovementKind.OVERSEAS_ACCESS, "spi": 10_000}, SA, "X7"),
    ("X7 job abroad", {"kind": MovementKind.JOB_READ, "pi": 1_000_000}, SA, "X7"),
    # -- L1 core data by every path
    ("L1 core copy domestic", {"level": Level.CORE, "to": TJ}, D, "L1"),
    ("L1 core copy abroad", {"level": Level.CORE}, D, "L1"),
    ("L1 core job elsewhere", {"level": Level.CORE, "kind": MovementKind.JOB_READ, "to": TJ}, D, "L1"),
    ("L1 core download", {"level": Level.CORE, "kind": MovementKind.DOWNLOAD, "to": BJ}, D, "L1"),
    ("L1 core overseas access", {"level": Level.CORE, "kind": MovementKind.OVERSEAS_ACCESS}, D, "L1"),
    ("L1 core FTZ exporter", {"level": Level.CORE, "ftz": "tianjin-ftz"}, D, "L1"),
    # -- L2 foreign judicial
    ("L2 unapproved", {"purpose": Purpose.FOREIGN_JUDICIAL}, D, "L2"),
    ("L2 approved follows rules", {"purpose": Purpose.FOREIGN_JUDICIAL, "approved": True}, E, "X2a"),
    # -- F1 FTZ negative list
    ("F1 not on list exempt", {"ftz": "tianjin-ftz", "pi": 2_000_000, "categories": ("marketing",)}, E, "F1"),
    (
        "F1 important not on list",
        {"ftz": "tianjin-ftz", "level": Level.IMPORTANT, "categories": ("marketing",)},
        E,
        "F1",
    ),
    ("F1 listed category", {"ftz": "tianjin-ftz", "pi": 200_000, "categories": ("finance",)}, SC, "X4"),
    ("F1 listed sub-category", {"ftz": "tianjin-ftz", "categories": ("industry.electronics",), "spi": 1}, SC, "X4"),
    ("F2 government data general rules", {"ftz": "tianjin-ftz", "categories": ("government",), "pi": 1}, E, "X2f"),
    ("F1 other zone's exporter", {"ftz": "shanghai-ftz", "pi": 200_000}, SC, "X4"),
    # -- fail closed: unknown means strictest, never exempt
    ("F1 untagged PI is not exempt", {"ftz": "tianjin-ftz", "pi": 2_000_000, "spi": 60_000}, SA, "X3"),
    ("F1 untagged important is not exempt", {"ftz": "tianjin-ftz", "level": Level.IMPORTANT}, SA, "X3"),
    ("F1 untagged small PI follows X2f", {"ftz": "tianjin-ftz", "pi": 10}, E, "X2f"),
    (
        "F1 unlisted sub-category of a listed one",
        {"ftz": "tianjin-ftz", "pi": 200_000, "categories": ("finance.payments",)},
        SC,
        "X4",
    ),
    (
        "F1 deeper sub-category of a listed one",
        {"ftz": "tianjin-ftz", "spi": 20_000, "categories": ("industry.electronics.chips",)},
        SA,
        "X3",
    ),
    (
        "F1 one listed category among unlisted",
        {"ftz": "tianjin-ftz", "pi": 200_000, "categories": ("marketing", "transport.rail")},
        SC,
        "X4",
    ),
    (
        "F1 a category merely sharing a prefix is not listed",
        {"ftz": "tianjin-ftz", "pi": 200_000, "categories": ("financex",)},
        E,
        "F1",
    ),
    (
        "F2 sub-category of a general-rules category",
        {"ftz": "tianjin-ftz", "pi": 200_000, "categories": ("government.tax",)},
        SC,
        "X4",
    ),
    ("X1 catalogued core category is core", {"ftz": "tianjin-ftz", "categories": ("state_secret.maps",)}, D, "L1"),
    # -- sources abroad
    ("D2 overseas to overseas is not an export", {"source": SG, "to": SG2, "pi": 2_000_000}, A, "D2"),
]


@pytest.mark.parametrize(("name", "kwargs", "route", "rule_id"), CASES, ids=[c[0] for c in CASES])
def test_every_rule(name: str, kwargs: dict[str, Any], route: Route, rule_id: str) -> None:
    decision = decide(move(**kwargs), RULES)
    assert decision.route == route, decision.explain()
    assert rule_id in decision.rule_ids, decision.explain()
    assert decision.ruleset_version == RULES.version
    assert decision.ruleset_sha256 == RULES.sha256
    assert decision.reasons
    assert all(r.split(":")[0] in {x.id for x in RULES.rules} for r in decision.reasons), decision.reasons


DOCS = Path(__file__).resolve().parents[2] / "docs" / "datachain.md"


def _doc_table() -> dict[str, tuple[str, str]]:
    """The rows of docs/datachain.md's decision table: case → (route, rule)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Decision table", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("case", "---"):
            rows[cells[0]] = (cells[2].strip("`"), cells[3].strip("`"))
    return rows


def test_the_docs_decision_table_is_the_test_table() -> None:
    """Every row of the table in docs/datachain.md is a case above, with the same route and rule,
    and every case is a row: the documentation and the tests cannot drift apart."""
    doc = _doc_table()
    cases = {name: (route.value, rule_id) for name, _, route, rule_id in CASES}
    assert sorted(set(cases) - set(doc)) == [], "cases missing from docs/datachain.md's decision table"
    assert sorted(set(doc) - set(cases)) == [], "rows of docs/datachain.md's decision table with no test case"
    assert {n: doc[n] for n in cases} == cases


def test_x4_offers_certification_as_alternative() -> None:
    decision = decide(move(pi=200_000), RULES)
    assert Route.CERTIFICATION in decision.alternatives
    assert "standard-contract" in decision.explain()


def test_counted_exports_add_to_counters_and_exempt_purposes_do_not() -> None:
    counted = decide(move(pi=50_000, counters=(10, 0)), RULES)
    assert counted.route == E
    assert (counted.adds_pi, counted.adds_spi) == (50_000, 0)
    assert counted.counters_after == Counters(year=2026, pi=50_010, spi=0)
    exempt = decide(move(pi=50_000, purpose=Purpose.CONTRACT), RULES)
    assert (exempt.adds_pi, exempt.adds_spi) == (0, 0)
    domestic = decide(move(pi=50_000, to=TJ), RULES)
    assert domestic.counters_after is None
    assert domestic.adds_pi == 0


def test_split_transfers_are_caught_across_the_year() -> None:
    """X6: ten transfers of 10,000 people each — the tenth reaches 100,000 and needs a filing."""
    counters = Counters(year=2026)
    routes = []
    for _ in range(10):
        d = decide(move(pi=10_000, counters=(counters.pi, counters.spi)), RULES)
        routes.append(d.route)
        counters = counters.plus(d.adds_pi, d.adds_spi)
    assert routes[:9] == [E] * 9
    assert routes[9] == SC


def test_thresholds_are_data() -> None:
    text = (
        "version: test\nname: t\nthresholds: {pi_exempt_below: 10, pi_assessment_at: 20, spi_assessment_at: 5}\n"
        "rules:\n" + "".join(f"  - {{id: {r.id}, text: x}}\n" for r in RULES.rules)
    )
    rules = parse_ruleset(text)
    assert decide(move(pi=10), rules).route == SC
    assert decide(move(pi=20), rules).route == SA
    assert decide(move(pi=10), rules).ruleset_version == "test"


def test_ruleset_missing_a_rule_is_refused() -> None:
    with pytest.raises(SpecError, match="lacks rules"):
        parse_ruleset("version: v\nname: n\nrules:\n  - {id: X3, text: t}\n")


def test_shipped_ruleset_covers_every_regulation_row() -> None:
    ids = {r.id for r in RULES.rules}
    rows = {"C1", "C2", "C3", "C4", "X1", "X2a", "X2b", "X2c", "X2d", "X2e", "X2f", "X3", "X4", "X5", "X6"}
    rows |= {"X7", "X8", "L1", "L2", "F1", "F2"}
    assert rows <= ids
    tianjin = RULES.negative_list("tianjin-ftz")
    assert tianjin is not None
    assert len(tianjin.categories) == 13


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _filing(state: FilingState, route: Route = SC, expires: datetime | None = None) -> FilingFacts:
    return FilingFacts(
        id="f-1", route=route, state=state, dataset="notes", exporter="bj-ai", destination=SG.name, expires_at=expires
    )


@pytest.mark.parametrize(
    ("filings", "ok", "words"),
    [
        ([], False, "create one"),
        ([_filing(FilingState.DRAFT)], False, "(draft)"),
        ([_filing(FilingState.SUBMITTED)], False, "(submitted)"),
        ([_filing(FilingState.REJECTED)], False, "create one"),
        ([_filing(FilingState.ACCEPTED)], True, "accepted filing f-1"),
        ([_filing(FilingState.ACCEPTED, Route.CERTIFICATION, NOW + timedelta(days=1))], True, "f-1"),
        ([_filing(FilingState.ACCEPTED, Route.CERTIFICATION, NOW - timedelta(days=1))], False, "expired"),
        ([_filing(FilingState.ACCEPTED, SA)], False, "create one"),
    ],
)
def test_routes_hold_until_an_accepted_unexpired_filing(filings: list[FilingFacts], ok: bool, words: str) -> None:
    m = move(pi=200_000)
    hold = hold_for(decide(m, RULES), m, filings, NOW)
    assert hold.ok is ok
    assert words in hold.reason


def test_deny_holds_with_reasons() -> None:
    m = move(level=Level.CORE)
    hold = hold_for(decide(m, RULES), m, [_filing(FilingState.ACCEPTED)], NOW)
    assert not hold.ok
    assert "core data" in hold.reason


def test_may_read_core_only_at_home() -> None:
    core = Classification(level=Level.CORE)
    ex = Exporter(name="bj-ai")
    assert may_read("n", core, BJ, [], BJ, ex, RULES).route == A
    assert may_read("n", core, BJ, [TJ], TJ, ex, RULES).route == D
    general = Classification(pi_count=5)
    assert may_read("n", general, BJ, [TJ], TJ, ex, RULES).route == A
    assert may_read("n", general, BJ, [], SG, ex, RULES).route == E
    assert may_read("n", Classification(pi_count=200_000), BJ, [SG], SG, ex, RULES).route == A


def test_grading_matrix_and_inheritance() -> None:
    assert grade_by_harm({Harmed.NATIONAL_SECURITY: Severity.ORDINARY}, RULES.grading_matrix) == Level.IMPORTANT
    assert grade_by_harm({Harmed.PUBLIC_INTEREST: Severity.ESPECIALLY_SERIOUS}, RULES.grading_matrix) == Level.CORE
    assert grade_by_harm({Harmed.INDIVIDUAL: Severity.ESPECIALLY_SERIOUS}, RULES.grading_matrix) == Level.GENERAL
    derived = inherit(
        [Classification(level=Level.IMPORTANT, pi_count=3), Classification(spi_count=2, categories=["finance"])],
        graded_by="job-1",
        graded_at=NOW,
    )
    assert derived.level == Level.IMPORTANT
    assert derived.inherited
    assert (derived.pi_count, derived.spi_count, derived.categories) == (3, 2, ["finance"])


def test_ruleset_model_is_frozen_data() -> None:
    assert isinstance(RULES, RuleSet)
    assert RULES.validity_years[Route.CERTIFICATION] == 3


@pytest.mark.parametrize(
    ("utc", "year"),
    [
        (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), 2026),  # 23:59 Beijing time
        (datetime(2026, 12, 31, 16, 0, tzinfo=UTC), 2027),  # 00:00 on 1 January in Beijing
        (datetime(2027, 1, 1, 7, 59, tzinfo=UTC), 2027),
    ],
)
def test_counting_years_are_beijing_calendar_years(utc: datetime, year: int) -> None:
    assert counting_year(utc) == year


def test_the_ruleset_hash_follows_its_content_not_its_layout() -> None:
    text = (Path(__file__).resolve().parents[2] / "src/suanli/datachain/rules/ruleset.yaml").read_text()
    same = parse_ruleset("# a comment the hash ignores\n" + text)
    changed = parse_ruleset(text.replace("pi_exempt_below: 100000", "pi_exempt_below: 100001"))
    plain = parse_ruleset(text)
    assert len(plain.sha256) == 64
    assert same.sha256 == plain.sha256
    assert changed.sha256 != plain.sha256


def test_the_network_file_names_the_rule_set(tmp_path: Path) -> None:
    shipped = (Path(__file__).resolve().parents[2] / "src/suanli/datachain/rules/ruleset.yaml").read_text()
    own = tmp_path / "rules.yaml"
    own.write_text(shipped.replace('version: "2024.2"', 'version: "ops-7"').replace("100000 ", "50000 "))
    network = parse_network(f"data_rules: {{ruleset: {own}}}\n")
    rules = ruleset_of(network.data_rules)
    assert rules.version == "ops-7"
    assert rules.thresholds.pi_exempt_below == 50_000
    assert rules.negative_list("tianjin-ftz") is not None  # the shipped lists, as none were named
    d = decide(move(pi=60_000), rules)
    assert (d.route, d.ruleset_version, d.ruleset_sha256) == (SC, "ops-7", rules.sha256)
    assert rules.sha256 != RULES.sha256
    assert ruleset_of(parse_network("regions: []\n").data_rules) is default_ruleset()
    with pytest.raises(SpecError, match="no rule file"):
        ruleset_of(parse_network(f"data_rules: {{ruleset: {tmp_path / 'missing.yaml'}}}\n").data_rules)


BASE = Classification(level=Level.IMPORTANT, pi_count=100, spi_count=10, categories=["finance", "transport"])


@pytest.mark.parametrize(
    ("change", "lowers"),
    [
        ({}, []),
        ({"level": Level.CORE, "pi_count": 200, "categories": ["finance", "transport", "health"]}, []),
        ({"level": Level.GENERAL}, ["level important → general"]),
        ({"categories": ["finance"]}, ["categories dropped: transport"]),
        ({"categories": ["finance.payments", "transport"]}, ["categories dropped: finance"]),
        ({"pi_count": 99}, ["PI 100 → 99"]),
        ({"spi_count": 0, "level": Level.CORE}, ["SPI 10 → 0"]),
        ({"return_flow": True}, ["claims a return flow (X2b)"]),
    ],
)
def test_what_a_grading_lowers(change: dict[str, Any], lowers: list[str]) -> None:
    assert lowered(BASE, BASE.model_copy(update=change)) == lowers
