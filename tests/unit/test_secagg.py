"""Secure aggregation: the aggregator sees masked vectors whose sum is the sum of the updates."""

from __future__ import annotations

import random

import pytest

from suanli.core.secagg import LIMIT, SCALE, Participant, Round, SecAggError, decode, encode


def _round(updates: dict[str, list[float]]) -> tuple[Round, dict[str, Participant]]:
    clients = {c: Participant(c, "job-1/r3") for c in updates}
    rnd = Round("job-1/r3", length=len(next(iter(updates.values()))))
    for c, p in clients.items():
        rnd.publish(c, p.public_key())
    return rnd, clients


def test_encode_decode_round_trips_negative_values() -> None:
    assert decode(encode([-1.5, 0.0, 2.25])) == [-1.5, 0.0, 2.25]
    with pytest.raises(SecAggError, match="clip the update"):
        encode([LIMIT * 2.0])


def test_masks_cancel_and_no_individual_update_is_readable() -> None:
    rng = random.Random(7)
    updates = {c: [rng.uniform(-3, 3) for _ in range(31)] for c in ("site-a", "site-b", "site-c")}
    rnd, clients = _round(updates)
    for c, p in clients.items():
        rnd.submit(c, p.mask(updates[c], rnd.keys), n=1)
    # What the aggregator holds for each client is far from that client's update, in every
    # coordinate: decoded, the masked vector looks like uniform noise over the whole ring.
    for c, vec in rnd.masked.items():
        seen = decode(vec)
        assert all(abs(s - u) > 1.0 for s, u in zip(seen, updates[c], strict=True))
        assert vec != encode(updates[c])
        assert max(abs(s) for s in seen) > LIMIT / 1000
    total = rnd.aggregate()
    expected = [sum(updates[c][k] for c in updates) for k in range(31)]
    assert total == pytest.approx(expected, abs=4 / SCALE)


def test_the_same_update_masks_differently_with_fresh_keys() -> None:
    update = {"a": [1.0, 2.0], "b": [3.0, 4.0]}
    r1, c1 = _round(update)
    r2, c2 = _round(update)
    assert c1["a"].mask(update["a"], r1.keys) != c2["a"].mask(update["a"], r2.keys)


def test_a_dropped_client_does_not_break_the_round() -> None:
    updates = {c: [float(i + 1), -float(i)] for i, c in enumerate(("a", "b", "c", "d"))}
    rnd, clients = _round(updates)
    for c in ("a", "b", "d"):  # c publishes its key, then never sends its update
        rnd.submit(c, clients[c].mask(updates[c], rnd.keys), n=10)
    with pytest.raises(SecAggError, match="has not revealed"):
        rnd.aggregate()
    reveals = {s: clients[s].reveal_for(["c"], rnd.keys) for s in ("a", "b", "d")}
    total = rnd.aggregate(reveals)
    assert total == pytest.approx([1.0 + 2.0 + 4.0, 0.0 - 1.0 - 3.0], abs=1e-6)
    # Once declared dropped, a late update is refused: with its seeds revealed it would be bare.
    with pytest.raises(SecAggError, match="declared dropped"):
        rnd.submit("c", clients["c"].mask(updates["c"], rnd.keys))


def test_an_unknown_client_or_a_wrong_length_is_refused() -> None:
    rnd, _ = _round({"a": [1.0], "b": [2.0]})
    with pytest.raises(SecAggError, match="published no key"):
        rnd.submit("z", [1])
    with pytest.raises(SecAggError, match="needs 1"):
        rnd.submit("a", [1, 2])
