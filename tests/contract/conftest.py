"""Real-engine tests: under CI a skip is a failure (see tests/engines_support.py)."""

from tests.engines_support import pytest_runtest_makereport

__all__ = ["pytest_runtest_makereport"]
