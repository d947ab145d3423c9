"""The lazy root group lists what the real commands would show, and imports none of them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
from typer.core import TyperGroup

import suanli.__main__
from suanli.cli.lazy import LazyCommand, LazyGroup


@pytest.mark.parametrize("lazy", list(LazyGroup.lazy.values()), ids=lambda c: c.name)
def test_lazy_copy_matches_the_real_command(lazy: LazyCommand) -> None:
    real = lazy.command()
    assert real.name == lazy.name
    assert real.rich_help_panel == lazy.panel  # type: ignore[attr-defined]
    assert (real.help or "").split("\n\n")[0] == lazy.help
    assert isinstance(real, TyperGroup) == lazy.group


def test_help_imports_no_command_module() -> None:
    code = "import sys, suanli.__main__ as m\ntry: m.main()\nexcept SystemExit: pass\n" + (
        "heavy = [n for n in ('httpx', 'pydantic', 'suanli.sdk', 'suanli.core.api', 'suanli.cli.views') "
        "if n in sys.modules]\nprint(heavy, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_root_group_is_lazy() -> None:
    assert isinstance(typer.main.get_command(suanli.__main__.app), LazyGroup)
