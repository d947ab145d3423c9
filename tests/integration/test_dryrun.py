"""Dry runs through the real server: the site the scheduler would pick now, its start, price,
the cost of the time limit and the budget left, every other site's reason; nothing stored. The
estimate agrees with the bill of a job that then runs its whole time limit on a real agent."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.sdk import ApiError
from tests.integration.conftest import NETWORK, Net, start_net
from tests.integration.test_metering import running

EIGHT = "name: ft\nrun: train\nresources: {accelerators: H100:8}\ntime_limit: 1h\n"


def test_dry_run_picks_the_site_prices_the_time_limit_and_stores_nothing(net: Net) -> None:
    net.control.apply_network(
        parse_network(NETWORK.replace("home_region: beijing}", "home_region: beijing, monthly_budget_cny: 300}"))
    )
    net.fake_agent("tianjin-gaocun")
    net.fake_agent("beijing")
    plan = net.client.dry_run(parse_job_spec(EIGHT))
    assert plan.site == "tianjin-gaocun"
    assert plan.gpu_type == "H100"
    assert plan.start_estimate == net.clock.now()
    assert plan.reason == ""
    assert Decimal(plan.price_per_gpu_hour_cny or "") == 28
    assert Decimal(plan.estimated_cost_cny or "") == 8 * 28  # 8 GPUs × 1 h × 28 CNY
    assert Decimal(plan.budget_left_cny or "") == 300 - 224
    assert plan.hours == 1
    assert plan.hours_from_time_limit
    others = {s.site: s.text for s in plan.sites if not s.chosen}
    assert others == {"beijing": "beijing: A800 does not match H100", "ningxia": "ningxia: 910B does not match H100"}
    assert net.client.jobs().items == []  # nothing stored
    with net.http_as(net.admin_token) as http:
        raw = http.post("/api/v1/jobs", params={"dry_run": "true"}, json={"spec": {"run": "x", "name": "cpu"}})
    assert raw.status_code == 200
    for key in ("site", "start_estimate", "price_per_gpu_hour_cny", "estimated_cost_cny", "budget_left_cny", "sites"):
        assert key in raw.json()
    assert net.client.jobs().items == []


def test_dry_run_of_a_busy_gpu_type_gives_the_reserved_start(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    running(net, "name: all\nrun: x\nresources: {accelerators: H100:16}\ntime_limit: 2h\n")
    plan = net.client.dry_run(parse_job_spec(EIGHT))
    assert plan.site == "tianjin-gaocun"
    assert plan.start_estimate is not None
    assert 7190 <= (plan.start_estimate - net.clock.now()).total_seconds() <= 7260  # when the 2 h job ends
    assert plan.reason.startswith("no site has 8 × H100 free")


def test_dry_run_says_what_submit_would_refuse(net: Net) -> None:
    with pytest.raises(ApiError) as info:
        net.client.dry_run(parse_job_spec("run: x\nresources: {accelerators: H100:64}\n"))
    assert info.value.status == 422
    assert "no site can ever hold 64 × H100" in info.value.detail


def test_submit_dry_run_command_json_and_text(net: Net, tmp_path: Path) -> None:
    net.fake_agent("tianjin-gaocun")
    spec = tmp_path / "train.yaml"
    spec.write_text(EIGHT, encoding="utf-8")
    runner = CliRunner()
    base = ["--server", net.url, "--token", net.admin_token, "submit", "--dry-run", str(spec)]
    as_json = runner.invoke(app, [*base, "--json"], env={"COLUMNS": "200"})
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.stdout)
    for key in ("site", "start_estimate", "price_per_gpu_hour_cny", "estimated_cost_cny", "budget_left_cny"):
        assert key in plan
    text = runner.invoke(app, base, env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "Would run at tianjin-gaocun on H100, starting now" in text.stdout
    assert "Est. cost    224.00 CNY" in text.stdout
    assert "beijing: A800 does not match H100" in text.stdout
    assert net.client.jobs().items == []
    # The example the README shows: a spec with a workdir (not uploaded by a dry run).
    example = Path(__file__).resolve().parents[2] / "examples" / "train.yaml"
    shown = runner.invoke(app, [*base[:-1], str(example), "--json"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["site"] == "tianjin-gaocun"
    assert net.client.jobs().items == []


PRICED = NETWORK.replace(
    "nodes: [{name: bj-01, gpus: A800:4, cpus: 32, memory: 256}]",
    "nodes: [{name: bj-01, gpus: A800:4, cpus: 32, memory: 256}]\n    tariff: {gpu_hour: {A800: 10}, cpu_hour: 360}",
)


def test_estimate_and_bill_of_a_job_that_ran_its_time_limit_agree(tmp_path: Path) -> None:
    """A real process on a real local agent, stopped at its time limit: its bill is within 5 %
    of what the dry run said."""
    with start_net(tmp_path, PRICED) as net:
        _run_to_the_limit(net)


def _run_to_the_limit(net: Net) -> None:
    net.local_agent("beijing")
    net.cycle()
    spec = parse_job_spec("name: capped\nrun: sleep 60\nresources: {cpus: 2}\ntime_limit: 8s\n")
    plan = net.client.dry_run(spec)
    assert plan.site == "beijing"
    estimate = Decimal(plan.estimated_cost_cny or "")
    assert estimate == Decimal("1.6")  # 2 CPUs × 8 s × 360 CNY/h
    job = net.client.submit(spec)
    net.pump(lambda: net.state(job.id) not in ("PENDING", "SCHEDULED", "STARTING", "RUNNING"), timeout=60)
    billed = Decimal(net.client.job(job.id).cost_cny or "0")
    assert abs(billed - estimate) <= estimate * Decimal("0.05"), (billed, estimate)


@pytest.mark.parametrize("params", [{}, {"dry_run": "true"}])
def test_an_unknown_key_that_looks_like_a_validator_name_is_a_422(net: Net, params: dict[str, str]) -> None:
    """Found by the API fuzzer: a spec key such as 'a[b]' was taken for pydantic's wrapper name
    and the submission answered 500."""
    with net.http_as(net.admin_token) as http:
        response = http.post("/api/v1/jobs", params=params, json={"spec": {"run": "x", "a[b]": 1}})
    assert response.status_code == 422, response.text
    assert "unknown field 'a[b]'" in response.json()["detail"]
