"""Load the shipped rule set and FTZ negative lists (package data), or an operator's own files."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from suanli.core.errors import Problem, SpecError
from suanli.core.network import DataRulesDecl
from suanli.core.policy import RuleSet, parse_negative_list, parse_ruleset

_PACKAGE = "suanli.datachain"
RULESET_FILE = "ruleset.yaml"
NEGATIVE_LIST_FILES = ("ftz_tianjin_2024.yaml",)


def load_ruleset(path: Path | None = None, negative_lists: tuple[Path, ...] | None = None) -> RuleSet:
    """The rule set at ``path`` (default: the shipped one) with its negative lists attached."""
    root = resources.files(_PACKAGE).joinpath("rules")
    text = path.read_text(encoding="utf-8") if path else root.joinpath(RULESET_FILE).read_text(encoding="utf-8")
    ruleset = parse_ruleset(text, str(path or RULESET_FILE))
    if negative_lists is None:
        lists = [
            parse_negative_list(root.joinpath(name).read_text(encoding="utf-8"), name) for name in NEGATIVE_LIST_FILES
        ]
    else:
        lists = [parse_negative_list(p.read_text(encoding="utf-8"), str(p)) for p in negative_lists]
    return ruleset.model_copy(update={"negative_lists": [*ruleset.negative_lists, *lists]})


@lru_cache(maxsize=1)
def default_ruleset() -> RuleSet:
    return load_ruleset()


def ruleset_of(decl: DataRulesDecl) -> RuleSet:
    """The rule set a network file's ``data_rules:`` names (the shipped one for what it leaves
    unset). A file that cannot be read is a :class:`SpecError` naming it; one that does not
    parse is refused as any rule set is."""
    if decl.ruleset is None and decl.negative_lists is None:
        return default_ruleset()
    path = Path(decl.ruleset) if decl.ruleset else None
    lists = tuple(Path(p) for p in decl.negative_lists) if decl.negative_lists is not None else None
    for field, p in [("data_rules.ruleset", path), *(("data_rules.negative_lists", q) for q in lists or ())]:
        if p is not None and not p.is_file():
            raise SpecError([Problem(field, f"no rule file at {p.resolve()}: give a path on the server's machine")])
    return load_ruleset(path, lists)
