"""A federated run's two roles, as they run inside jobs: a client at each dataset's site and one
aggregator. Both reach the front desk only over HTTP (``suanli.sdk.Client``), outward.

The user's code is two functions:

- ``fit(params, data) -> (params, n)``: train from the global parameters on this site's data;
  return the new parameters and how many examples made them. For FedProx, ``fit`` may take a
  third argument, ``mu``, and add ``suanli.core.federated.proximal_gradient`` to its gradients.
- ``evaluate(params, data) -> dict``: metrics of the final model on this site's data. They stay at
  the site (the job's own output); only the aggregate leaves.

Each role is a step machine: ``step()`` does the next thing the run's phase allows and says
whether it did anything, so tests and benches drive a whole run deterministically, and a job
drives it with :func:`run` (poll, then step). The aggregator's ``step(deadline=True)`` stops
waiting for missing clients: a client that published a key but sent no update is dropped, and
the survivors' revealed seeds remove its masks.
"""

from __future__ import annotations

import inspect
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from suanli.core.api_data import FederationOut
from suanli.core.federated import next_params, weighted_delta
from suanli.core.privacy import privatize
from suanli.core.secagg import Participant, pack
from suanli.sdk import Client

FitFn = Callable[..., tuple[Sequence[float], int]]


@dataclass
class FederatedClient:
    """One dataset's client: it trains at the dataset's site and sends only masked updates."""

    sdk: Client
    run_id: str
    dataset: str
    fit: FitFn
    data: Any
    rng: random.Random = field(default_factory=random.SystemRandom)
    _participant: Participant | None = None
    _keyed: int = -1
    _sent: int = -1
    _revealed: int = -1
    final: FederationOut | None = None

    def _fit(self, fed: FederationOut) -> tuple[list[float], int]:
        takes_mu = len(inspect.signature(self.fit).parameters) >= 3
        params, n = self.fit(list(fed.params), self.data, fed.mu) if takes_mu else self.fit(list(fed.params), self.data)
        return [float(p) for p in params], int(n)

    def update_for(self, fed: FederationOut) -> tuple[list[float], int]:
        """What this site adds to the round's sum: ``n · (new − global)``; with DP, the unweighted
        delta clipped and noised (weight 1, since a weight would scale the sensitivity)."""
        new, n = self._fit(fed)
        if fed.dp is None:
            return weighted_delta(new, fed.params, n), n
        delta = weighted_delta(new, fed.params, 1)
        return privatize(delta, fed.dp.clip, fed.dp.noise_multiplier, self.rng), 1

    def step(self) -> bool:
        fed = self.sdk.federation(self.run_id, client=self.dataset)
        r = fed.round
        if fed.phase == "done":
            self.final = fed
            return False
        if fed.phase == "keys" and self._keyed != r:
            self._participant = Participant(self.dataset, f"{self.run_id}/{r}")
            key = self._participant.public_key().hex()
            self.sdk.federation_message(self.run_id, round=r, client=self.dataset, kind="key", key=key)
            self._keyed = r
            return True
        if self._participant is None or self._keyed != r or self.dataset not in fed.keys:
            return False
        peers = {c: bytes.fromhex(k) for c, k in fed.keys.items()}
        if fed.phase == "updates" and self._sent != r:
            update, n = self.update_for(fed)
            masked = pack(self._participant.mask(update, peers))
            self.sdk.federation_message(self.run_id, round=r, client=self.dataset, kind="update", masked=masked, n=n)
            self._sent = r
            return True
        if fed.phase == "reveals" and fed.dropped and self._sent == r and self._revealed != r:
            seeds = {d: s.hex() for d, s in self._participant.reveal_for(fed.dropped, peers).items()}
            self.sdk.federation_message(self.run_id, round=r, client=self.dataset, kind="reveal", seeds=seeds)
            self._revealed = r
            return True
        return False


@dataclass
class FederatedAggregator:
    """The run's aggregator: it sees masked updates and their sum, and posts the new global model."""

    sdk: Client
    run_id: str
    final: FederationOut | None = None

    def step(self, deadline: bool = False) -> bool:
        """Move the round on when everyone expected has spoken, or when ``deadline`` says to stop
        waiting for the rest."""
        fed = self.sdk.federation(self.run_id)
        if fed.phase == "done":
            self.final = fed
            return False
        msgs = self.sdk.federation_messages(self.run_id)
        r = fed.round
        if fed.phase == "keys" and (len(msgs.keys) == len(fed.datasets) or (deadline and len(msgs.keys) >= 2)):
            self.sdk.advance_federation(self.run_id, r, "updates")
            return True
        if fed.phase == "updates" and (len(msgs.masked) == len(msgs.keys) or (deadline and msgs.masked)):
            self.sdk.advance_federation(self.run_id, r, "reveals")
            return True
        if fed.phase == "reveals":
            dropped = set(msgs.keys) - set(msgs.masked)
            if any(not dropped <= set(msgs.reveals.get(s, {})) for s in msgs.masked):
                return False  # survivors still revealing
            params = next_params(self.run_id, fed.params, msgs)
            self.final = self.sdk.aggregate_federation(self.run_id, r, params)
            return True
        return False


def run(step: Callable[[bool], bool], done: Callable[[], bool], *, wait_s: float = 30.0, poll_s: float = 0.5) -> None:
    """Drive a role inside a job: step until done; after ``wait_s`` without progress, step with
    the deadline (the aggregator then drops the silent clients)."""
    idle_since = time.monotonic()
    while not done():
        if step(time.monotonic() - idle_since > wait_s):
            idle_since = time.monotonic()
        else:
            time.sleep(poll_s)
