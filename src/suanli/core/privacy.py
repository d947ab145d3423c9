"""Differential-privacy budgets and the arithmetic of spending them.

A dataset's owner sets its budget ``(ε, δ)``; every DP release or DP-trained federated job spends
part of it; a spend that would go past what is left is refused with the numbers
(:class:`BudgetExceeded`). Spends compose by basic composition (ε and δ add up), which is valid
for any mix of mechanisms and never under-counts.

Federated updates follow DP-SGD's recipe per round: each site clips its update's L2 norm to
``clip`` and adds Gaussian noise of standard deviation ``noise_multiplier × clip``
(:func:`privatize`). The cost of ``rounds`` such rounds is accounted in zero-concentrated DP
(Bun & Steinke 2016: a Gaussian mechanism with multiplier ``z`` is ``1/(2z²)``-zCDP, and zCDP
adds up over rounds) and converted to ``(ε, δ)`` once (:func:`gaussian_rounds_epsilon`), which
is much tighter than adding up per-round ε.

Pure: the noise comes from an injected ``random.Random`` (a ``SystemRandom`` in production).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from suanli.core.errors import SuanliError

#: A spend's ε and δ are compared with a little slack, so that spending exactly what is left works.
_SLACK = 1e-12


@dataclass(frozen=True)
class Spend:
    """One use of a dataset's budget."""

    epsilon: float
    delta: float = 0.0

    def __post_init__(self) -> None:
        if not (self.epsilon >= 0 and math.isfinite(self.epsilon)):
            raise ValueError(f"ε must be a finite number ≥ 0, not {self.epsilon}")
        if not 0 <= self.delta < 1:
            raise ValueError(f"δ must be in [0, 1), not {self.delta}")


@dataclass(frozen=True)
class Budget:
    """A dataset's total privacy budget, as its owner set it."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        Spend(self.epsilon, self.delta)  # the same bounds


class BudgetExceeded(SuanliError):
    """A spend would go past the dataset's remaining budget; the message has the numbers."""

    def __init__(self, dataset: str, budget: Budget, spent: Spend, asked: Spend) -> None:
        self.dataset, self.budget, self.spent, self.asked = dataset, budget, spent, asked
        left = remaining(budget, [spent])
        super().__init__(
            f"dataset {dataset}'s privacy budget is ε={budget.epsilon:g}, δ={budget.delta:g}; "
            f"ε={spent.epsilon:g}, δ={spent.delta:g} is spent, leaving ε={left.epsilon:g}, δ={left.delta:g}, "
            f"and this asks for ε={asked.epsilon:g}, δ={asked.delta:g}. Ask for less, or ask the owner "
            f"to raise the budget"
        )


def total(spends: Iterable[Spend]) -> Spend:
    """Basic composition: the ε's and δ's add up."""
    eps = delta = 0.0
    for s in spends:
        eps += s.epsilon
        delta += s.delta
    return Spend(eps, min(delta, 1 - 1e-15))


def remaining(budget: Budget, spends: Iterable[Spend]) -> Spend:
    """What is left of ``budget`` after ``spends`` (never below zero)."""
    t = total(spends)
    return Spend(max(0.0, budget.epsilon - t.epsilon), max(0.0, budget.delta - t.delta))


def check(dataset: str, budget: Budget | None, spends: Sequence[Spend], asked: Spend) -> None:
    """Refuse ``asked`` when it would pass the budget. A dataset with no budget has none to spend
    (fail closed): its owner must set one before any DP use."""
    if budget is None:
        raise BudgetExceeded(dataset, Budget(0.0, 0.0), total(spends), asked)
    spent = total(spends)
    if spent.epsilon + asked.epsilon > budget.epsilon + _SLACK or spent.delta + asked.delta > budget.delta + _SLACK:
        raise BudgetExceeded(dataset, budget, spent, asked)


def gaussian_rounds_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """ε of ``rounds`` Gaussian releases of sensitivity 1 with noise ``noise_multiplier`` at ``delta``.

    zCDP: ρ = rounds / (2 z²); then ε = ρ + 2 √(ρ ln(1/δ)) (Bun & Steinke, Prop. 1.3).
    """
    if noise_multiplier <= 0 or rounds < 0 or not 0 < delta < 1:
        raise ValueError("needs noise_multiplier > 0, rounds ≥ 0 and 0 < δ < 1")
    rho = rounds / (2 * noise_multiplier**2)
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def clip(update: Sequence[float], bound: float) -> list[float]:
    """Scale ``update`` down so its L2 norm is at most ``bound`` (DP-SGD's per-example clipping,
    here per site and round)."""
    norm = math.sqrt(sum(v * v for v in update))
    factor = min(1.0, bound / norm) if norm > 0 else 1.0
    return [v * factor for v in update]


def privatize(update: Sequence[float], bound: float, noise_multiplier: float, rng: random.Random) -> list[float]:
    """Clip, then add N(0, (noise_multiplier × bound)²) to every coordinate."""
    sigma = noise_multiplier * bound
    return [v + rng.gauss(0.0, sigma) for v in clip(update, bound)]
