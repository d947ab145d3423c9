"""One job/attempt lifecycle: every change of a job's or an attempt's state is decided here.

Pure and deterministic. The server (``app/lifecycle.py``) reads its rows into the records below,
calls one operation and writes the :class:`Change` it gets back; the simulator calls the same
operations (or the small decision functions at the end) on its own records. Every job
transition is checked with :func:`check_job_transition` and every attempt transition with
:func:`can_transition_attempt`, so an illegal one raises :class:`TransitionError` instead of
being written.

The reasons and messages written here are what users read (``suanli jobs``, the dashboard):
their wording is part of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from suanli.core.errors import TransitionError
from suanli.core.scheduling.model import Policy
from suanli.core.states import (
    AttemptState,
    JobState,
    can_transition_attempt,
    check_job_transition,
    job_state_for_attempt,
)

#: The reason of a job cancelled by its user (when no other is given).
CANCELLED_BY_USER = "cancelled by the user"
#: A job's reason while the site stops the attempt of a cancelled job.
CANCELLING_REASON = "cancelling: waiting for the site to stop it"
#: A stop reason that starts so marks a preemption: the attempt ends PREEMPTED and the job is requeued.
PREEMPTED_PREFIX = "preempted by "
#: SIGTERM → SIGKILL for an attempt stopped by its user or because a node of it failed.
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class RetryRules:
    """How a job retries, from its spec."""

    #: Retries allowed after platform faults (``max_retries``).
    max_retries: int
    #: Exit codes retried like a platform fault (``retry.on_exit_codes``).
    on_exit_codes: frozenset[int] = frozenset()


@dataclass(frozen=True)
class JobRecord:
    """The fields of a job the lifecycle reads and writes."""

    state: JobState
    reason: str = ""
    #: Retries spent after platform faults (and retried exit codes).
    retries_used: int = 0
    #: From the spec; needed only by the operations that may retry (``apply_report``,
    #: ``requeue_or_fail`` and those that call it), which refuse a record without them.
    retry: RetryRules | None = None
    attempts_count: int = 0
    current_attempt_id: int | None = None
    cancel_requested: bool = False
    site: str | None = None
    exit_code: int | None = None
    #: The next attempt is not placed before then (a back-off after a fault); None: at once.
    not_before: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """The fields of an attempt the lifecycle reads and writes."""

    id: int
    number: int
    site: str
    state: AttemptState = AttemptState.SCHEDULED
    message: str = ""
    exit_code: int | None = None
    #: Handed to its site's agent (an attempt not yet delivered can end at once).
    delivered: bool = False
    stop_requested: bool = False
    stop_reason: str = ""
    #: What the attempt is recorded as once its site stopped it (LOST, PREEMPTED); None: as reported.
    stop_outcome: AttemptState | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """What one operation decided: the records as they are after it (None: untouched)."""

    job: JobRecord | None = None
    attempt: AttemptRecord | None = None
    #: The attempt ended, so the resources it held are free (the scheduler should run).
    freed_capacity: bool = False
    #: The job is PENDING again, for a new attempt (not before ``job.not_before``).
    requeued: bool = False
    #: The job's state or reason changed (log followers and watchers should be woken).
    job_changed: bool = False
    #: The attempt's site must be told to stop it (a stop order goes out with its next reply).
    stop_ordered: bool = False

    def then(self, later: Change) -> Change:
        """This change followed by ``later`` (computed on this one's result)."""
        return Change(
            job=later.job or self.job,
            attempt=later.attempt or self.attempt,
            freed_capacity=self.freed_capacity or later.freed_capacity,
            requeued=self.requeued or later.requeued,
            job_changed=self.job_changed or later.job_changed,
            stop_ordered=self.stop_ordered or later.stop_ordered,
        )


@dataclass(frozen=True)
class Retry:
    """Whether a job retries after an attempt ended, and when it may be placed again."""

    retry: bool
    #: Retries spent once this decision is taken.
    retries_used: int
    #: None: at once (or no retry).
    not_before: datetime | None = None


# -- transitions ----------------------------------------------------------------------------


def _job_to(job: JobRecord, state: JobState, now: datetime, **fields: object) -> JobRecord:
    check_job_transition(job.state, state)
    return replace(job, state=state, updated_at=now, **fields)  # type: ignore[arg-type]


def _attempt_to(attempt: AttemptRecord, state: AttemptState, **fields: object) -> AttemptRecord:
    if not can_transition_attempt(attempt.state, state):
        raise TransitionError(f"an attempt cannot go from {attempt.state.value} to {state.value}")
    return replace(attempt, state=state, **fields)  # type: ignore[arg-type]


def finish(job: JobRecord, state: JobState, now: datetime, reason: str = "", exit_code: int | None = None) -> JobRecord:
    """The job ends in ``state`` (a terminal one); a SUCCEEDED job shows no reason."""
    if not state.is_terminal():
        raise TransitionError(f"a job does not finish as {state.value}")
    return _job_to(
        job,
        state,
        now,
        reason=reason if state != JobState.SUCCEEDED else "",
        finished_at=now,
        exit_code=exit_code if exit_code is not None else job.exit_code,
    )


def _rules(job: JobRecord) -> RetryRules:
    if job.retry is None:
        raise ValueError("deciding whether a job retries needs its retry rules (JobRecord.retry)")
    return job.retry


def _current(job: JobRecord | None, attempt: AttemptRecord) -> bool:
    """Whether ``attempt`` speaks for ``job``: it is the job's current one and the job goes on."""
    return job is not None and job.current_attempt_id == attempt.id and not job.state.is_terminal()


def apply_report(
    job: JobRecord | None,
    attempt: AttemptRecord,
    state: AttemptState,
    message: str,
    exit_code: int | None,
    now: datetime,
    policy: Policy | None = None,
) -> Change:
    """The attempt's site reports it in ``state``. A report that is no transition (the same
    state, or one an attempt cannot take, e.g. from an ended one) changes nothing. The job
    follows its current attempt: it runs, ends, or (after a platform fault, a retried exit code
    or a stop the platform ordered) is requeued while retries last."""
    if state == attempt.state or not can_transition_attempt(attempt.state, state):
        return Change()
    started = attempt.started_at
    if state in (AttemptState.STARTING, AttemptState.RUNNING) and started is None:
        started = now
    ended = state.is_terminal()
    fields: dict[str, object] = {"started_at": started, "message": message}
    if ended:
        fields.update(ended_at=now, exit_code=exit_code)
    if job is None or not _current(job, attempt):
        return Change(attempt=_attempt_to(attempt, state, **fields), freed_capacity=ended)
    if not ended:
        reason = "" if state == AttemptState.RUNNING else "running setup"
        after_job = _job_to(job, job_state_for_attempt(state), now, reason=reason)
        return Change(job=after_job, attempt=_attempt_to(attempt, state, **fields), job_changed=True)
    outcome = attempt.stop_outcome
    if attempt.stop_requested and outcome is not None and not job.cancel_requested and state != AttemptState.SUCCEEDED:
        # It ended because the platform stopped it (preemption, a failed node): a new attempt.
        state = outcome
        fields["message"] = attempt.stop_reason
    after = _attempt_to(attempt, state, **fields)
    change = Change(attempt=after, freed_capacity=True, job_changed=True)
    if after.state in (AttemptState.LOST, AttemptState.PREEMPTED):
        return change.then(requeue_or_fail(job, after, now, policy))
    if job.cancel_requested and after.state != AttemptState.SUCCEEDED:
        reason = after.stop_reason or CANCELLED_BY_USER
        return replace(change, job=finish(job, JobState.CANCELLED, now, reason, exit_code))
    if retried_exit(after.state, exit_code, _rules(job).on_exit_codes):
        return change.then(requeue_or_fail(job, after, now, policy))  # the spec asked for this code
    final = job_state_for_attempt(after.state)
    reason = message if final != JobState.SUCCEEDED else ""
    if final == JobState.FAILED and not reason:
        reason = f"exited with code {exit_code}"
    return replace(change, job=finish(job, final, now, reason, exit_code))


def requeue_or_fail(job: JobRecord, attempt: AttemptRecord, now: datetime, policy: Policy | None = None) -> Change:
    """After a platform fault (or an exit code the spec retries) ended ``attempt`` (already in
    its final state): a new attempt while retries last, else FAILED; CANCELLED if the user
    asked meanwhile. The new attempt is not placed before the ``policy``'s back-off has passed
    (``not_before``), except after a preemption: the job did nothing wrong, and the scheduler
    chose to stop it."""
    if job.cancel_requested:
        return Change(job=finish(job, JobState.CANCELLED, now, CANCELLED_BY_USER), job_changed=True)
    rules = _rules(job)
    what = f"attempt {attempt.number} {attempt.state.value.lower()}: {attempt.message}"
    decision = decide_retry(attempt.state, job.retries_used, rules.max_retries, now, policy)
    if not decision.retry:
        reason = f"{what}; no retries left ({rules.max_retries})"
        return Change(job=finish(job, JobState.FAILED, now, reason), job_changed=True)
    reason = f"requeued after attempt {attempt.number} was {attempt.state.value.lower()} ({attempt.message})"
    if decision.not_before is not None:
        reason = (
            f"retrying after {fault_words(attempt)}: back-off until {decision.not_before:%H:%M:%S} UTC "
            f"(attempt {job.attempts_count + 1} of {rules.max_retries + 1})"
        )
    after = _job_to(
        job, JobState.PENDING, now, retries_used=decision.retries_used, reason=reason, not_before=decision.not_before
    )
    return Change(job=after, requeued=True, job_changed=True)


def end_attempt(
    job: JobRecord | None, attempt: AttemptRecord, state: AttemptState, message: str, now: datetime
) -> Change:
    """The server ends an attempt itself (its site never got it, or cannot run it): recorded as
    ``state`` with ``message``; its job, if it goes on with it, is decided as after a report."""
    after = _attempt_to(attempt, state, message=message, ended_at=now)
    change = Change(attempt=after, freed_capacity=True)
    if job is None or not _current(job, attempt):
        return change
    if state in (AttemptState.LOST, AttemptState.PREEMPTED):
        return change.then(requeue_or_fail(job, after, now))
    return change.then(Change(job=finish(job, job_state_for_attempt(state), now, message), job_changed=True))


def lose_lease(job: JobRecord | None, attempt: AttemptRecord, now: datetime, policy: Policy | None = None) -> Change:
    """The attempt's site stopped reporting it past its lease: it is LOST, and its job is
    requeued while retries last, after the ``policy``'s back-off."""
    message = attempt.message or f"site {attempt.site} stopped reporting it (lease expired)"
    after = _attempt_to(attempt, AttemptState.LOST, message=message, ended_at=now)
    change = Change(attempt=after, freed_capacity=True)
    if job is None or not _current(job, attempt):
        return change
    return change.then(requeue_or_fail(job, after, now, policy))


def request_stop(
    job: JobRecord | None,
    attempt: AttemptRecord,
    reason: str,
    outcome: AttemptState | None,
    job_reason: str,
    now: datetime,
) -> Change:
    """Order a delivered attempt stopped (SIGTERM, a grace, SIGKILL at its site); once its site
    reports it ended it is recorded as ``outcome`` (None: as reported). The job, while this is
    its attempt, says ``job_reason`` meanwhile."""
    if attempt.state.is_terminal():
        raise TransitionError(f"attempt {attempt.number} has ended ({attempt.state.value}); it cannot be stopped")
    after = replace(attempt, stop_requested=True, stop_reason=reason, stop_outcome=outcome)
    change = Change(attempt=after, stop_ordered=True)
    if job is None or job.current_attempt_id != attempt.id:
        return change
    return replace(change, job=replace(job, reason=job_reason, updated_at=now), job_changed=True)


def preempt(job: JobRecord, attempt: AttemptRecord, reason: str, now: datetime) -> Change:
    """The scheduler takes the attempt's resources for a more urgent job. An attempt its site
    has not got yet ends PREEMPTED at once and the job is requeued; a running one is ordered
    stopped with the policy's preemption grace, and ends PREEMPTED when its site says so."""
    reason = reason if is_preemption(reason) else PREEMPTED_PREFIX + reason
    if not attempt.delivered:
        after = _attempt_to(attempt, AttemptState.PREEMPTED, message=reason, ended_at=now)
        return Change(attempt=after, freed_capacity=True).then(requeue_or_fail(job, after, now))
    job_reason = f"{reason}: stopping at {attempt.site}, then requeued"
    return request_stop(job, attempt, reason, AttemptState.PREEMPTED, job_reason, now)


def stop_on_failed_node(job: JobRecord | None, attempt: AttemptRecord, node: str, why: str, now: datetime) -> Change:
    """A node of the attempt failed: it is stopped and, once stopped, recorded LOST and requeued."""
    reason = f"node {node} failed: {why}"
    return request_stop(job, attempt, reason, AttemptState.LOST, f"{reason}; stopping it, then requeued", now)


def cancel(job: JobRecord, attempt: AttemptRecord | None, now: datetime, reason: str = CANCELLED_BY_USER) -> Change:
    """The user cancels the job. A pending job (or one whose attempt its site has not got yet)
    ends at once; a running one gets a stop order and ends CANCELLED when its site says so. An
    ended job does not change."""
    if job.state.is_terminal():
        return Change()
    asked = replace(job, cancel_requested=True, updated_at=now)
    if job.state == JobState.PENDING or attempt is None or attempt.state.is_terminal():
        return Change(job=finish(asked, JobState.CANCELLED, now, reason), job_changed=True)
    if not attempt.delivered:
        after = _attempt_to(attempt, AttemptState.CANCELLED, message=reason, ended_at=now)
        done = finish(asked, JobState.CANCELLED, now, reason)
        return Change(job=done, attempt=after, freed_capacity=True, job_changed=True)
    stop = request_stop(asked, attempt, reason, attempt.stop_outcome, CANCELLING_REASON, now)
    return replace(stop, job_changed=True)


def never_runs(job: JobRecord, reason: str, now: datetime) -> Change:
    """A pending job that can never run (a dependency that will never be met) ends CANCELLED
    with ``reason``; a job that left PENDING since the scheduler looked does not change."""
    if job.state != JobState.PENDING:
        return Change()
    return Change(job=finish(job, JobState.CANCELLED, now, reason), job_changed=True)


def place(job: JobRecord, attempt_id: int, site: str, now: datetime) -> Change:
    """The scheduler placed the job at ``site`` as attempt ``attempt_id`` (number
    ``job.attempts_count + 1``): it is SCHEDULED, any back-off spent."""
    after = _job_to(
        job,
        JobState.SCHEDULED,
        now,
        attempts_count=job.attempts_count + 1,
        current_attempt_id=attempt_id,
        site=site,
        reason="",
        not_before=None,
    )
    return Change(job=after, job_changed=True)


def wait(job: JobRecord, reason: str, now: datetime) -> Change:
    """A pending job waits for the reason the scheduler gives (a job that left PENDING since
    the scheduler looked does not change)."""
    if job.state != JobState.PENDING or job.reason == reason:
        return Change()
    return Change(job=replace(job, reason=reason, updated_at=now), job_changed=True)


# -- decisions (what the simulator calls too) -------------------------------------------------


def is_preemption(stop_reason: str) -> bool:
    return stop_reason.startswith(PREEMPTED_PREFIX)


def retried_exit(state: AttemptState, exit_code: int | None, retry_exit_codes: frozenset[int]) -> bool:
    """Whether an attempt that ended in ``state`` with ``exit_code`` failed with a code the spec
    retries (``retry.on_exit_codes``)."""
    return state == AttemptState.FAILED and exit_code is not None and exit_code in retry_exit_codes


def retries(state: AttemptState, exit_code: int | None, retry_exit_codes: frozenset[int]) -> bool:
    """Whether an attempt that ended so may be followed by another: a platform fault (LOST),
    a preemption, or a retried exit code. SUCCEEDED, CANCELLED and other failures end the job."""
    return state in (AttemptState.LOST, AttemptState.PREEMPTED) or retried_exit(state, exit_code, retry_exit_codes)


def decide_retry(
    ended: AttemptState, retries_used: int, max_retries: int, now: datetime, policy: Policy | None = None
) -> Retry:
    """After an attempt that :func:`retries` ended as ``ended``: whether the job gets one more
    attempt (``retries_used < max_retries``) and when it may be placed: after the ``policy``'s
    back-off for that retry (``Policy.retry_backoff``). A preemption is the scheduler's
    decision, not a fault: the job is requeued at once and spends no retry."""
    if ended == AttemptState.PREEMPTED:
        return Retry(retry=True, retries_used=retries_used)
    if retries_used >= max_retries:
        return Retry(retry=False, retries_used=retries_used)
    used = retries_used + 1
    delay = (policy or Policy()).retry_backoff(used)
    return Retry(retry=True, retries_used=used, not_before=now + timedelta(seconds=delay) if delay > 0 else None)


def fault_words(attempt: AttemptRecord) -> str:
    """What ended ``attempt``, for a waiting reason: "a node fault", "exit code 75", …"""
    message = attempt.message or ""
    if attempt.state == AttemptState.FAILED:
        return f"exit code {attempt.exit_code} (retry.on_exit_codes)"
    if message.startswith("node "):
        return "a node fault"
    if "lost the server" in message:
        return f"a partition between site {attempt.site} and the server"
    if "shut down" in message:
        return f"the agent of site {attempt.site} shutting down"
    if "lease" in message:
        return f"site {attempt.site} going silent"
    return f"attempt {attempt.number} was {attempt.state.value.lower()}"


def stop_grace(attempt: AttemptRecord, preempt_grace_s: float, stop_grace_s: float = STOP_GRACE_S) -> float:
    """Seconds between SIGTERM and SIGKILL in the stop order of ``attempt``: the policy's
    preemption grace for a preemption, ``stop_grace_s`` for any other stop."""
    return preempt_grace_s if attempt.stop_outcome == AttemptState.PREEMPTED else stop_grace_s
