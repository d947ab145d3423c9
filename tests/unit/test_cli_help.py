"""Help reads as prose at any width (C8): no hard line breaks from docstrings, flags show no
``<bool>``, options name their value, every option and argument of ``up`` and ``data check``
has help."""

from __future__ import annotations

import re

import pytest

import suanli.__main__  # noqa: F401 (registers up, down, server, agent)
from suanli.cli.testing import Harness


@pytest.mark.parametrize("args", [["-h"], ["jobs", "-h"], ["usage", "-h"], ["login", "-h"], ["up", "-h"]])
def test_help_has_no_type_labels_and_no_broken_sentences(args: list[str]) -> None:
    result = Harness().run(*args, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert not re.search(r"<(bool|str|int|float|path)>", out), out
    for broken in ("every \n", "in the last\n", "CPU-seconds,\n", "server\n"):
        assert broken not in out, (broken, out)


def test_root_help_lists_each_command_on_one_line_when_it_fits() -> None:
    out = Harness().run("-h", env={"COLUMNS": "400"}).stdout
    jobs = next(line for line in out.splitlines() if "│ jobs " in line)
    assert "finished in the last 24 hours, oldest first." in jobs
    usage = next(line for line in out.splitlines() if "│ usage " in line)
    assert "CPU-seconds, memory GiB-hours" in usage


def test_options_name_their_values_and_arguments_have_help() -> None:
    jobs = Harness().run("jobs", "-h", env={"COLUMNS": "200"}).stdout
    assert re.search(r"--site\s+SITE\s", jobs)
    assert re.search(r"--limit\s+-n\s+N\s", jobs)
    up = Harness().run("up", "-h", env={"COLUMNS": "200"}).stdout
    assert re.search(r"--verbose\s+-v\s+Log debug lines", up)
    check = Harness().run("data", "check", "-h", env={"COLUMNS": "200"}).stdout
    assert "DATASET" in check
    assert "The dataset's name." in check
