"""Metering through the real server: usage from agents' reports, tariffs with history,
waived platform faults, invoices that add up, Prometheus metrics."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from suanli.agent.agent import Agent
from suanli.core.metering import month_of
from suanli.core.network import parse_network
from suanli.core.protocol import AttemptReport, HeartbeatRequest
from suanli.core.spec import parse_job_spec
from suanli.core.states import AttemptState
from suanli.sdk import ApiError
from suanli.sdk.agent import SiteClient
from tests.integration.conftest import NETWORK, Net


def report(
    agent: Agent, site: str, attempt_id: int, elapsed: float, state: AttemptState = AttemptState.RUNNING
) -> None:
    """What the site's agent says about an attempt, with a chosen elapsed time."""
    client = agent.client
    assert isinstance(client, SiteClient)
    request = HeartbeatRequest(
        site=site,
        agent_id=agent.agent_id,
        attempts=[AttemptReport(attempt_id=attempt_id, fencing_token=attempt_id, state=state, elapsed_s=elapsed)],
    )
    client.agent_heartbeat(request)


def running(net: Net, text: str) -> tuple[str, int]:
    job = net.client.submit(parse_job_spec(text))
    net.cycle()
    net.cycle()
    out = net.client.job(job.id)
    assert out.state.value == "RUNNING"
    return job.id, out.attempts[0].id


def test_usage_is_metered_priced_and_billed(net: Net) -> None:
    agent, _ = net.fake_agent("tianjin-gaocun")
    job_id, attempt_id = running(net, "name: ft\nrun: train\nresources: {accelerators: H100:1}\n")
    # The clock reads 09:00 UTC = 17:00 in Tianjin: a flat hour before it, at 28 CNY/GPU-hour.
    report(agent, "tianjin-gaocun", attempt_id, 3600)
    assert net.client.job(job_id).cost_cny == "28.000000"

    # The operator raises the price from 18:00 local (one hour ahead); it applies from then on.
    net.client.set_tariff("tianjin-gaocun", {"gpu_hour": {"H100": 40}}, net.clock.now() + timedelta(hours=1))
    net.clock.advance(7200)
    report(agent, "tianjin-gaocun", attempt_id, 3600 + 7200)
    assert net.client.job(job_id).cost_cny == str(Decimal("28") + Decimal("28") + Decimal("40")) + ".000000"

    [line] = net.client.usage(by="site")
    assert (line.tenant, line.site, line.gpu_type) == ("bj-ai", "tianjin-gaocun", "H100")
    assert line.gpu_seconds == 3 * 3600
    assert line.cost_cny == "96.000000"
    assert [v.tariff["gpu_hour"]["H100"] for v in net.client.tariffs("tianjin-gaocun")] == [28, 40]

    bill = net.client.invoice("bj-ai", month_of(net.clock.now()))
    assert bill.total_cny == "96.000000"
    assert sum(Decimal(x.cost_cny) for x in bill.lines) == Decimal(bill.total_cny)
    csv_text = net.client.invoice_document("bj-ai", month_of(net.clock.now()), "csv")
    assert csv_text.splitlines()[-1].split(",")[-2] == "96.000000"
    assert "<table>" in net.client.invoice_document("bj-ai", month_of(net.clock.now()), "html")

    metrics = net.client.metrics()
    assert 'suanli_revenue_cny_total{site="tianjin-gaocun"} 96.0' in metrics
    assert 'suanli_jobs{state="RUNNING"} 1.0' in metrics
    assert 'suanli_gpus{gpu_type="H100",site="tianjin-gaocun",status="used"} 1.0' in metrics


def test_a_lost_attempt_is_billed_to_its_last_report_and_waived(net: Net) -> None:
    agent, _ = net.fake_agent("tianjin-gaocun")
    job_id, attempt_id = running(net, "run: train\nresources: {accelerators: H100:2}\nmax_retries: 1\n")
    report(agent, "tianjin-gaocun", attempt_id, 1800)
    net.clock.advance(31)  # the site goes silent past its lease
    net.control.tick()
    lost = net.client.job(job_id)
    assert lost.attempts[0].state.value == "LOST"
    assert lost.cost_cny is None  # waived: the platform lost it
    [line] = net.client.usage(by="job")
    assert line.cost_cny == "0.000000"
    assert line.waived_cny == "28.000000"  # 2 GPUs × 0.5 h × 28, up to the last report only
    assert line.gpu_seconds == 3600


def test_a_real_job_is_metered_from_the_agents_clock(net: Net) -> None:
    net.local_agent("beijing")
    job = net.client.submit(parse_job_spec("run: sleep 1\nresources: {cpus: 2}\n"))
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")
    [line] = net.client.usage(by="job")
    assert line.job_id == job.id
    assert 0.5 <= line.seconds < 10  # the agent measures from the first poll that sees it running
    assert line.cpu_seconds == line.seconds * 2


def test_monthly_budget_holds_new_work_and_refuses_what_never_fits(net: Net) -> None:

    net.control.apply_network(
        parse_network(NETWORK.replace("home_region: beijing}", "home_region: beijing, monthly_budget_cny: 34}"))
    )
    agent, _ = net.fake_agent("tianjin-gaocun")
    hour = "run: x\nresources: {accelerators: H100:1}\ntime_limit: 1h\n"
    _, attempt_id = running(net, hour)
    report(agent, "tianjin-gaocun", attempt_id, 3600)  # 28 CNY spent of 34
    [state] = net.client.budgets()
    assert (state.tenant, state.spent_cny, state.state) == ("bj-ai", "28.000000", "warning")

    second = net.client.submit(parse_job_spec(hour))
    net.cycle()
    waiting = net.client.job(second.id)
    assert waiting.state.value == "PENDING"
    assert waiting.reason == "tenant bj-ai: 28.00 of 34 CNY this month; this job's estimate is 28.00 CNY"

    with pytest.raises(ApiError) as info:
        net.client.submit(parse_job_spec(hour.replace("1h", "2h")))
    assert info.value.status == 422
    assert "more than tenant bj-ai's whole monthly budget (34 CNY)" in info.value.detail
