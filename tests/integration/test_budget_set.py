"""Budgets are stored (``budget_versions``, migration 0026), set by the admin through the API and
``suanli budget set``, kept with who set them, and outlive the network file: the scheduler and
the submit check read the stored value."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.sdk import Client
from suanli.sdk.errors import ApiError
from tests.integration.conftest import NETWORK, Net

WITH_BUDGET = NETWORK.replace("home_region: beijing}", "home_region: beijing, monthly_budget_cny: 34}")


def cli(net: Net, token: str, *args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--server", net.url, "--token", token, *args])
    return result.exit_code, result.output


def test_the_admin_sets_budgets_that_outlive_the_network_file(net: Net) -> None:
    net.control.apply_network(parse_network(WITH_BUDGET))
    assert [(b.tenant, b.budget_cny) for b in net.client.budgets()] == [("bj-ai", "34")]

    code, out = cli(net, net.admin_token, "budget", "set", "bj-ai", "1", "--json")
    assert code == 0, out
    change = json.loads(out)
    assert (change["tenant"], change["budget_cny"], change["set_by"]) == ("bj-ai", "1", "admin")
    net.control.apply_network(parse_network(WITH_BUDGET.replace("34", "50")))  # a restart with a new file
    assert [b.budget_cny for b in net.client.budgets()] == ["1"]  # the admin's word stands

    hour = "run: x\nresources: {accelerators: H100:1}\ntime_limit: 1h\n"
    with pytest.raises(ApiError) as info:  # 28 CNY for the hour: past the stored 1 CNY
        net.client.submit(parse_job_spec(hour))
    assert info.value.status == 422
    assert "more than tenant bj-ai's whole monthly budget (1 CNY)" in info.value.detail

    code, out = cli(net, net.admin_token, "budget", "ls")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["TENANT", "SPENT", "CNY", "BUDGET", "CNY", "USED", "STATE"]
    assert "bj-ai" in out
    assert "1.00" in out
    code, out = cli(net, net.admin_token, "budget", "set", "bj-ai", "none")
    assert (code, out.strip()) == (0, "Tenant bj-ai has no monthly budget now.")
    assert net.client.budgets() == []
    assert net.client.submit(parse_job_spec(hour)).state.value == "PENDING"

    history = [(c.budget_cny, c.set_by) for c in net.client.budget_history("bj-ai")]
    assert history == [("34", "network file"), ("1", "admin"), (None, "admin")]
    code, out = cli(net, net.admin_token, "budget", "history")
    assert code == 0, out
    assert out.splitlines()[0].split() == ["TENANT", "BUDGET", "CNY", "SET", "BY", "WHEN"]


def test_only_the_admin_sets_budgets_and_members_see_their_own(net: Net) -> None:
    net.control.apply_network(parse_network(WITH_BUDGET))
    member = net.user("alice", tenant="bj-ai")
    other = net.user("carol", tenant="acme")
    operator = net.user("olga", role="operator", sites=["beijing"])
    net.client.set_budget("acme", "99.5")
    for token in (member, operator):
        with Client(net.url, token=token) as client, pytest.raises(ApiError) as info:
            client.set_budget("bj-ai", "100000")
        assert info.value.status == 403
    with Client(net.url, token=operator) as client:
        assert client.budget_history() == []  # sees no tenant's money (PostgreSQL once answered 422)
    with Client(net.url, token=other) as client:
        assert [(b.tenant, b.budget_cny) for b in client.budgets()] == [("acme", "99.5")]
        assert [c.tenant for c in client.budget_history()] == ["acme"]
    for bad in ("lots", "-5", "NaN", "1.0000001"):
        with pytest.raises(ApiError) as info:
            net.client.set_budget("bj-ai", bad)
        assert info.value.status == 422, bad
    with pytest.raises(ApiError) as info:
        net.client.set_budget("nosuch", "5")
    assert info.value.status == 404
    assert "no tenant 'nosuch'; tenants: acme, bj-ai" in info.value.detail
    code, out = cli(net, member, "budget", "set", "bj-ai", "5")
    assert code == 1
    assert "only the network's admin sets budgets" in out or "may not do this" in out
