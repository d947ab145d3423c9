"""Schemathesis against the live OpenAPI document, bounded for ``make test`` (bench/fuzz.py
runs more): no 5xx, every status declared, every body as its schema says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzzing import run_fuzz
from tests.integration.conftest import start_net

#: Cases per operation and generation mode (positive, negative): ~70 operations × 2 × this.
#: The test runs twice in ``make test`` (SQLite, then PostgreSQL), so it is kept small here.
EXAMPLES = 18


@pytest.mark.timeout(900)  # ~2,400 cases: minutes on a loaded 2-core machine
def test_fuzz_the_api(tmp_path: Path) -> None:
    with start_net(tmp_path, rate_limit_per_s=0) as net:
        report = run_fuzz(net.url, net.admin_token, examples=EXAMPLES, seed=20261127)
    summary = report.summary()
    print(f"\nfuzz: {summary}")
    assert report.operations >= 45, summary
    assert report.cases >= 2000, summary
    assert report.server_errors == 0, "\n".join(report.failures[:30])
    assert not report.failures, f"{len(report.failures)} failures:\n" + "\n".join(report.failures[:40])
