"""The default policy through the real server and agents: a short job behind a long gang
starts before the gang ends (preempting it when it checkpoints, or by backfill), a job that
opted out is not preempted."""

from __future__ import annotations

from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net

GANG = "run: train\nresources: {accelerators: H100:16}\n"


def _later(net: Net, seconds: float) -> None:
    """Time passes; the agents report (so their sites and attempts stay live) before the next pass."""
    net.clock.advance(seconds)
    for agent in net.agents.values():
        agent.step()


def _long_gang_running(net: Net, spec: str = GANG) -> str:
    """A 16-GPU gang with no time limit that has run 2 hours (32 GPU-hours: past the first
    attained-service threshold, and past the 1-hour estimate its tenant's history gives)."""
    gang = net.client.submit(parse_job_spec(spec))
    net.cycle()
    net.cycle()
    assert net.state(gang.id) == "RUNNING"
    _later(net, 2 * 3600)
    return gang.id


def test_a_short_job_preempts_a_checkpointing_long_gang_and_starts_before_it_ends(net: Net) -> None:
    _, fake = net.fake_agent("tianjin-gaocun")
    gang = _long_gang_running(net)
    short = net.client.submit(parse_job_spec("run: eval\nresources: {accelerators: H100:4}\ntime_limit: 10m\n"))
    net.control.tick()
    assert f"preempting 1 job(s) at tianjin-gaocun ({gang})" in net.client.job(short.id).reason
    assert net.client.job(gang).reason.startswith(f"preempted by job {short.id}, which has had less GPU time")
    net.cycle()  # the stop order reaches the agent; the fake stops at once
    net.pump(lambda: net.state(short.id) in {"SCHEDULED", "RUNNING"}, timeout=10)
    victim = net.client.job(gang)
    assert victim.state.value == "PENDING"  # requeued: it resumes from its checkpoint later
    assert victim.attempts[0].state.value == "PREEMPTED"
    # The short job ends; the gang runs again as attempt 2.
    fake.finish(net.client.job(short.id).attempts[0].id, exit_code=0)
    net.pump(lambda: net.state(gang) == "RUNNING", timeout=10)
    assert [a.number for a in net.client.job(gang).attempts] == [1, 2]


def test_a_gang_that_opted_out_is_not_preempted_for_shorter_work(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    gang = _long_gang_running(net, GANG + "preemptible: false\n")
    short = net.client.submit(parse_job_spec("run: eval\nresources: {accelerators: H100:4}\ntime_limit: 10m\n"))
    net.cycle()
    net.cycle()
    assert net.state(gang) == "RUNNING"
    assert net.state(short.id) == "PENDING"
    assert "preempting" not in net.client.job(short.id).reason


def test_a_short_job_backfills_beside_a_long_gang_and_a_blocked_wide_job(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    gang = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:12}\ntime_limit: 4h\n"))
    net.cycle()
    net.cycle()
    wide = net.client.submit(parse_job_spec(GANG))  # needs the whole node: reserved for when the gang ends
    short = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:4}\ntime_limit: 30m\n"))
    net.cycle()
    assert net.state(gang.id) == "RUNNING"
    assert net.state(wide.id) == "PENDING"
    assert net.state(short.id) in {"SCHEDULED", "RUNNING"}  # ends long before the gang: it backfills
