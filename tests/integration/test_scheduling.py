"""The network scheduler through the real server and agents: preemption with requeue,
quotas, reservations with backfill, and ``explain`` for every pending job."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from suanli.cli.main import app
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import NETWORK, Net

BIG = "run: train\nresources: {{accelerators: H100:16}}\npriority: {priority}\n"


def test_high_job_preempts_low_job_which_is_requeued(net: Net) -> None:
    _, fake = net.fake_agent("tianjin-gaocun")
    low = net.client.submit(parse_job_spec(BIG.format(priority="low")))
    net.cycle()
    net.cycle()
    assert net.state(low.id) == "RUNNING"
    high = net.client.submit(parse_job_spec(BIG.format(priority="high")))
    net.control.tick()  # nothing frees within preempt_after: the low job is preempted
    preempting = net.client.job(high.id)
    assert preempting.state.value == "PENDING"
    assert f"preempting 1 job(s) at tianjin-gaocun ({low.id})" in preempting.reason
    victim = net.client.job(low.id)
    assert victim.reason.startswith(f"preempted by high-priority job {high.id}")
    net.cycle()  # the agent gets the stop order (SIGTERM, grace) and the fake obeys
    first_attempt = net.client.job(low.id).attempts[0]
    [(stopped, grace)] = fake.cancels
    assert stopped == first_attempt.id
    assert grace == 30
    # The end is reported: PREEMPTED, requeued; the high job is placed and starts.
    net.pump(lambda: net.state(high.id) == "RUNNING", timeout=10)
    victim = net.client.job(low.id)
    assert victim.attempts[0].state.value == "PREEMPTED"
    assert victim.state.value == "PENDING"
    assert victim.attempts[0].message.startswith(f"preempted by high-priority job {high.id}")
    assert victim.reason.startswith("no site has 16 × H100 free")  # it waits again, and says why
    # When the high job ends, the low one runs again as attempt 2 (its checkpoint dir survives).
    fake.finish(net.client.job(high.id).attempts[0].id, exit_code=0)
    net.pump(lambda: net.state(low.id) == "RUNNING", timeout=10)
    again = net.client.job(low.id)
    assert again.state.value == "RUNNING"
    assert [a.number for a in again.attempts] == [1, 2]


def test_quota_makes_a_job_wait_with_that_reason(net: Net) -> None:
    net.control.apply_network(
        parse_network(
            NETWORK.replace("{name: bj-ai, home_region: beijing}", "{name: bj-ai, home_region: beijing, max_gpus: 8}")
        )
    )
    net.fake_agent("tianjin-gaocun")
    one = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:8}\n"))
    two = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:8}\n"))
    net.cycle()
    assert net.state(one.id) in {"SCHEDULED", "RUNNING"}
    waiting = net.client.job(two.id)
    assert waiting.state.value == "PENDING"
    assert waiting.reason.startswith("over quota: tenant bj-ai holds 8 GPUs and may hold 8 at once")


def test_backfill_through_the_server(net: Net) -> None:
    _, fake = net.fake_agent("tianjin-gaocun")
    net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:12}\ntime_limit: 1h\n"))
    net.cycle()
    net.cycle()
    big = net.client.submit(
        parse_job_spec("run: x\nresources: {accelerators: H100:16}\npriority: high\ntime_limit: 1h\n")
    )
    long = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:4}\ntime_limit: 3h\n"))
    short = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:4}\ntime_limit: 30m\n"))
    net.cycle()
    assert net.state(big.id) == "PENDING"
    assert net.state(short.id) in {"SCHEDULED", "RUNNING"}
    waiting = net.client.job(long.id)
    assert waiting.state.value == "PENDING"
    # Shortest remaining first: the 30-minute job took the 4 free GPUs before the 3-hour one.
    assert "every H100 is in use" in waiting.reason
    assert net.client.job(big.id).reason.startswith("no site has 16 × H100 free")
    assert fake is not None


def test_explain_answers_for_pending_and_running_jobs(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    net.fake_agent("ningxia")
    run = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"))
    net.cycle()
    net.cycle()
    wait = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:8}\n"))
    net.cycle()
    out = net.client.explain(wait.id)
    assert out.state.value == "PENDING"
    assert out.reason.startswith("no site has 8 × H100 free")
    texts = {s.site: s.text for s in out.sites}
    assert texts["ningxia"] == "ningxia: 910B does not match H100"
    assert texts["beijing"] == "beijing: A800 does not match H100"
    assert texts["tianjin-gaocun"] == "tianjin-gaocun: 8 × H100 free at ~10:00 UTC, 28 CNY/GPU-h, 1.5 ms from beijing"
    running = net.client.explain(run.id)
    [chosen] = [s for s in running.sites if s.chosen]
    assert chosen.site == "tianjin-gaocun"


def test_cli_explain_and_every_pending_job_has_a_reason(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    jobs = [
        net.client.submit(parse_job_spec(f"run: x\nresources: {{accelerators: H100:{n}}}\ntime_limit: 1h\n"))
        for n in (16, 8, 4)
    ]
    net.cycle()
    runner = CliRunner()
    for job in jobs[1:]:
        result = runner.invoke(app, ["explain", job.id, "--server", net.url, "--token", net.admin_token])
        assert result.exit_code == 0, result.output
        assert "Waiting: no site has" in result.output
        assert "tianjin-gaocun: " in result.output
        assert "ningxia: 910B does not match H100" in result.output
        as_json = runner.invoke(app, ["explain", job.id, "--json", "--server", net.url, "--token", net.admin_token])
        assert json.loads(as_json.output)["job_id"] == job.id
    pending = list(net.client.iter_jobs(state="PENDING"))
    assert pending
    assert all(j.reason for j in pending)


def test_network_policy_sets_the_preemption_grace(net: Net) -> None:
    net.control.apply_network(parse_network(NETWORK + "scheduling: {preempt_grace: 7s, preempt_after: 1m}\n"))
    _, fake = net.fake_agent("tianjin-gaocun")
    low = net.client.submit(parse_job_spec(BIG.format(priority="low")))
    net.cycle()
    net.cycle()
    net.client.submit(parse_job_spec(BIG.format(priority="high")))
    net.cycle()
    net.cycle()
    assert fake.cancels == [(net.client.job(low.id).attempts[0].id, 7.0)]


def test_fair_share_weights_from_the_network_order_the_queue(net: Net) -> None:
    tenants = "  - {name: bj-ai, home_region: beijing}\n  - {name: heavy, weight: 1}\n  - {name: light, weight: 1}\n"
    net.control.apply_network(parse_network(NETWORK.split("tenants:")[0] + "tenants:\n" + tenants))
    _, fake = net.fake_agent("tianjin-gaocun")
    one = "run: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"
    first = net.client.submit(parse_job_spec(one), tenant="heavy")
    net.cycle()
    net.cycle()
    net.clock.advance(600)  # heavy has used 16 GPUs for 10 minutes; light nothing
    fake.finish(net.client.job(first.id).attempts[0].id, exit_code=0)
    heavy = net.client.submit(parse_job_spec(one), tenant="heavy")
    light = net.client.submit(parse_job_spec(one), tenant="light")
    net.pump(lambda: net.state(light.id) == "RUNNING", timeout=10)
    assert net.state(heavy.id) == "PENDING"


def test_explain_shows_the_reservation(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:12}\ntime_limit: 1h\n"))
    net.cycle()
    net.cycle()
    big = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"))
    net.cycle()
    out = net.client.explain(big.id)
    assert out.reserved_site == "tianjin-gaocun"
    assert out.reserved_start_at is not None
    result = CliRunner().invoke(app, ["explain", big.id, "--server", net.url, "--token", net.admin_token])
    assert "Reserved  tianjin-gaocun from" in result.output
