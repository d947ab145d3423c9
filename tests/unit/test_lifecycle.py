"""The job/attempt lifecycle in ``core``: each operation's result, the reasons users read, and
transitions the tables forbid, refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from suanli.app.records import parse_stored
from suanli.app.scheduling import error_words
from suanli.core import lifecycle
from suanli.core.errors import TransitionError
from suanli.core.lifecycle import AttemptRecord, Change, JobRecord, RetryRules
from suanli.core.scheduler import Policy
from suanli.core.states import AttemptState, JobState

NOW = datetime(2026, 1, 5, 14, 5, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)


def _job(state: JobState = JobState.RUNNING, **fields: object) -> JobRecord:
    base = JobRecord(
        state=state,
        attempts_count=1,
        current_attempt_id=7,
        site="tianjin",
        updated_at=EARLIER,
        retry=RetryRules(max_retries=3),
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def _attempt(state: AttemptState = AttemptState.RUNNING, **fields: object) -> AttemptRecord:
    base = AttemptRecord(id=7, number=1, site="tianjin", state=state, delivered=True, started_at=EARLIER)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_started_attempt_runs_its_job_and_is_stamped_once() -> None:
    change = lifecycle.apply_report(
        _job(JobState.SCHEDULED),
        _attempt(AttemptState.SCHEDULED, started_at=None),
        AttemptState.STARTING,
        "",
        None,
        NOW,
    )
    assert change.job is not None
    assert change.attempt is not None
    assert (change.job.state, change.job.reason, change.job.updated_at) == (JobState.STARTING, "running setup", NOW)
    assert change.attempt.started_at == NOW
    assert change.job_changed
    assert not change.freed_capacity
    running = lifecycle.apply_report(change.job, change.attempt, AttemptState.RUNNING, "", None, NOW + timedelta(1))
    assert running.job is not None
    assert running.attempt is not None
    assert (running.job.state, running.job.reason) == (JobState.RUNNING, "")
    assert running.attempt.started_at == NOW


def test_success_ends_the_job_without_a_reason_and_frees_capacity() -> None:
    change = lifecycle.apply_report(_job(reason="x"), _attempt(), AttemptState.SUCCEEDED, "done", 0, NOW)
    assert change.job is not None
    assert change.attempt is not None
    assert (change.job.state, change.job.reason, change.job.exit_code) == (JobState.SUCCEEDED, "", 0)
    assert change.job.finished_at == NOW
    assert (change.attempt.state, change.attempt.ended_at, change.attempt.exit_code) == (AttemptState.SUCCEEDED, NOW, 0)
    assert change.freed_capacity
    assert not change.requeued


def test_a_failure_ends_the_job_saying_its_exit_code_when_the_site_said_nothing() -> None:
    change = lifecycle.apply_report(_job(), _attempt(), AttemptState.FAILED, "", 2, NOW)
    assert change.job is not None
    assert (change.job.state, change.job.reason, change.job.exit_code) == (JobState.FAILED, "exited with code 2", 2)
    said = lifecycle.apply_report(_job(), _attempt(), AttemptState.FAILED, "run exited with code 2", 2, NOW)
    assert said.job is not None
    assert said.job.reason == "run exited with code 2"


def test_a_retried_exit_code_requeues_with_a_back_off() -> None:
    job = _job(retry=RetryRules(max_retries=3, on_exit_codes=frozenset({75})))
    change = lifecycle.apply_report(job, _attempt(), AttemptState.FAILED, "run exited with code 75", 75, NOW, Policy())
    assert change.job is not None
    assert change.attempt is not None
    assert change.attempt.state == AttemptState.FAILED
    assert (change.job.state, change.job.retries_used) == (JobState.PENDING, 1)
    assert change.job.not_before == NOW + timedelta(seconds=10)
    assert change.job.reason == (
        "retrying after exit code 75 (retry.on_exit_codes): back-off until 14:05:10 UTC (attempt 2 of 4)"
    )
    assert change.requeued
    assert change.freed_capacity
    assert change.job.finished_at is None


def test_an_attempt_the_platform_stopped_ends_as_it_ordered_and_is_requeued_at_once() -> None:
    stopping = _attempt(stop_requested=True, stop_reason="preempted by job j-9", stop_outcome=AttemptState.PREEMPTED)
    change = lifecycle.apply_report(_job(), stopping, AttemptState.FAILED, "killed", 137, NOW, Policy())
    assert change.job is not None
    assert change.attempt is not None
    assert (change.attempt.state, change.attempt.message) == (AttemptState.PREEMPTED, "preempted by job j-9")
    assert change.job.state == JobState.PENDING
    assert change.job.not_before is None
    assert change.job.reason == "requeued after attempt 1 was preempted (preempted by job j-9)"


def test_a_cancelled_job_ends_cancelled_when_its_site_stopped_it() -> None:
    stopping = _attempt(stop_requested=True, stop_reason="cancelled from the dashboard")
    change = lifecycle.apply_report(_job(cancel_requested=True), stopping, AttemptState.FAILED, "", 143, NOW)
    assert change.job is not None
    assert (change.job.state, change.job.reason, change.job.exit_code) == (
        JobState.CANCELLED,
        "cancelled from the dashboard",
        143,
    )


def test_a_report_of_an_attempt_that_is_not_the_jobs_own_changes_only_the_attempt() -> None:
    change = lifecycle.apply_report(_job(current_attempt_id=8), _attempt(), AttemptState.LOST, "gone", None, NOW)
    assert change.job is None
    assert change.attempt is not None
    assert change.attempt.state == AttemptState.LOST
    assert change.freed_capacity
    assert not change.job_changed


def test_reports_that_are_no_transition_change_nothing() -> None:
    ended = _attempt(AttemptState.SUCCEEDED)
    assert lifecycle.apply_report(_job(), ended, AttemptState.RUNNING, "", None, NOW) == Change()
    assert lifecycle.apply_report(_job(), _attempt(), AttemptState.RUNNING, "", None, NOW) == Change()
    assert lifecycle.apply_report(_job(), _attempt(), AttemptState.STARTING, "", None, NOW) == Change()


def test_illegal_transitions_are_refused() -> None:
    with pytest.raises(TransitionError, match="a job cannot go from SUCCEEDED to FAILED"):
        lifecycle.finish(_job(JobState.SUCCEEDED), JobState.FAILED, NOW, "late")
    with pytest.raises(TransitionError, match="a job cannot go from RUNNING to SCHEDULED"):
        lifecycle.place(_job(JobState.RUNNING), 8, "tianjin", NOW)
    with pytest.raises(TransitionError, match="an attempt cannot go from LOST to FAILED"):
        lifecycle.end_attempt(_job(), _attempt(AttemptState.LOST), AttemptState.FAILED, "no key", NOW)
    with pytest.raises(TransitionError, match="a job cannot go from CANCELLED to PENDING"):
        lifecycle.requeue_or_fail(_job(JobState.CANCELLED), _attempt(AttemptState.LOST), NOW)
    with pytest.raises(TransitionError, match="does not finish as RUNNING"):
        lifecycle.finish(_job(JobState.STARTING), JobState.RUNNING, NOW)


def test_requeue_fails_the_job_once_retries_run_out_and_cancels_it_if_asked() -> None:
    lost = _attempt(AttemptState.LOST, message="node tj-01 failed: XID 79", number=4)
    spent = lifecycle.requeue_or_fail(_job(retries_used=3, attempts_count=4), lost, NOW, Policy())
    assert spent.job is not None
    assert spent.job.state == JobState.FAILED
    assert not spent.requeued
    assert spent.job.reason == "attempt 4 lost: node tj-01 failed: XID 79; no retries left (3)"
    asked = lifecycle.requeue_or_fail(_job(cancel_requested=True), lost, NOW, Policy())
    assert asked.job is not None
    assert (asked.job.state, asked.job.reason) == (
        JobState.CANCELLED,
        "cancelled by the user",
    )


def test_retry_decisions_and_their_back_off() -> None:
    assert lifecycle.retries(AttemptState.LOST, None, frozenset())
    assert lifecycle.retries(AttemptState.PREEMPTED, None, frozenset())
    assert lifecycle.retries(AttemptState.FAILED, 75, frozenset({75}))
    assert not lifecycle.retries(AttemptState.FAILED, 1, frozenset({75}))
    assert not lifecycle.retries(AttemptState.SUCCEEDED, 0, frozenset({0}))
    policy = Policy()
    assert lifecycle.decide_retry(AttemptState.LOST, 0, 3, NOW, policy) == lifecycle.Retry(
        True, 1, NOW + timedelta(seconds=10)
    )
    assert lifecycle.decide_retry(AttemptState.LOST, 2, 3, NOW, policy).not_before == NOW + timedelta(seconds=40)
    # A preemption is the scheduler's choice: requeued at once, no retry spent, even with none left.
    assert lifecycle.decide_retry(AttemptState.PREEMPTED, 2, 3, NOW, policy) == lifecycle.Retry(True, 2)
    assert lifecycle.decide_retry(AttemptState.PREEMPTED, 3, 3, NOW, policy) == lifecycle.Retry(True, 3)
    assert lifecycle.decide_retry(AttemptState.LOST, 3, 3, NOW, policy) == lifecycle.Retry(False, 3)
    assert lifecycle.decide_retry(AttemptState.LOST, 0, 3, NOW, Policy(retry_backoff_s=0)).not_before is None


def test_preempting_an_undelivered_attempt_ends_it_and_a_delivered_one_is_ordered_stopped() -> None:
    fresh = lifecycle.preempt(
        _job(JobState.SCHEDULED), _attempt(AttemptState.SCHEDULED, delivered=False), "job j-9", NOW
    )
    assert fresh.job is not None
    assert fresh.attempt is not None
    assert (fresh.attempt.state, fresh.attempt.message) == (AttemptState.PREEMPTED, "preempted by job j-9")
    assert fresh.job.state == JobState.PENDING
    assert fresh.requeued
    assert fresh.freed_capacity
    running = lifecycle.preempt(_job(), _attempt(), "preempted by job j-9", NOW)
    assert running.job is not None
    assert running.attempt is not None
    assert running.attempt.state == AttemptState.RUNNING
    assert running.stop_ordered
    assert running.attempt.stop_outcome == AttemptState.PREEMPTED
    assert running.job.state == JobState.RUNNING
    assert running.job.reason == "preempted by job j-9: stopping at tianjin, then requeued"
    assert lifecycle.stop_grace(running.attempt, 30) == 30
    assert lifecycle.stop_grace(_attempt(stop_requested=True), 30) == lifecycle.STOP_GRACE_S


def test_a_failed_node_stops_the_attempt_to_end_it_lost() -> None:
    change = lifecycle.stop_on_failed_node(_job(), _attempt(), "tj-01", "XID 79", NOW)
    assert change.attempt is not None
    assert change.job is not None
    assert (change.attempt.stop_reason, change.attempt.stop_outcome) == ("node tj-01 failed: XID 79", AttemptState.LOST)
    assert change.job.reason == "node tj-01 failed: XID 79; stopping it, then requeued"
    ended = lifecycle.apply_report(change.job, change.attempt, AttemptState.FAILED, "killed", 137, NOW, Policy())
    assert ended.job is not None
    assert ended.job.reason.startswith("retrying after a node fault: back-off until")


def test_a_lost_lease_says_the_site_went_silent() -> None:
    change = lifecycle.lose_lease(_job(), _attempt(), NOW, Policy())
    assert change.attempt is not None
    assert change.job is not None
    assert change.attempt.message == "site tianjin stopped reporting it (lease expired)"
    assert change.job.reason.startswith("retrying after site tianjin going silent: back-off until 14:05:10 UTC")


def test_cancel_ends_what_no_site_runs_and_orders_the_rest_stopped() -> None:
    pending = lifecycle.cancel(_job(JobState.PENDING, current_attempt_id=None), None, NOW)
    assert pending.job is not None
    assert pending.job.state == JobState.CANCELLED
    assert pending.job.cancel_requested
    assert pending.job.reason == "cancelled by the user"
    assert not pending.stop_ordered
    undelivered = _attempt(AttemptState.SCHEDULED, delivered=False)
    early = lifecycle.cancel(_job(JobState.SCHEDULED), undelivered, NOW, "cancelled from the dashboard")
    assert early.job is not None
    assert early.attempt is not None
    assert (early.attempt.state, early.attempt.message) == (AttemptState.CANCELLED, "cancelled from the dashboard")
    assert early.job.state == JobState.CANCELLED
    running = lifecycle.cancel(_job(), _attempt(), NOW)
    assert running.job is not None
    assert running.attempt is not None
    assert running.stop_ordered
    assert (running.job.state, running.job.reason) == (JobState.RUNNING, "cancelling: waiting for the site to stop it")
    assert running.attempt.stop_requested
    assert running.attempt.stop_outcome is None
    assert lifecycle.cancel(_job(JobState.FAILED), _attempt(AttemptState.FAILED), NOW) == Change()


def test_placing_a_job_spends_its_back_off() -> None:
    waiting = _job(JobState.PENDING, not_before=NOW, reason="retrying after …", attempts_count=2)
    change = lifecycle.place(waiting, 9, "ningxia", NOW)
    assert change.job is not None
    assert (change.job.state, change.job.current_attempt_id, change.job.site) == (JobState.SCHEDULED, 9, "ningxia")
    assert (change.job.attempts_count, change.job.reason, change.job.not_before) == (3, "", None)


def test_a_stored_spec_past_a_new_bound_still_reads_and_says_why() -> None:
    stored = parse_stored({"run": "x", "time_limit": 1e308, "max_retries": 5, "labels": {"bad key!": "v"}})
    assert stored.spec.time_limit is None
    assert stored.spec.labels == {}
    assert stored.spec.max_retries == 5
    assert stored.spec.run == "x"
    assert stored.failed == {"time_limit", "labels"}
    assert stored.error is not None
    assert error_words(stored.error).startswith("time_limit 1e+308 is over the limit of 365d")
    assert parse_stored({"run": "y" * 70_000}).spec.run == "y" * 70_000


def test_a_record_without_retry_rules_is_refused_where_a_retry_is_decided() -> None:
    bare = _job(retry=None)
    with pytest.raises(ValueError, match="retry rules"):
        lifecycle.lose_lease(bare, _attempt(), NOW)
    assert lifecycle.wait(_job(JobState.PENDING, retry=None), "no site has 8 × H100 free", NOW).job is not None


def test_an_ended_attempt_is_not_ordered_stopped() -> None:
    with pytest.raises(TransitionError, match="attempt 1 has ended"):
        lifecycle.stop_on_failed_node(_job(), _attempt(AttemptState.LOST), "tj-01", "XID 79", NOW)
