"""The default policy through the real server and agents: a short job behind a long gang
starts before the gang ends (preempting it when it checkpoints, or by backfill), a job that
opted out is not preempted, and no job waits longer than the starvation bound."""

from __future__ import annotations

from pathlib import Path

from suanli.core.spec import parse_job_spec
from tests.integration.conftest import NETWORK, Net, start_net

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


STARVE = NETWORK + "scheduling: {starvation_factor: 2, las_preemption: false}\n"


def test_no_job_waits_longer_than_the_starvation_bound_behind_newer_short_work(tmp_path: Path) -> None:
    """A 16-GPU job (1 h limit, so a bound of 2 × 1 h) waits behind a stream of newer 10-minute
    jobs that shortest-remaining-first puts ahead of it. Past the bound it goes first and holds
    its reservation against all newer work, so it starts once the short jobs running there end
    (their 10-minute limit), give or take one step of this test's clock."""
    with start_net(tmp_path, STARVE) as net:
        _, fake = net.fake_agent("tianjin-gaocun")
        net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:4}\ntime_limit: 10m\n"))
        net.cycle()
        net.cycle()
        wide = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"))
        step_s, waited = 300, 0
        bound = 2 * 3600 + 600 + step_s
        while net.state(wide.id) == "PENDING":
            assert waited <= bound, f"waited {waited} s, past its bound: {net.client.job(wide.id).reason}"
            for _ in range(2):  # newer short work keeps arriving
                net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:4}\ntime_limit: 10m\n"))
            _later(net, step_s)
            waited += step_s
            for job in net.client.iter_jobs(state="RUNNING"):  # each short job ends after its 10 minutes
                attempt = net.client.job(job.id).attempts[-1]
                if attempt.started_at is not None and (net.clock.now() - attempt.started_at).total_seconds() >= 600:
                    fake.finish(attempt.id, exit_code=0)
            net.cycle()
            net.cycle()
        assert 2 * 3600 <= waited <= bound  # newer work did go first, until the bound
