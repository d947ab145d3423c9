"""Finding the real engines for the tests: Slurm and Ray started by scripts/engines/*.sh.

A test that needs an engine calls ``require_slurm()`` / ``require_ray()``. When the engine is not
running, the test is skipped with a loud reason on a developer's machine, and FAILS under CI
(``CI=true``): CI installs and starts both, so a missing engine there is a broken build, not a
reason to skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from functools import cache

import pytest

from suanli import adaptors

RAY_ADDRESS = os.environ.get("SUANLI_RAY_ADDRESS", "http://127.0.0.1:8265")
#: The Ray resource the test cluster names its GPUs with (scripts/engines/ray.sh).
RAY_GPU_RESOURCE = "GPU_fake"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(engine: str, why: str) -> None:
    how = f"start it with 'make engines' (root + apt) or 'scripts/engines/{engine.lower()}.sh start'"
    message = f"REAL-ENGINE TEST SKIPPED: {engine} is not running here ({why}); {how}"
    if in_ci():
        pytest.fail(f"CI=true and {engine} is not running ({why}): the engine tests must run in CI", pytrace=False)
    pytest.skip(message)


@cache
def slurm_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer"
    if out.returncode != 0:
        return out.stderr.strip() or "sinfo failed"
    if not any(s.strip().rstrip("*") in ("idle", "mix", "alloc") for s in out.stdout.split()):
        return f"no node is up (sinfo says {out.stdout.split()})"
    return None


@cache
def ray_problem() -> str | None:
    try:
        adaptors.ray_job_submission()
    except adaptors.Missing:
        return "ray[default] is not installed in this venv"
    try:
        with urllib.request.urlopen(f"{RAY_ADDRESS}/api/version", timeout=3):
            pass
    except OSError as exc:
        return f"no Ray dashboard at {RAY_ADDRESS}: {exc}"
    return None


def require_slurm() -> None:
    problem = slurm_problem()
    if problem:
        _missing("Slurm", problem)


def require_ray() -> None:
    problem = ray_problem()
    if problem:
        _missing("Ray", problem)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI, a real-engine test that skips for any reason fails instead (conftest.py of
    tests/contract and tests/engines installs this hook)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if in_ci() and report.skipped and item.get_closest_marker("engine") is not None:
        report.outcome = "failed"
        report.longrepr = f"CI=true and the real-engine test {item.nodeid} was skipped: {report.longrepr}"
