"""What the engine backends (Slurm, Ray) share in following their attempts: the record the agent
keeps of each (:class:`EngineAttempt`), and ``poll``, ``cancel`` and the ending of an attempt
(:class:`EngineBackend`).

``poll`` asks the engine about the live attempts at most every ``refresh_s`` seconds (the agent
polls ten times a second) and reports every held attempt. ``cancel`` marks the attempt cancelled
and has the engine stop its job; the engine's own wait before SIGKILL is the grace period. The
ends that every engine reports alike say the same words: succeeded (exit code 0), cancelled
(exit code -15; "cancelled" when the server asked, the engine's words when someone stopped the
job there), the time limit reached, setup or run exited with a code.

A backend brings its engine's part: :meth:`EngineBackend._ask_engine` (what the engine says of
the live jobs, as attempt states), :meth:`EngineBackend._stop` (stop one job) and
:meth:`EngineBackend._ended` (what else the end of an attempt writes). Staging an attempt's
folder, its environment and its logs is :mod:`suanli.agent.backends.staging`.

Orphans: an engine's jobs outlive the agent, and an engine backend adopts none after a restart.
Every job suanli submits is named ``suanli-…`` (:data:`JOB_PREFIX`) and carries its site's
marker (Slurm's ``--comment=suanli-site=<site>``, Ray's ``metadata.suanli_site``), so
:meth:`EngineBackend.sweep_orphans` can cancel, at an agent's start, the live jobs of its own
site that it does not hold, and never touch another site's or anyone else's jobs.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from suanli.agent.backends.base import Backend
from suanli.agent.backends.staging import exit_words
from suanli.core.protocol import AttemptAssignment, AttemptReport
from suanli.core.resources import format_duration
from suanli.core.states import AttemptState

#: The exit code a cancelled attempt reports: the engine ended it with SIGTERM.
CANCELLED_EXIT_CODE = -15
#: The start of the name of every engine job suanli submits.
JOB_PREFIX = "suanli-"


def site_marker(site: str) -> str:
    """What a Slurm job's ``--comment`` says to name the suanli site whose agent submitted it."""
    return f"suanli-site={site}"


@dataclass(frozen=True)
class EngineJob:
    """A job as the engine lists it, for the sweep of orphans."""

    engine_id: int | str
    name: str
    #: The suanli site its marker names (None: it carries no suanli marker).
    site: str | None
    #: Still pending or running on the engine.
    live: bool


@dataclass
class EngineAttempt(ABC):
    """An attempt as the agent follows it on an engine; each backend adds its engine's handles."""

    spec: AttemptAssignment
    dir: Path
    state: AttemptState = AttemptState.STARTING
    exit_code: int | None = None
    message: str = ""
    #: The server cancelled it: the engine's stop is reported as "cancelled".
    cancelled: bool = False
    #: Seconds the job has run on the engine (to its end once ended).
    elapsed_s: float | None = None

    @property
    def ended(self) -> bool:
        return self.state.is_terminal()

    @property
    @abstractmethod
    def engine_id(self) -> int | str | None:
        """The engine's id of the job; None until it is submitted (and for one never submitted)."""

    def report(self) -> AttemptReport:
        return AttemptReport(
            attempt_id=self.spec.attempt_id,
            fencing_token=self.spec.fencing_token,
            state=self.state,
            exit_code=self.exit_code,
            message=self.message,
            elapsed_s=self.elapsed_s,
        )


A = TypeVar("A", bound=EngineAttempt)


def run_seconds(start: float, end: float | None, now: float) -> float:
    """How long a job has run: from ``start`` to ``end``, or to ``now`` while it has no end yet
    (None, or an end before its start: the engine's placeholder)."""
    return max(0.0, (end if end is not None and end >= start else now) - start)


