"""DP accounting, clipping and noise, FedAvg / FedProx, and OpenDP releases."""

from __future__ import annotations

import math
import random

import pytest

from suanli.core.federated import (
    FederatedError,
    Update,
    apply_mean_delta,
    fedavg,
    proximal_gradient,
    weighted_delta,
)
from suanli.core.privacy import (
    Budget,
    BudgetExceeded,
    Spend,
    check,
    clip,
    gaussian_rounds_epsilon,
    privatize,
    remaining,
)
from suanli.federation.release import dp_count, dp_mean, dp_sum


def test_a_spend_past_the_budget_is_refused_with_the_numbers() -> None:
    budget = Budget(1.0, 1e-6)
    spent = [Spend(0.5), Spend(0.25, 1e-7)]
    check("people", budget, spent, Spend(0.25))  # exactly what is left is fine
    with pytest.raises(BudgetExceeded) as err:
        check("people", budget, spent, Spend(0.5))
    text = str(err.value)
    for part in ("ε=1, δ=1e-06", "ε=0.75", "leaving ε=0.25", "asks for ε=0.5"):
        assert part in text
    left = remaining(budget, spent)
    assert (left.epsilon, left.delta) == (0.25, pytest.approx(9e-7))


def test_no_budget_means_nothing_to_spend() -> None:
    with pytest.raises(BudgetExceeded, match="budget is ε=0"):
        check("people", None, [], Spend(0.01))


def test_zcdp_accounting_grows_like_the_square_root_of_rounds() -> None:
    one = gaussian_rounds_epsilon(1.0, 1, 1e-5)
    hundred = gaussian_rounds_epsilon(1.0, 100, 1e-5)
    assert one == pytest.approx(0.5 + 2 * math.sqrt(0.5 * math.log(1e5)))
    assert hundred < 100 * one  # far tighter than adding up per-round ε


def test_clip_and_noise() -> None:
    assert clip([3.0, 4.0], 1.0) == pytest.approx([0.6, 0.8])
    assert clip([0.3, 0.4], 1.0) == [0.3, 0.4]
    noisy = privatize([0.0] * 1000, 1.0, 2.0, random.Random(1))
    sd = math.sqrt(sum(v * v for v in noisy) / len(noisy))
    assert 1.8 < sd < 2.2


def test_fedavg_weights_by_examples_and_deltas_recover_it() -> None:
    ups = [Update((1.0, 0.0), 1), Update((4.0, 3.0), 2)]
    assert fedavg(ups) == pytest.approx([3.0, 2.0])
    glob = [0.0, 0.0]
    summed = [a + b for a, b in zip(*(weighted_delta(u.params, glob, u.n) for u in ups), strict=True)]
    assert apply_mean_delta(glob, summed, 3) == pytest.approx([3.0, 2.0])
    assert proximal_gradient([1.0, 2.0], [0.0, 0.0], 0.5) == [0.5, 1.0]
    with pytest.raises(FederatedError, match="different lengths"):
        fedavg([Update((1.0,), 1), Update((1.0, 2.0), 1)])
    with pytest.raises(FederatedError, match="no site"):
        fedavg([])


def test_opendp_releases_report_what_they_spent() -> None:
    values = [float(v % 10) for v in range(1000)]
    c = dp_count(values, 1.0)
    assert c.spend.epsilon == pytest.approx(1.0, rel=1e-3)
    assert abs(c.value - 1000) < 50
    s = dp_sum(values, 0.0, 9.0, 1.0)
    assert abs(s.value - sum(values)) < 9 * 50
    m = dp_mean(values, 0.0, 9.0, 1.0)
    assert m.spend.epsilon == pytest.approx(1.0, rel=1e-3)
    assert abs(m.value - 4.5) < 0.5
    with pytest.raises(ValueError, match="ε > 0"):
        dp_count(values, 0.0)
