"""Differentially private releases of query results, through OpenDP.

Each function returns the noisy value and the :class:`~suanli.core.privacy.Spend` it cost, read
back from OpenDP's own privacy map (so the number on the ledger is the one OpenDP proves, not one
we computed beside it). Neighbouring datasets differ by one record (symmetric distance 1).
Values are clamped to ``[lower, upper]`` before summing, which bounds the sensitivity.

The caller spends the budget *before* releasing (the front desk refuses a spend past the budget),
so a refused query reveals nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suanli.adaptors import opendp_prelude
from suanli.core.privacy import Spend
from suanli.sdk import Client


@dataclass(frozen=True)
class Release:
    value: float
    spend: Spend


def _space(dp: Any) -> tuple[Any, Any]:
    return dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()


def _calibrated(dp: Any, make: Callable[[float], Any], epsilon: float) -> Any:
    if not epsilon > 0:
        raise ValueError(f"a release needs ε > 0, not {epsilon}")
    return make(dp.binary_search_param(make, d_in=1, d_out=epsilon))


def count_measurement(epsilon: float) -> Any:
    """An OpenDP measurement: the number of records, with Laplace noise, at ``epsilon``."""
    dp = opendp_prelude()
    return _calibrated(dp, lambda scale: _space(dp) >> dp.t.then_count() >> dp.m.then_laplace(scale=scale), epsilon)


def sum_measurement(lower: float, upper: float, epsilon: float) -> Any:
    """An OpenDP measurement: the sum of values clamped to ``[lower, upper]``, Laplace noise."""
    if not lower < upper:
        raise ValueError(f"bounds must satisfy lower < upper, not [{lower}, {upper}]")
    dp = opendp_prelude()

    def make(scale: float) -> Any:
        return (
            _space(dp)
            >> dp.t.then_clamp((float(lower), float(upper)))
            >> dp.t.then_sum()
            >> dp.m.then_laplace(scale=scale)
        )

    return _calibrated(dp, make, epsilon)


def _release(measurement: Any, values: Sequence[float]) -> Release:
    return Release(float(measurement([float(v) for v in values])), Spend(float(measurement.map(1))))


def dp_count(values: Sequence[float], epsilon: float) -> Release:
    return _release(count_measurement(epsilon), values)


def dp_sum(values: Sequence[float], lower: float, upper: float, epsilon: float) -> Release:
    return _release(sum_measurement(lower, upper, epsilon), values)


def dp_mean(values: Sequence[float], lower: float, upper: float, epsilon: float) -> Release:
    """Half of ``epsilon`` to the sum, half to the count; the mean is their ratio (clamped to the
    bounds, since a noisy count can be small)."""
    s = dp_sum(values, lower, upper, epsilon / 2)
    c = dp_count(values, epsilon / 2)
    mean = min(upper, max(lower, s.value / max(c.value, 1.0)))
    return Release(mean, Spend(s.spend.epsilon + c.spend.epsilon))


def release_with_budget(
    client: Client, dataset: str, measurement: Any, values: Sequence[float], note: str = ""
) -> Release:
    """Spend the measurement's cost from ``dataset``'s budget at the front desk, then release.

    The spend comes first and is on the ledger before any value exists; past the budget the
    front desk answers 409 with the numbers (:class:`~suanli.sdk.ApiError`) and nothing is released.
    """
    cost = Spend(float(measurement.map(1)))
    client.spend_privacy(dataset, cost.epsilon, cost.delta, purpose="query", note=note)
    return Release(float(measurement([float(v) for v in values])), cost)
