"""The docs say what the code does today: no stale "not yet" about what exists, no pointers to
files a clone does not have, and the export example's network file is one suanli reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from suanli.core.network import Zone, parse_network

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

STALE = [
    "no user authentication yet",  # D1: every request needs a token
    "does not check it on",
    "only local runs today",  # D2: Slurm and Ray sites run
    "Only `local` exists today",
    "data-movement rules (planned)",
    "Metering and bills are planned",
    "Until identities arrive",
    "All are planned",
    "makes no reservations yet",  # D3: reservations with backfill exist
    "Not tested yet: that a member of another tenant",  # D4: it is tested
    "arrive with identities",  # D8: identities have arrived
    "It is not checked yet",
]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_stale_lines(page: Path) -> None:
    text = " ".join(page.read_text(encoding="utf-8").split())
    for phrase in STALE:
        assert phrase not in text, f"{page.name}: stale line '{phrase}'"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_docs_cite_only_files_in_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for outside in ("DESIGN.md", "REGULATIONS.md"):
        assert outside not in text, f"{page.name} cites {outside}, which a clone does not have"
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", text):
        assert (page.parent / target).resolve().exists(), f"{page.name} links {target}, which does not exist"


def test_rule_ids_the_engine_cites_are_listed() -> None:
    rules = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    ruleset = (REPO / "src" / "suanli" / "datachain" / "rules" / "ruleset.yaml").read_text(encoding="utf-8")
    cited = set(re.findall(r"\b([CXLFD][0-9][a-f]?)\b", ruleset))
    assert cited, "no rule ids found in ruleset.yaml"
    listed = set(re.findall(r"^\| ([A-Z][0-9][a-f]?) \|", rules, re.MULTILINE))
    assert not cited - listed, f"rule ids the engine cites that docs/rules.md does not list: {sorted(cited - listed)}"


def test_readme_export_example_has_an_overseas_site() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The data chain") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "the data chain section gives no network file for the export flow"
    network = parse_network(block.group(1))
    site = network.site("singapore")
    assert site is not None
    assert site.zone == Zone.OVERSEAS
    assert "--to singapore" in section


def test_every_trace_the_docs_use_says_where_it_comes_from() -> None:
    """D7: a fresh clone has no ../shared/traces; each trace folder the docs cite has a row in
    docs/simulator.md's origin table (repository, commit, path, licence)."""
    cited: set[str] = set()
    for doc in PAGES:
        cited |= set(re.findall(r"shared/traces/([a-z0-9-]+)", doc.read_text(encoding="utf-8")))
    simulator = (REPO / "docs" / "simulator.md").read_text(encoding="utf-8")
    table = simulator[simulator.index("### Where the traces come from") :]
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \| github\.com/[^|]+ commit [0-9a-f]{8}", table, re.M))
    assert cited
    assert cited <= rows, f"traces cited without an origin row: {sorted(cited - rows)}"
    assert "simulator.md#where-the-traces-come-from" in (REPO / "README.md").read_text(encoding="utf-8")
