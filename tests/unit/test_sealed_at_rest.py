"""Which data a site stores sealed: important and above, and anything with personal information."""

from __future__ import annotations

import pytest

from suanli.core.datasets import Classification, Level


@pytest.mark.parametrize(
    ("level", "pi", "spi", "sealed"),
    [
        (Level.GENERAL, 0, 0, False),
        (Level.GENERAL, 1, 0, True),
        (Level.GENERAL, 0, 1, True),
        (Level.IMPORTANT, 0, 0, True),
        (Level.CORE, 0, 0, True),
    ],
)
def test_sealed_at_rest(level: Level, pi: int, spi: int, sealed: bool) -> None:
    assert Classification(level=level, pi_count=pi, spi_count=spi).sealed_at_rest is sealed