class EngineBackend(Backend, Generic[A]):
    """What a backend that hands attempts to an engine does the same way on every engine.

    A subclass names its ``engine`` (for messages) and its ``_log``, touches ``_attempts`` only
    under ``_lock``, and sets ``_seen_at = -1e9`` to have the next ``poll`` ask the engine at once
    (after a submit or a stop). ``refresh_s``: how stale the engine's answer may be.
    """

    #: The engine's name in messages: "Slurm", "Ray".
    engine: ClassVar[str]
    _log: ClassVar[logging.Logger]

    def __init__(self, work_dir: Path, *, refresh_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.work_dir = Path(work_dir)
        self._refresh_s, self._clock = refresh_s, clock
        self._attempts: dict[int, A] = {}
        self._lock = threading.RLock()
        self._seen_at = -1e9
        (self.work_dir / "attempts").mkdir(parents=True, exist_ok=True)

    # -- Backend --------------------------------------------------------------------------
    def poll(self) -> list[AttemptReport]:
        with self._lock:
            self._refresh()
            return [a.report() for a in self._attempts.values()]

    def cancel(self, attempt_id: int, grace_s: float) -> None:
        """Has the engine stop the job (:meth:`_stop`); the grace period is the engine's own wait
        before SIGKILL, not ``grace_s``."""
        with self._lock:
            a = self._attempts.get(attempt_id)
            if a is None or a.ended:
                return
            a.cancelled = True
            self._stop(a)
            self._seen_at = -1e9

    def sweep_orphans(self, site: str) -> list[int | str]:
        """Cancel the engine's live jobs that an agent of ``site`` submitted (named
        :data:`JOB_PREFIX`… and carrying ``site``'s marker) and that this backend does not hold.

        Called when an agent starts: an engine backend adopts nothing, so such a job belongs to
        a previous agent process whose attempt no one reports any more; the server declares it
        LOST at its lease and runs it again, and the job must not run beside its replacement nor
        finish unreported. Jobs of other sites, other users' jobs and the attempts held here are
        left alone. Returns the engine ids cancelled; raises when the engine cannot be asked."""
        with self._lock:  # start() submits under this lock: a job it submits is held before it is listed
            held = {a.engine_id for a in self._attempts.values() if a.engine_id is not None}
            swept: list[int | str] = []
            for job in self._list_jobs():
                if not job.live or job.site != site or not job.name.startswith(JOB_PREFIX) or job.engine_id in held:
                    continue
                self._log.warning(
                    "cancelling %s job %s (%s): left by a previous agent of site %s, whose attempt no agent holds now",
                    self.engine,
                    job.engine_id,
                    job.name,
                    site,
                )
                self._cancel_job(job.engine_id)
                swept.append(job.engine_id)
            return swept

    # -- the engine's part ----------------------------------------------------------------
    @abstractmethod
    def _list_jobs(self) -> list[EngineJob]:
        """The jobs the engine knows, with the suanli site each one's marker names."""

    @abstractmethod
    def _cancel_job(self, engine_id: int | str) -> None:
        """Have the engine stop one job by its id (one this backend may not hold)."""

    @abstractmethod
    def _ask_engine(self, live: list[A], now: float) -> None:
        """Ask the engine about the jobs of ``live`` (attempts submitted and not ended) and apply
        what it says to them; set ``_seen_at`` to ``now`` once asking counts as done (an engine
        that fails before then is asked again at the next ``poll``)."""

    @abstractmethod
    def _stop(self, a: A) -> None:
        """Have the engine stop the attempt's job, if it was submitted."""

    @abstractmethod
    def _ended(self, a: A, note_it: bool) -> None:
        """What else the end of ``a`` writes (``note_it``: the message goes into its log too)."""

    # -- inside ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        now = self._clock()
        live = [a for a in self._attempts.values() if not a.ended and a.engine_id is not None]
        if not live or now - self._seen_at < self._refresh_s:
            return
        self._ask_engine(live, now)

    def _end(self, a: A, state: AttemptState, code: int | None, message: str, *, note_it: bool = False) -> None:
        """End the attempt with ``state``, ``code`` and ``message``; ``note_it``: also write the
        message into its log (an end that the job's own output does not explain)."""
        a.state, a.exit_code, a.message = state, code, message
        self._ended(a, note_it)
        self._log.info(
            "attempt %s (%s job %s) %s%s",
            a.spec.attempt_id,
            self.engine,
            a.engine_id,
            state.value,
            f": {message}" if message else "",
        )

    def _succeeded(self, a: A) -> None:
        self._end(a, AttemptState.SUCCEEDED, 0, "")

    def _cancelled(self, a: A, otherwise: str) -> None:
        """The engine stopped the job: "cancelled" when the server asked, else ``otherwise``."""
        self._end(a, AttemptState.CANCELLED, CANCELLED_EXIT_CODE, "cancelled" if a.cancelled else otherwise)

    def _timed_out(self, a: A, code: int | None) -> None:
        limit = a.spec.time_limit_s
        self._end(a, AttemptState.FAILED, code, f"time limit {format_duration(limit or 0)} reached", note_it=True)

    def _exited(self, a: A, phase: str, code: int, where: str = "") -> None:
        """Setup or run (``phase``) exited with ``code``; ``where``: on which rank, in words."""
        self._end(a, AttemptState.FAILED, code, f"{phase} {exit_words(code)}{where}")
