"""Files at rest (issue 16, item 9): $SUANLI_HOME is 0700, the database 0600, an agent's work dir
0700; one found open to others is narrowed with a warning, and refused only when it cannot be."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.agent import Agent
from suanli.agent.backends import FakeBackend
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.filemodes import OpenToOthers, private_dir
from tests.unit.test_agent_loop import FakeClient


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most machines have (022): files and folders readable by everyone by default."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def start_server(home: Path) -> None:
    control = ControlPlane(Settings(home=home))
    try:
        control.migrate()  # writes the database (and its WAL)
    finally:
        control.close()


def test_a_new_home_and_database_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    control = ControlPlane(Settings(home=home))
    try:
        control.migrate()
        siblings = {p.name: mode(p) for p in home.glob("suanli.db-*")}  # while the server has it open
    finally:
        control.close()
    assert mode(home) == 0o700
    assert mode(home / "suanli.db") == 0o600
    assert siblings == {"suanli.db-wal": 0o600, "suanli.db-shm": 0o600}


def test_an_existing_home_open_to_others_is_narrowed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    db = home / "suanli.db"
    db.touch()
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="suanli"):
        start_server(home)
    assert mode(home) == 0o700
    assert mode(db) == 0o600
    assert f"the directory {home} was open to other users (mode 0755)" in caplog.text
    assert f"the file {db} was open to other users (mode 0644)" in caplog.text


def test_a_home_that_cannot_be_narrowed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    home.chmod(0o755)

    def not_yours(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", not_yours)
    with pytest.raises(OpenToOthers, match=r"open to other users \(mode 0755\).*chmod 700"):
        private_dir(home)


def test_an_agents_work_dir_is_private(tmp_path: Path) -> None:
    fresh = tmp_path / "agent"
    Agent(FakeClient(), "s", FakeBackend(), fresh, agent_id="a")
    assert mode(fresh) == 0o700
    old = tmp_path / "old-agent"
    old.mkdir()
    old.chmod(0o775)
    Agent(FakeClient(), "s", FakeBackend(), old, agent_id="a")
    # Nobody else may list or write it; passing through stays (jobs run as other users need it).
    assert mode(old) == 0o711
