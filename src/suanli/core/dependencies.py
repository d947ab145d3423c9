"""Job dependencies (``after:`` in a spec, ``suanli submit --after``), as Slurm's ``--dependency``.

Pure: given a job's dependencies and the states of the jobs they name, :func:`decide` says
whether the job may be scheduled, must wait (and for which job), or never can (and why). The
scheduling pass asks it for every pending job that has dependencies; ``suanli explain`` too.
The words it returns are what users read in the job's reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from suanli.core.states import JobState


class When(StrEnum):
    """When a dependency is met; the values are what a spec and ``--after ID:WHEN`` say."""

    #: The job SUCCEEDED (Slurm's ``afterok``; the default).
    OK = "ok"
    #: The job ended, in any way (``afterany``).
    ANY = "any"
    #: The job FAILED or was CANCELLED (``afternotok``).
    NOTOK = "notok"

    @property
    def slurm(self) -> str:
        """Slurm's name for it: afterok, afterany, afternotok."""
        return f"after{self.value}"


#: The terminal states that meet a dependency of each kind.
MEETS: Mapping[When, frozenset[JobState]] = {
    When.OK: frozenset({JobState.SUCCEEDED}),
    When.ANY: frozenset(s for s in JobState if s.is_terminal()),
    When.NOTOK: frozenset(s for s in JobState if s.is_terminal() and s != JobState.SUCCEEDED),
}


@dataclass(frozen=True)
class Dependency:
    """Start only once job ``job`` ended as ``when`` says."""

    job: str
    when: When = When.OK

    @property
    def words(self) -> str:
        """``job X (afterok)``, as reasons name it."""
        return f"job {self.job} ({self.when.slurm})"


def parse_dependency(text: str) -> Dependency:
    """``ID`` or ``ID:WHEN`` (``WHEN``: ok, any, notok; Slurm's afterok, afterany and
    afternotok are accepted too). Raises ValueError with the fix."""
    job, sep, when = text.strip().partition(":")
    job, when = job.strip(), when.strip().lower().removeprefix("after")
    if not job:
        raise ValueError(f"'{text}' names no job: write a job id, e.g. 'abc123' or 'abc123:any'")
    if not sep:
        return Dependency(job)
    try:
        return Dependency(job, When(when))
    except ValueError:
        raise ValueError(
            f"'{text}': after ':' write when the job may start: ok (it succeeded), any (it ended) "
            "or notok (it failed or was cancelled)"
        ) from None


def parse_dependencies(text: str) -> list[Dependency]:
    """A comma-separated list, as ``suanli submit --after A,B:any`` takes it."""
    return [parse_dependency(part) for part in text.split(",") if part.strip()]


class Outcome(StrEnum):
    MET = "met"
    WAITING = "waiting"
    NEVER = "never"


@dataclass(frozen=True)
class Verdict:
    """Whether a job's dependencies let it be scheduled; ``reason`` says why not."""

    outcome: Outcome
    reason: str = ""


#: A job whose dependency cannot be met any more ends CANCELLED with a reason that starts so.
NEVER_PREFIX = "dependency never satisfied: "


def decide(after: Sequence[Dependency], states: Mapping[str, JobState]) -> Verdict:
    """The verdict on dependencies ``after`` given the states of the jobs they name. A job
    missing from ``states`` (deleted since) can never meet a dependency. One dependency that
    can never be met decides it at once: waiting for the others would be time lost."""
    waiting: list[Dependency] = []
    for dep in after:
        state = states.get(dep.job)
        if state is None:
            return Verdict(Outcome.NEVER, f"{NEVER_PREFIX}job {dep.job} no longer exists ({dep.when.slurm})")
        if not state.is_terminal():
            waiting.append(dep)
        elif state not in MEETS[dep.when]:
            return Verdict(Outcome.NEVER, f"{NEVER_PREFIX}job {dep.job} ended {state.value} ({dep.when.slurm})")
    if not waiting:
        return Verdict(Outcome.MET)
    more = f" and {len(waiting) - 1} more" if len(waiting) > 1 else ""
    return Verdict(Outcome.WAITING, f"waiting for {waiting[0].words}{more}")
