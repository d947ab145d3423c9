"""The one place where the lifecycle's decisions (``core/lifecycle.py``) reach the rows.

Callers read a job and its attempt with ``records.job_record``/``records.attempt_record``, call
one operation of ``core.lifecycle`` and hand its :class:`Change` to :func:`apply_change`. No
other code writes a job's or an attempt's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from suanli.app.records import attempt_record, job_record
from suanli.core import lifecycle
from suanli.core.lifecycle import AttemptRecord, Change, JobRecord
from suanli.core.scheduling.model import Policy
from suanli.store.models import Attempt, Job


def apply_change(job: Job | None, attempt: Attempt | None, change: Change) -> Change:
    """Write ``change`` to the rows it concerns (only the fields whose value differs) and
    return it."""
    if change.job is not None:
        if job is None:
            raise ValueError("a change to a job needs the job's row")
        _write_job(job, change.job)
    if change.attempt is not None:
        if attempt is None:
            raise ValueError("a change to an attempt needs the attempt's row")
        _write_attempt(attempt, change.attempt)
    return change


def _write_job(row: Job, new: JobRecord) -> None:
    values = {
        "state": new.state.value,
        "reason": new.reason,
        "retries_used": new.retries_used,
        "attempts_count": new.attempts_count,
        "current_attempt_id": new.current_attempt_id,
        "cancel_requested": new.cancel_requested,
        "site": new.site,
        "exit_code": new.exit_code,
        "not_before": new.not_before,
        "updated_at": new.updated_at,
        "finished_at": new.finished_at,
    }
    _write(row, values)


def _write_attempt(row: Attempt, new: AttemptRecord) -> None:
    values = {
        "state": new.state.value,
        "message": new.message,
        "exit_code": new.exit_code,
        "stop_requested": new.stop_requested,
        "stop_reason": new.stop_reason,
        "stop_outcome": new.stop_outcome.value if new.stop_outcome is not None else None,
        "started_at": new.started_at,
        "ended_at": new.ended_at,
    }
    _write(row, values)


def _write(row: Job | Attempt, values: Mapping[str, object]) -> None:
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def records(job: Job | None, attempt: Attempt | None) -> tuple[JobRecord | None, AttemptRecord | None]:
    return (job_record(job) if job is not None else None, attempt_record(attempt) if attempt is not None else None)


def requeue_or_fail(job: Job, attempt: Attempt, now: datetime, policy: Policy | None = None) -> Change:
    """``core.lifecycle.requeue_or_fail`` on the rows: ``attempt`` has ended (by a platform
    fault, or with an exit code the spec retries); a new attempt while retries last, else FAILED."""
    return apply_change(job, None, lifecycle.requeue_or_fail(job_record(job), attempt_record(attempt), now, policy))
