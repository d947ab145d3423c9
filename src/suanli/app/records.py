"""Stored rows as the typed records of ``core``: a job's spec parsed once, jobs and attempts
as the lifecycle's records. Every default of a spec field comes from ``core/spec.py``.

A stored spec may no longer validate: it was submitted before a bound was added or tightened
(a ``time_limit`` of 3000000d, say). Such a spec still reads: its failing fields fall back
to their defaults (``run`` keeps its stored text), and :func:`check_spec` says, for the
fields a caller depends on, why they did not validate (the scheduler makes that the job's
reason, so the job waits, saying so, instead of breaking a pass).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from pydantic import ValidationError

from suanli.core.lifecycle import AttemptRecord, JobRecord, RetryRules
from suanli.core.spec import JobSpec
from suanli.core.states import AttemptState, JobState
from suanli.store.models import Attempt, Job

log = logging.getLogger("suanli.server")


@dataclass(frozen=True)
class StoredSpec:
    """A job's stored spec, parsed."""

    spec: JobSpec
    #: Why the stored spec did not validate as it is (its failing fields took their defaults).
    error: ValidationError | None = None
    #: The top-level fields that failed.
    failed: frozenset[str] = frozenset()


#: Per row, with the stored dict it was parsed from: a pass that reads a job many times parses
#: its spec once, and a spec assigned anew is parsed anew.
_parsed: WeakKeyDictionary[Job, tuple[object, StoredSpec]] = WeakKeyDictionary()


def parse_stored(data: Mapping[str, Any]) -> StoredSpec:
    """``data`` (a stored spec) as a JobSpec; see the module's docstring for one that fails."""
    try:
        return StoredSpec(JobSpec.model_validate(data))
    except ValidationError as exc:
        error = exc
    failed = frozenset(str(e["loc"][0]) for e in error.errors() if e["loc"])
    kept = {k: v for k, v in data.items() if k not in failed}
    if "run" in failed:
        if not isinstance(data.get("run"), str):
            raise error  # no command at all: nothing to salvage
        kept["run"] = "true"  # a placeholder while the rest validates; the stored text is put back
    try:
        spec = JobSpec.model_validate(kept)
    except ValidationError:
        raise error from None
    if "run" in failed:
        spec = spec.model_copy(update={"run": str(data.get("run", ""))})
    return StoredSpec(spec, error, failed)


def stored_spec(job: Job) -> StoredSpec:
    """The job's spec, parsed once per row (see :func:`parse_stored`)."""
    data = job.spec
    cached = _parsed.get(job)
    if cached is not None and cached[0] is data:
        return cached[1]
    parsed = parse_stored(data if isinstance(data, Mapping) else {})
    if parsed.error is not None:
        log.warning("job %s: its stored spec does not validate in %s", job.id, ", ".join(sorted(parsed.failed)))
    _parsed[job] = (data, parsed)
    return parsed


def job_spec(job: Job) -> JobSpec:
    """The job's spec, typed: read its fields as attributes, with the defaults of ``core/spec.py``."""
    return stored_spec(job).spec


def check_spec(job: Job, fields: Iterable[str]) -> JobSpec:
    """The job's spec, if every one of ``fields`` validated as stored; else raises the stored
    spec's ValidationError."""
    parsed = stored_spec(job)
    if parsed.error is not None and parsed.failed & set(fields):
        raise parsed.error
    return parsed.spec


def job_record(job: Job, *, retry: bool = True) -> JobRecord:
    """The job as the lifecycle's record; ``retry=False`` leaves out its retry rules (and so
    does not parse its spec) for operations that never retry (``place``, ``wait``)."""
    rules = None
    if retry:
        spec = job_spec(job)
        rules = RetryRules(max_retries=spec.max_retries, on_exit_codes=frozenset(spec.retry.on_exit_codes))
    return JobRecord(
        state=JobState(job.state),
        reason=job.reason or "",
        retries_used=job.retries_used or 0,
        retry=rules,
        attempts_count=job.attempts_count or 0,
        current_attempt_id=job.current_attempt_id,
        cancel_requested=bool(job.cancel_requested),
        site=job.site,
        exit_code=job.exit_code,
        not_before=job.not_before,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )


def attempt_record(attempt: Attempt) -> AttemptRecord:
    return AttemptRecord(
        id=attempt.id,
        number=attempt.number,
        site=attempt.site,
        state=AttemptState(attempt.state),
        message=attempt.message or "",
        exit_code=attempt.exit_code,
        delivered=bool(attempt.delivered),
        stop_requested=bool(attempt.stop_requested),
        stop_reason=attempt.stop_reason or "",
        stop_outcome=AttemptState(attempt.stop_outcome) if attempt.stop_outcome else None,
        started_at=attempt.started_at,
        ended_at=attempt.ended_at,
    )
