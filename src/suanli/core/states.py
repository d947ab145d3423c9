"""Job and attempt lifecycles as explicit transition tables (never ``assert``)."""

from __future__ import annotations

from enum import StrEnum

from suanli.core.errors import TransitionError


class JobState(StrEnum):
    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def is_terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES

    def is_active(self) -> bool:
        """Holds (or is about to hold) resources at a site."""
        return self in (JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING)


#: The reason a job shows between its submission and the first scheduling pass that sees it.
QUEUED_REASON = "queued for the next scheduling pass"

TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class AttemptState(StrEnum):
    SCHEDULED = "SCHEDULED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    LOST = "LOST"
    PREEMPTED = "PREEMPTED"

    def is_terminal(self) -> bool:
        return self not in (AttemptState.SCHEDULED, AttemptState.STARTING, AttemptState.RUNNING)


_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.SCHEDULED, JobState.CANCELLED, JobState.FAILED}),
    JobState.SCHEDULED: frozenset(
        {JobState.STARTING, JobState.RUNNING, JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.STARTING: frozenset(
        {JobState.RUNNING, JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset({JobState.PENDING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

_ATTEMPT_TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    AttemptState.SCHEDULED: frozenset(set(AttemptState) - {AttemptState.SCHEDULED}),
    AttemptState.STARTING: frozenset(set(AttemptState) - {AttemptState.SCHEDULED, AttemptState.STARTING}),
    AttemptState.RUNNING: frozenset(
        set(AttemptState) - {AttemptState.SCHEDULED, AttemptState.STARTING, AttemptState.RUNNING}
    ),
}


def can_transition_job(old: JobState, new: JobState) -> bool:
    return old == new or new in _JOB_TRANSITIONS[old]


def check_job_transition(old: JobState, new: JobState) -> None:
    if not can_transition_job(old, new):
        raise TransitionError(f"a job cannot go from {old.value} to {new.value}")


def can_transition_attempt(old: AttemptState, new: AttemptState) -> bool:
    return old == new or new in _ATTEMPT_TRANSITIONS.get(old, frozenset())


def job_state_for_attempt(state: AttemptState) -> JobState:
    """The job state that mirrors an attempt's state while that attempt is current."""
    return {
        AttemptState.SCHEDULED: JobState.SCHEDULED,
        AttemptState.STARTING: JobState.STARTING,
        AttemptState.RUNNING: JobState.RUNNING,
        AttemptState.SUCCEEDED: JobState.SUCCEEDED,
        AttemptState.FAILED: JobState.FAILED,
        AttemptState.CANCELLED: JobState.CANCELLED,
        AttemptState.LOST: JobState.PENDING,
        AttemptState.PREEMPTED: JobState.PENDING,
    }[state]


class TransferState(StrEnum):
    """A data transfer's state (stored lowercase, as the ledger's ``transfer.state`` entries say it)."""

    #: Waiting for an accepted filing; the reason names the one it waits for.
    HELD = "held"
    #: Refused by the data rules: it never moves.
    DENIED = "denied"
    #: Allowed to move now; nobody asked for it to run yet.
    READY = "ready"
    #: Handed to the transfer runner; it starts when a copy slot frees.
    QUEUED = "queued"
    #: Bytes are moving.
    RUNNING = "running"
    #: Broke off (the reason says why); running it again resumes where it stopped.
    FAILED = "failed"
    #: Copied, encrypted and verified: the destination holds a replica.
    DONE = "done"

    def is_terminal(self) -> bool:
        return self in (TransferState.DENIED, TransferState.DONE)


_TRANSFER_TRANSITIONS: dict[TransferState, frozenset[TransferState]] = {
    TransferState.HELD: frozenset(
        {TransferState.READY, TransferState.QUEUED, TransferState.RUNNING, TransferState.DENIED}
    ),
    TransferState.READY: frozenset(
        {TransferState.QUEUED, TransferState.RUNNING, TransferState.HELD, TransferState.DENIED}
    ),
    TransferState.QUEUED: frozenset(
        {TransferState.RUNNING, TransferState.FAILED, TransferState.HELD, TransferState.DENIED}
    ),
    TransferState.RUNNING: frozenset(
        {TransferState.DONE, TransferState.FAILED, TransferState.QUEUED, TransferState.HELD, TransferState.DENIED}
    ),
    TransferState.FAILED: frozenset(
        {TransferState.QUEUED, TransferState.RUNNING, TransferState.HELD, TransferState.DENIED}
    ),
    TransferState.DENIED: frozenset(),
    TransferState.DONE: frozenset(),
}


def check_transfer_transition(old: TransferState, new: TransferState) -> None:
    if old != new and new not in _TRANSFER_TRANSITIONS[old]:
        raise TransitionError(f"a transfer cannot go from {old.value} to {new.value}")
