"""Retries after a fault back off exponentially (10 s, 20 s, … by default), on the ManualClock:
the next attempt is not placed before its back-off ends, and is placed as soon as it has."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from suanli.core.spec import parse_job_spec
from suanli.core.states import AttemptState
from tests.integration.conftest import Net, start_net


def _running_attempt(net: Net, job_id: str) -> int:
    net.pump(lambda: net.state(job_id) == "RUNNING", timeout=10)
    return net.client.job(job_id).attempts[-1].id


def test_a_retry_after_a_node_fault_waits_out_its_back_off(net: Net) -> None:
    _, fake = net.fake_agent("beijing")
    job = net.client.submit(parse_job_spec("run: train\nmax_retries: 3\n"))
    first = _running_attempt(net, job.id)
    start = net.clock.now()
    fake.finish(first, None, state=AttemptState.LOST, message="node bj-01 failed: health check: XID 79")
    net.cycle()  # the end is reported: LOST, requeued with a 10 s back-off
    out = net.client.job(job.id)
    assert out.state.value == "PENDING"
    assert out.reason == "retrying after a node fault: back-off until 09:00:10 UTC (attempt 2 of 4)"
    explained = net.client.explain(job.id)
    assert explained.reason == out.reason  # what `suanli explain` shows
    assert explained.not_before == start + timedelta(seconds=10)

    net.clock.advance(9.5)
    net.cycle()
    net.cycle()
    assert net.state(job.id) == "PENDING"
    assert len(net.client.job(job.id).attempts) == 1, "attempt 2 is not placed before its back-off ends"

    net.clock.advance(0.5)
    second = _running_attempt(net, job.id)
    assert [a.number for a in net.client.job(job.id).attempts] == [1, 2]
    assert net.client.explain(job.id).not_before is None

    # The second fault doubles the back-off: 20 s.
    fake.finish(second, None, state=AttemptState.LOST, message="node bj-01 failed: health check: XID 79")
    net.cycle()
    waiting = net.client.job(job.id)
    assert waiting.reason.endswith("(attempt 3 of 4)")
    net.clock.advance(19)
    net.cycle()
    assert len(net.client.job(job.id).attempts) == 2
    net.clock.advance(1)
    _running_attempt(net, job.id)
    assert [a.number for a in net.client.job(job.id).attempts] == [1, 2, 3]


def test_an_incremental_pass_places_the_job_once_its_back_off_ends(net: Net) -> None:
    """Incremental passes look only at new jobs; the end of a back-off forces a full one."""
    _, fake = net.fake_agent("beijing")
    job = net.client.submit(parse_job_spec("run: x\nretry: {on_exit_codes: [75]}\n"))
    first = _running_attempt(net, job.id)
    fake.finish(first, 75)
    net.cycle()
    assert net.client.job(job.id).reason.startswith("retrying after exit code 75 (retry.on_exit_codes): back-off")
    net.control.tick(full=False)
    assert net.state(job.id) == "PENDING"
    net.clock.advance(10)
    result = net.control.tick(full=False)  # the scheduler loop's kind of pass
    assert result.placed == 1
    assert net.state(job.id) == "SCHEDULED"


def test_a_lost_lease_backs_off_and_the_network_file_sets_the_back_off(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK_WITH_BACKOFF) as net:
        net.fake_agent("beijing")
        job = net.client.submit(parse_job_spec("run: x\n"))
        _running_attempt(net, job.id)
        net.clock.advance(31)  # the site goes silent past its lease
        net.control.tick()
        out = net.client.job(job.id)
        assert out.attempts[0].state.value == "LOST"
        assert out.reason.startswith("retrying after site beijing going silent: back-off until")
        assert net.client.explain(job.id).not_before == net.clock.now() + timedelta(seconds=3)
        net.clock.advance(3)
        net.pump(lambda: len(net.client.job(job.id).attempts) == 2, timeout=10)


def test_back_off_zero_turns_it_off(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK_WITH_BACKOFF.replace("retry_backoff: 3s", "retry_backoff: 0")) as net:
        _, fake = net.fake_agent("beijing")
        job = net.client.submit(parse_job_spec("run: x\n"))
        first = _running_attempt(net, job.id)
        fake.finish(first, None, state=AttemptState.LOST, message="node bj-01 failed: XID 79")
        net.pump(lambda: len(net.client.job(job.id).attempts) == 2, timeout=10)  # no clock advance needed


NETWORK_WITH_BACKOFF = """\
sites:
  - name: beijing
    region: beijing
    nodes: [{name: bj-01, gpus: A800:4, cpus: 32, memory: 256}]
tenants:
  - {name: bj-ai, home_region: beijing}
scheduling: {retry_backoff: 3s, retry_backoff_cap: 1m}
"""
