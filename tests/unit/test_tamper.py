"""Every attack of ``bench/tamper.py`` is detected (the bench's cases, on small ledgers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import tamper


@pytest.mark.parametrize("name", list(tamper.CASES))
def test_attack_is_detected(name: str, tmp_path: Path) -> None:
    lab = tamper.Lab.build(tmp_path, 12)
    try:
        clean = lab.verify()
        assert clean.ok, clean.problems
        assert clean.witnessed == 12
        detected, how = tamper.CASES[name](lab)
        assert detected, how
    finally:
        lab.db.dispose()
