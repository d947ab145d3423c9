"""Load the shipped rule set and FTZ negative lists (package data), or an operator's own files."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

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
