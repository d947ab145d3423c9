"""The lazy root group lists what the real commands would show, and imports none of them."""

from __future__ import annotations

import os
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
    assert (real.help or "").split("\n\n")[0] == " ".join(lazy.help.split())  # both reflowed
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


def _shell_env(**extra: str) -> dict[str, str]:
    """A user's plain shell: what earlier tests in this process set in os.environ stays out."""
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "VIRTUAL_ENV")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "SHELL": "/bin/bash", **extra}


def _complete(words: str) -> list[str]:
    """What bash completion offers for ``words`` (the last one being completed)."""
    env = _shell_env(_SUANLI_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - 1))
    code = "import suanli.__main__ as m\nm.main()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_is_on_and_sees_lazy_commands_and_their_options() -> None:
    assert _complete("suanli can") == ["cancel"]
    assert "--expand" in _complete("suanli jobs --ex")
    # The script `suanli --show-completion` prints in bash (asked for by name: --show-completion
    # itself detects the calling shell, which under make is sh).
    script = subprocess.run(
        [sys.executable, "-m", "suanli"],
        capture_output=True,
        text=True,
        env=_shell_env(_SUANLI_COMPLETE="source_bash"),
        check=False,
    )
    assert script.returncode == 0, script.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "suanli", "--help"], capture_output=True, text=True, env=_shell_env(), check=False
    )
    assert "--install-completion" in helped.stdout
    assert "--show-completion" in helped.stdout
    assert "_SUANLI_COMPLETE=complete_bash" in script.stdout
