"""Federated runs through the front desk: consent, masked rounds, a dropped client, DP spends,
and the record of every round — with no dataset bytes moving."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from suanli.core.secagg import SCALE, decode, unpack
from suanli.datachain.manifest import MiB
from suanli.federation.rounds import FederatedAggregator, FederatedClient
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net
from tests.integration.test_datachain import ledger_report, make_file

#: Each site's data: vectors whose mean the run learns (FedAvg of site means = global mean).
DATA = {
    "bj-clinic": [[1.0, 2.0], [3.0, 4.0]],
    "tj-clinic": [[10.0, -2.0]],
    "sg-clinic": [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0]],
}
SITES = {"bj-clinic": "beijing", "tj-clinic": "tianjin-gaocun", "sg-clinic": "ningxia"}


def mean_fit(params: Sequence[float], data: list[list[float]]) -> tuple[list[float], int]:
    return [sum(col) / len(data) for col in zip(*data, strict=True)], len(data)


@dataclass
class Fed:
    net: Net
    alice: Client  # bj-ai, which runs the federation
    bob: Client  # tj-auto, which owns tj-clinic


@pytest.fixture
def fed(net: Net) -> Iterator[Fed]:
    c = net.client
    c.create_tenant("tj-auto", home_region="tianjin")
    c.create_user("alice", role="member", tenant="bj-ai")
    c.create_user("bob", role="member", tenant="tj-auto")
    for name, site in SITES.items():
        src = make_file(net.tmp / f"{name}.bin", 4 * MiB)
        owner = "tj-auto" if name == "tj-clinic" else "bj-ai"
        c.register_dataset(
            name=name, owner=owner, home_site=site, path=str(src), chunk_mib=4, classification={"level": "general"}
        )
    alice = Client(c.server, token=c.create_token(user="alice").token)
    bob = Client(c.server, token=c.create_token(user="bob").token)
    try:
        yield Fed(net, alice, bob)
    finally:
        alice.close()
        bob.close()


def _drive(clients: list[FederatedClient], agg: FederatedAggregator, *, deadline: bool = False) -> None:
    for _ in range(50):
        moved = [c.step() for c in clients] + [agg.step(deadline)]
        if not any(moved):
            return


def test_rounds_are_masked_survive_a_dropout_and_only_the_aggregate_leaves(fed: Fed) -> None:
    with pytest.raises(ApiError) as no_consent:
        fed.alice.create_federation(datasets=list(DATA), rounds=2, params=[0.0, 0.0])
    assert no_consent.value.status == 404
    assert "suanli data federate tj-clinic --tenant bj-ai" in str(no_consent.value)
    fed.bob.grant_federated("tj-clinic", "bj-ai")

    run = fed.alice.create_federation(datasets=list(DATA), rounds=2, params=[0.0, 0.0])
    # tj-clinic's client runs with its owner's credentials; the others with bj-ai's.
    clients = [FederatedClient(fed.bob if d == "tj-clinic" else fed.alice, run.id, d, mean_fit, DATA[d]) for d in DATA]
    agg = FederatedAggregator(fed.alice, run.id)

    # Round 0, stepped by hand so we can look at what the front desk holds mid-round.
    for c in clients:
        assert c.step()  # keys
    assert agg.step()  # freeze keys
    for c in clients:
        assert c.step()  # masked updates
    held = fed.alice.federation_messages(run.id)
    for d, rows in DATA.items():
        site_mean, n = mean_fit([], rows)
        plain = [n * v for v in site_mean]  # what the site adds to the sum
        seen = decode(unpack(held.masked[d], 2))
        assert all(abs(s - p) > 1.0 for s, p in zip(seen, plain, strict=True))
    assert agg.step()  # close the round: nobody dropped
    assert agg.step()  # aggregate
    state = fed.alice.federation(run.id)
    assert (state.round, state.phase) == (1, "keys")
    everything = [row for rows in DATA.values() for row in rows]
    assert state.params == pytest.approx(mean_fit([], everything)[0], abs=4 / SCALE)

    # Round 1: sg-clinic publishes its key, then its site goes dark.
    survivors, silent = clients[:2], clients[2]
    for c in clients:
        c.step()
    agg.step()
    _drive(survivors, agg)
    assert fed.alice.federation(run.id).phase == "updates"  # waiting for sg-clinic
    _drive(survivors, agg, deadline=True)
    done = fed.alice.federation(run.id)
    assert done.phase == "done"
    two = DATA["bj-clinic"] + DATA["tj-clinic"]
    assert done.params == pytest.approx(mean_fit([], two)[0], abs=4 / SCALE)
    with pytest.raises(ApiError) as late:
        silent.sdk.federation_message(run.id, round=1, client="sg-clinic", kind="update", masked="00" * 16, n=1)
    assert late.value.status == 409

    report, entries = ledger_report(fed.net.client)
    assert report.ok
    rounds = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "federated.round"]
    assert [(r["round"], r["participants"], r["dropped"]) for r in rounds] == [
        (0, sorted(DATA), []),
        (1, ["bj-clinic", "tj-clinic"], ["sg-clinic"]),
    ]
    assert rounds[0]["sizes"] == {"bj-clinic": 2, "sg-clinic": 3, "tj-clinic": 1}
    assert all(len(r["aggregate_sha256"]) == 64 for r in rounds)
    assert fed.alice.federation_raw_bytes_moved(run.id) == 0
    assert fed.alice.privacy("bj-clinic")["federated_uses"] == 1


def test_a_wrong_aggregate_is_refused(fed: Fed) -> None:
    run = fed.alice.create_federation(datasets=["bj-clinic", "sg-clinic"], rounds=1, params=[0.0, 0.0])
    clients = [FederatedClient(fed.alice, run.id, d, mean_fit, DATA[d]) for d in ("bj-clinic", "sg-clinic")]
    agg = FederatedAggregator(fed.alice, run.id)
    for _ in range(2):
        for c in clients:
            c.step()
        agg.step()
    assert fed.alice.federation(run.id).phase == "reveals"
    with pytest.raises(ApiError) as wrong:
        fed.alice.aggregate_federation(run.id, 0, [100.0, 100.0])
    assert wrong.value.status == 422
    assert agg.step()  # the right one is taken
    assert fed.alice.federation(run.id).phase == "done"


def test_dp_rounds_spend_every_datasets_budget_or_are_refused_with_the_numbers(fed: Fed) -> None:
    dp = {"clip": 1.0, "noise_multiplier": 4.0, "delta": 1e-6}
    fed.alice.set_privacy_budget("bj-clinic", 10.0, 1e-5)
    fed.alice.set_privacy_budget("sg-clinic", 1.0, 1e-5)
    with pytest.raises(ApiError) as refused:
        fed.alice.create_federation(datasets=["bj-clinic", "sg-clinic"], rounds=5, params=[0.0, 0.0], dp=dp)
    assert refused.value.status == 409
    assert "dataset sg-clinic's privacy budget is ε=1" in str(refused.value)
    assert fed.alice.privacy("bj-clinic")["spends"] == []  # nothing spent by a refused run

    fed.alice.set_privacy_budget("sg-clinic", 10.0, 1e-5)
    run = fed.alice.create_federation(datasets=["bj-clinic", "sg-clinic"], rounds=5, params=[0.0, 0.0], dp=dp)
    assert 1.0 < run.epsilon_per_dataset < 10.0
    for name in ("bj-clinic", "sg-clinic"):
        spends = fed.alice.privacy(name)["spends"]
        assert [(s["purpose"], s["job_id"]) for s in spends] == [("federated", run.id)]
        assert spends[0]["epsilon"] == pytest.approx(run.epsilon_per_dataset)
    clients = [
        FederatedClient(fed.alice, run.id, d, mean_fit, DATA[d], rng=random.Random(3))
        for d in ("bj-clinic", "sg-clinic")
    ]
    agg = FederatedAggregator(fed.alice, run.id)
    _drive(clients, agg)
    assert fed.alice.federation(run.id).phase == "done"
