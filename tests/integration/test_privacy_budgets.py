"""Privacy budgets per dataset: the owner sets (ε, δ); a DP query spends from it first, on the
ledger; one past what is left is refused with the numbers and releases nothing."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.datachain.manifest import MiB
from suanli.federation.release import count_measurement, release_with_budget
from suanli.federation.rounds import FederatedAggregator, FederatedClient
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net
from tests.integration.test_datachain import ledger_report, make_file


def test_a_dp_query_past_the_budget_is_refused_and_spends_are_on_the_ledger(net: Net) -> None:
    c = net.client
    src = make_file(net.tmp / "visits.bin", 4 * MiB)
    c.register_dataset(
        name="visits",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        chunk_mib=4,
        classification={"level": "general", "pi_count": 500},
    )
    c.create_user("alice", role="member", tenant="bj-ai")
    c.create_tenant("tj-auto", home_region="tianjin")
    c.create_user("bob", role="member", tenant="tj-auto")
    alice = Client(c.server, token=c.create_token(user="alice").token)
    bob = Client(c.server, token=c.create_token(user="bob").token)
    values = [float(v % 7) for v in range(500)]
    try:
        # No budget yet: nothing may be spent (fail closed).
        with pytest.raises(ApiError) as none_set:
            release_with_budget(alice, "visits", count_measurement(0.5), values)
        assert none_set.value.status == 409
        assert "budget is ε=0" in str(none_set.value)

        out = alice.set_privacy_budget("visits", 1.0, 1e-6)
        assert out["budget"] == {"epsilon": 1.0, "delta": 1e-6}
        first = release_with_budget(alice, "visits", count_measurement(0.6), values, note="visits per day")
        assert abs(first.value - 500) < 60
        assert first.spend.epsilon == pytest.approx(0.6, rel=1e-3)

        with pytest.raises(ApiError) as refused:
            release_with_budget(alice, "visits", count_measurement(0.6), values)
        assert refused.value.status == 409
        text = str(refused.value)
        for part in ("budget is ε=1, δ=1e-06", "leaving ε=0.4", "asks for ε=0.6"):
            assert part in text

        shown = alice.privacy("visits")
        assert shown["remaining"]["epsilon"] == pytest.approx(0.4, rel=1e-3)
        assert [s["purpose"] for s in shown["spends"]] == ["query"]
        # Another tenant neither sees nor spends it; it answers like a missing dataset.
        for call in (lambda: bob.privacy("visits"), lambda: bob.spend_privacy("visits", 0.1)):
            with pytest.raises(ApiError) as hidden:
                call()
            assert hidden.value.status == 404
        with pytest.raises(ApiError) as not_owner:
            bob.set_privacy_budget("visits", 100.0, 0.1)
        assert not_owner.value.status == 404
    finally:
        alice.close()
        bob.close()

    report, entries = ledger_report(c)
    assert report.ok
    spends = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "privacy.spend"]
    assert len(spends) == 1
    assert spends[0]["dataset"] == "visits"
    assert spends[0]["actor"] == "alice"
    assert spends[0]["epsilon"] == pytest.approx(0.6, rel=1e-3)
    assert [json.loads(e["data"])["body"]["epsilon"] for e in entries if e["kind"] == "privacy.budget"] == [1.0]


def test_the_cli_sets_and_shows_a_budget(net: Net) -> None:
    c = net.client
    src = make_file(net.tmp / "notes.bin", 4 * MiB)
    c.register_dataset(
        name="notes",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        chunk_mib=4,
        classification={"level": "general", "pi_count": 500},
    )
    token = c.create_token(user="admin").token
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["--server", c.server, "--token", token, "data", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "none set" in cli("budget", "notes")
    shown = json.loads(cli("budget", "notes", "--epsilon", "2", "--delta", "1e-5", "--json"))
    assert shown["budget"] == {"epsilon": 2.0, "delta": 1e-5}
    assert "ledger entry" in cli("spend", "notes", "--epsilon", "0.5")
    said = cli("budget", "notes")
    assert "left ε=1.5" in said
    result = runner.invoke(app, ["--server", c.server, "--token", token, "data", "spend", "notes", "--epsilon", "5"])
    assert result.exit_code != 0
    assert "leaving ε=1.5" in result.output


def test_the_data_page_shows_budget_left_and_federated_uses_in_both_languages(net: Net) -> None:
    c = net.client
    for name, site in (("ward-a", "beijing"), ("ward-b", "ningxia")):
        src = make_file(net.tmp / f"{name}.bin", 4 * MiB)
        c.register_dataset(
            name=name, owner="bj-ai", home_site=site, path=str(src), chunk_mib=4, classification={"level": "general"}
        )
    c.create_user("carol", role="member", tenant="bj-ai")
    token = c.create_token(user="carol").token
    carol = Client(c.server, token=token)
    try:
        carol.set_privacy_budget("ward-a", 3.0, 1e-5)
        carol.spend_privacy("ward-a", 0.5)
        run = carol.create_federation(datasets=["ward-a", "ward-b"], rounds=1, params=[0.0])
        clients = [FederatedClient(carol, run.id, d, lambda p, data: ([data], 1), 1.0) for d in ("ward-a", "ward-b")]
        agg = FederatedAggregator(carol, run.id)
        while agg.final is None or agg.final.phase != "done":
            assert any([c.step() for c in clients] + [agg.step()])
    finally:
        carol.close()
    for lang, none_set in (("en", "no budget set"), ("zh", "未设隐私预算")):
        with httpx.Client(base_url=net.url, cookies={"suanli_token": token, "suanli_lang": lang}) as page:
            html = page.get("/data").text
        rows = {name: html[html.index(f">{name}<") :] for name in ("ward-a", "ward-b")}
        left = [r[r.index('data-testid="privacy-left"') :] for r in rows.values()]
        uses = [r[r.index('data-testid="federated-uses"') :] for r in rows.values()]
        assert left[0].split("<")[0].endswith("ε 2.5 / 3, δ 1e-05")
        assert left[1].split("<")[0].endswith(none_set)
        assert [u.split("<")[0].endswith(">1") for u in uses] == [True, True]


def test_spends_at_once_cannot_both_take_the_last_of_a_budget(net: Net) -> None:
    c = net.client
    src = make_file(net.tmp / "race.bin", 4 * MiB)
    c.register_dataset(
        name="race", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification={"level": "general"}
    )
    c.set_privacy_budget("race", 1.0, 1e-6)
    token = c.create_token(user="admin").token
    barrier = threading.Barrier(6)

    def spend() -> int:
        with Client(c.server, token=token) as mine:
            barrier.wait()
            try:
                mine.spend_privacy("race", 0.6)
            except ApiError as exc:
                return exc.status
            return 201

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(lambda _: spend(), range(6)))
    assert statuses == [201, 409, 409, 409, 409, 409]
    assert c.privacy("race")["spent"]["epsilon"] == pytest.approx(0.6)
