"""Federated averaging: FedAvg and FedProx, on plain float vectors.

A round sends the global parameters to every site; each site's client runs the user's
``fit(params, data) -> (params, n)`` on its own data and returns new parameters and its example
count; the aggregator combines them. Clients send *deltas* (``new − global``) so that secure
aggregation (``suanli.core.secagg``) and DP clipping (``suanli.core.privacy``) act on small,
bounded vectors; :func:`apply_mean_delta` turns the weighted sum of deltas back into parameters.

FedAvg (McMahan et al. 2017) weights each site by its example count. FedProx (Li et al. 2020)
aggregates the same way; what differs is the client's objective, which adds
``μ/2 · ‖w − w_global‖²`` so that sites with skewed data (one site all one class) do not drift
far from the global model. :func:`proximal_gradient` is that term's gradient, for fit functions
to add; the strategy hands ``mu`` to every client.

Pure: no I/O, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from suanli.core.api_data import RoundMessagesOut
from suanli.core.errors import SuanliError
from suanli.core.secagg import Round, unpack


class Strategy(StrEnum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"


class FederatedError(SuanliError):
    """A round cannot be aggregated (no updates, mismatched lengths, no examples)."""


@dataclass(frozen=True)
class Update:
    """One site's result for a round: its parameters (or delta) and how many examples made it."""

    params: tuple[float, ...]
    n: int


def _check(updates: Sequence[Update]) -> int:
    if not updates:
        raise FederatedError("no site returned an update this round")
    length = len(updates[0].params)
    if any(len(u.params) != length for u in updates):
        raise FederatedError("the sites' updates have different lengths; every client must fit the same model")
    if any(u.n < 0 for u in updates) or sum(u.n for u in updates) == 0:
        raise FederatedError("the sites' example counts must be ≥ 0 and not all zero")
    return length


def fedavg(updates: Sequence[Update]) -> list[float]:
    """The example-weighted mean of the updates."""
    length = _check(updates)
    n = sum(u.n for u in updates)
    return [sum(u.params[k] * u.n for u in updates) / n for k in range(length)]


def weighted_delta(new: Sequence[float], old: Sequence[float], n: int) -> list[float]:
    """What a client sends under secure aggregation: ``n · (new − old)``, so that the masked sum
    over clients is the numerator of FedAvg's weighted mean (the counts ``n`` are sent in clear)."""
    if len(new) != len(old):
        raise FederatedError(f"fit returned {len(new)} parameters for a model of {len(old)}")
    return [n * (a - b) for a, b in zip(new, old, strict=True)]


def apply_mean_delta(params: Sequence[float], summed: Sequence[float], n: int) -> list[float]:
    """New global parameters from the sum of weighted deltas over ``n`` examples in all."""
    if n <= 0:
        raise FederatedError("no examples this round")
    out = [p + s / n for p, s in zip(params, summed, strict=True)]
    if not all(math.isfinite(v) for v in out):
        raise FederatedError("the aggregate is not finite; lower the learning rate or clip the updates")
    return out


def proximal_gradient(params: Sequence[float], global_params: Sequence[float], mu: float) -> list[float]:
    """FedProx's extra gradient ``μ (w − w_global)``; zero for FedAvg (``mu = 0``)."""
    return [mu * (w - g) for w, g in zip(params, global_params, strict=True)]


def unmasked_sum(run_id: str, length: int, msgs: RoundMessagesOut) -> list[float]:
    """The sum of a round's surviving updates from exactly what the aggregator receives: the
    published keys, the masked vectors and the seeds revealed for dropped clients
    (``core.secagg``; the round id is ``run_id/round``)."""
    rnd = Round(f"{run_id}/{msgs.round}", length)
    for c, key in msgs.keys.items():
        rnd.publish(c, bytes.fromhex(key))
    for c, vec in msgs.masked.items():
        rnd.submit(c, unpack(vec, length), msgs.sizes[c])
    reveals = {c: {d: bytes.fromhex(seed) for d, seed in got.items()} for c, got in msgs.reveals.items()}
    return rnd.aggregate(reveals)


def next_params(run_id: str, params: Sequence[float], msgs: RoundMessagesOut) -> list[float]:
    """The round's new global parameters: FedAvg's weighted mean, from the masked sum of deltas."""
    return apply_mean_delta(params, unmasked_sum(run_id, len(params), msgs), sum(msgs.sizes.values()))
