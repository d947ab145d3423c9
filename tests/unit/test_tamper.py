"""Every attack of ``bench/tamper.py`` is detected (the bench's cases, each on a copy of one
small witnessed ledger)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import tamper


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tamper") / "clean"
    lab = tamper.Lab.build(root, 12)
    try:
        report = lab.verify()
        assert report.ok, report.problems
        assert report.witnessed == 12
    finally:
        lab.db.dispose()
    return root


@pytest.mark.parametrize("name", list(tamper.CASES))
def test_attack_is_detected(name: str, clean: Path, tmp_path: Path) -> None:
    shutil.copytree(clean, tmp_path / "lab")
    lab = tamper.Lab.open(tmp_path / "lab")
    try:
        assert lab.verify().ok
        detected, how = tamper.CASES[name](lab)
        assert detected, how
    finally:
        lab.db.dispose()
