"""The retry back-off: its schedule, its knobs in the network file, and what a requeue records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from suanli.app.lifecycle import requeue_or_fail
from suanli.core.errors import SpecError
from suanli.core.network import parse_network
from suanli.core.scheduler import Policy
from suanli.core.states import AttemptState, JobState
from suanli.store.models import Attempt, Job

NOW = datetime(2026, 1, 5, 14, 5, 0, tzinfo=UTC)


def test_the_back_off_doubles_from_ten_seconds_up_to_ten_minutes() -> None:
    policy = Policy()
    assert [policy.retry_backoff(n) for n in range(0, 9)] == [0, 10, 20, 40, 80, 160, 320, 600, 600]
    assert policy.retry_backoff(10_000) == 600  # no overflow however many retries


def test_zero_turns_the_back_off_off_and_the_cap_bounds_it() -> None:
    assert Policy(retry_backoff_s=0).retry_backoff(3) == 0
    assert Policy(retry_backoff_s=30, retry_backoff_cap_s=45).retry_backoff(2) == 45


def test_the_network_file_sets_the_back_off() -> None:
    base = "sites: []\nscheduling: {retry_backoff: %s, retry_backoff_cap: 2m}\n"
    policy = Policy.from_decl(parse_network(base % "30s").scheduling)
    assert (policy.retry_backoff_s, policy.retry_backoff_cap_s) == (30, 120)
    assert Policy.from_decl(parse_network(base % "0").scheduling).retry_backoff(1) == 0
    with pytest.raises(SpecError, match="retry_backoff"):
        parse_network(base % "-5s")


def _job(retries_used: int = 0, max_retries: int = 3) -> Job:
    return Job(
        seq=1,
        id="j-1",
        name="train",
        tenant="bj-ai",
        state=JobState.RUNNING.value,
        reason="",
        spec={"run": "x", "max_retries": max_retries},
        attempts_count=retries_used + 1,
        retries_used=retries_used,
        cancel_requested=False,
        submitted_at=NOW,
        updated_at=NOW,
    )


def _attempt(state: AttemptState, message: str, exit_code: int | None = None, number: int = 1) -> Attempt:
    return Attempt(
        id=number, job_seq=1, number=number, site="tianjin", state=state.value, message=message, exit_code=exit_code
    )


def test_a_node_fault_requeues_with_a_back_off_and_says_until_when() -> None:
    job = _job(retries_used=1)
    requeue_or_fail(job, _attempt(AttemptState.LOST, "node tj-01 failed: XID 79", number=2), NOW, Policy())
    assert job.state == JobState.PENDING.value
    assert job.retries_used == 2
    assert job.not_before == NOW + timedelta(seconds=20)
    assert job.reason == "retrying after a node fault: back-off until 14:05:20 UTC (attempt 3 of 4)"


@pytest.mark.parametrize(
    ("state", "message", "code", "words"),
    [
        (AttemptState.LOST, "site tianjin stopped reporting it (lease expired)", None, "site tianjin going silent"),
        (AttemptState.LOST, "the agent of site tianjin lost the server for 25s", None, "a partition between site"),
        (AttemptState.LOST, "the agent of site tianjin shut down", None, "the agent of site tianjin shutting down"),
        (AttemptState.FAILED, "run exited with code 75", 75, "exit code 75 (retry.on_exit_codes)"),
    ],
)
def test_the_reason_names_the_fault(state: AttemptState, message: str, code: int | None, words: str) -> None:
    job = _job()
    requeue_or_fail(job, _attempt(state, message, code), NOW, Policy())
    assert job.reason.startswith(f"retrying after {words}")
    assert job.not_before == NOW + timedelta(seconds=10)


def test_a_preempted_job_is_requeued_without_back_off() -> None:
    job = _job(retries_used=2)
    requeue_or_fail(job, _attempt(AttemptState.PREEMPTED, "preempted by high-priority job j-9"), NOW, Policy())
    assert job.state == JobState.PENDING.value
    assert job.not_before is None
    assert job.reason.startswith("requeued after attempt 1 was preempted")


def test_no_back_off_when_it_is_off_and_none_once_retries_run_out() -> None:
    job = _job()
    requeue_or_fail(job, _attempt(AttemptState.LOST, "node tj-01 failed"), NOW, Policy(retry_backoff_s=0))
    assert job.not_before is None
    assert job.reason.startswith("requeued after attempt 1 was lost")
    spent = _job(retries_used=3, max_retries=3)
    requeue_or_fail(spent, _attempt(AttemptState.LOST, "node tj-01 failed", number=4), NOW, Policy())
    assert spent.state == JobState.FAILED.value
    assert spent.not_before is None
    assert "no retries left (3)" in spent.reason
