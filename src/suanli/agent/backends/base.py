"""The backend interface: how a site agent runs attempts on its engine.

The agent owns the conversation with the server; a backend owns the work (local processes,
Slurm jobs, Ray jobs, pods). The interface is small on purpose, so that a new engine is one file
and one contract test runs against every backend (``tests/contract/``).

Optional capabilities are mixins (``MultiNode``, ``GpuAccounting``, ``KeptCheckpoints``,
``RunsContainers``), found with ``issubclass`` on the backend's class, never by trying a method
and catching the error.

The contract every backend keeps:

- Attempts are keyed by ``attempt_id``. ``start`` of an id already held does nothing: the server
  may send an assignment again when a reply was lost.
- ``start`` does not raise for faults of the attempt itself (a bad archive, a failing setup): the
  attempt ends FAILED with a message a user can act on. It raises only when the backend is broken.
- ``poll`` reports every held attempt, ended ones included, until ``forget``. A terminal state
  never changes again; ``cancel`` of an ended or unknown attempt does nothing.
- ``read_logs`` returns output not returned before, in order, each chunk with its byte offset in
  that rank's log, never splitting a UTF-8 character. ``logs_drained`` says when an ended
  attempt has no output left to return, so the agent can send the last line before the end.
- Exit codes: a process's own exit status, or ``-signum`` when it was killed by a signal
  (Python's ``Popen.returncode`` convention).
- Every method is thread-safe: the agent calls them from its heartbeat and reporter threads.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from suanli.core.protocol import AttemptAssignment, AttemptReport, LogChunk, NodeReport


class Backend(ABC):
    """Runs attempts on one site's engine. See the module docstring for the contract."""

    #: Sent to the server at registration (``local``, ``slurm``, ``fake`` …).
    name: ClassVar[str]

    @property
    def sandbox(self) -> str:
        """How this backend isolates jobs, as ``suanli sites`` shows it: by default the engine's
        own isolation, named by the engine (the local backend says ``bwrap`` or ``none``)."""
        return self.name

    @abstractmethod
    def inventory(self) -> list[NodeReport]:
        """The site's nodes as the engine sees them now, with their health."""

    @abstractmethod
    def start(self, assignment: AttemptAssignment, workdir_archive: Path | None) -> None:
        """Begin an attempt; ``workdir_archive`` is the job's ``.tar.gz`` (None: empty workdir)."""

    @abstractmethod
    def poll(self) -> list[AttemptReport]:
        """The current state of every held attempt, with exit code and message once ended."""

    @abstractmethod
    def cancel(self, attempt_id: int, grace_s: float) -> None:
        """Ask the attempt to stop (SIGTERM or the engine's equivalent), kill it after ``grace_s``.

        Returns at once; the attempt reports CANCELLED on a later ``poll`` once it has stopped.
        """

    @abstractmethod
    def read_logs(self, max_bytes: int = 256 * 1024) -> list[LogChunk]:
        """New output since the last call, about ``max_bytes`` at most in all."""

    @abstractmethod
    def logs_drained(self, attempt_id: int) -> bool:
        """True once the attempt has ended and ``read_logs`` has returned all of its output
        (also for an unknown attempt: there is nothing left to read)."""

    @abstractmethod
    def forget(self, attempt_id: int) -> None:
        """Drop the attempt (killing it first if it still runs) and free what it holds."""

    def stop_all(self, grace_s: float = 10.0, timeout_s: float | None = None) -> list[AttemptReport]:
        """Cancel every live attempt and wait until all have ended (or ``timeout_s``, by default
        ``grace_s`` + 5 s). Returns the last reports. Used at shutdown, so it blocks."""
        for report in self.poll():
            if not report.state.is_terminal():
                self.cancel(report.attempt_id, grace_s)
        deadline = time.monotonic() + (grace_s + 5.0 if timeout_s is None else timeout_s)
        while True:
            reports = self.poll()
            if all(r.state.is_terminal() for r in reports) or time.monotonic() >= deadline:
                return reports
            time.sleep(0.02)


# -- optional capabilities ----------------------------------------------------------------------


class MultiNode(ABC):  # noqa: B024 - a marker: having it is the capability
    """The backend runs one attempt across several machines (a gang), giving every rank
    ``SUANLI_NODE_RANK`` and the first node's address as ``SUANLI_MASTER_ADDR``.

    Backends without it run an attempt on one machine; an assignment of several nodes ends
    FAILED with a message saying so."""


class RunsContainers(ABC):
    """The backend runs attempts whose assignment names an ``image`` in that image (the local
    backend with podman, Slurm with ``--container``, Ray with ``runtime_env.image_uri``). The
    agent tells the server at registration whether it can now (``containers_available``); a
    backend without this capability says no, and the scheduler sends it no such jobs."""

    #: The site's name, for messages users read ("image … not found at site …"); the agent sets it.
    site_name: str = ""

    @abstractmethod
    def containers_available(self) -> bool | None:
        """Whether jobs with an ``image`` can run here now; None: the site's declaration decides
        (the engine's own OCI support, which the agent cannot check from outside)."""


class KeptCheckpoints(ABC):
    """The backend keeps a job's SUANLI_CHECKPOINT_DIR (``keep_checkpoint``) in one folder on the
    agent's machine, the same for every attempt of the job at this site
    (``staging.kept_checkpoint_dir``: ``<work_dir>/checkpoints/<job id>/``). The agent carries it
    between sites through the server (``suanli.agent.checkpoints``): it uploads the folder while
    an attempt runs and when it ends, and fills it before an attempt whose job's latest checkpoint
    was made elsewhere starts."""

    @abstractmethod
    def checkpoint_dir(self, assignment: AttemptAssignment) -> Path | None:
        """The job's kept checkpoint folder at this site (None: the job keeps none)."""

    def held_assignments(self) -> list[AttemptAssignment]:
        """The assignments of the attempts held now; how the agent finds adopted attempts."""
        return []


@dataclass(frozen=True)
class AttemptUsage:
    """What an attempt consumed, as the engine's own accounting measured it (for metering)."""

    #: Wall-clock seconds the attempt ran on the engine (queue wait excluded).
    elapsed_s: float
    #: Allocated trackable resources, as the engine names them (e.g. ``{"cpu": 2, "gres/gpu": 4}``).
    allocated: dict[str, float] = field(default_factory=dict)
    #: GPUs held for ``elapsed_s``, and their type if the engine knows it.
    gpus: int = 0
    gpu_type: str | None = None
    cpus: float = 0.0
    nodes: int = 1

    @property
    def gpu_seconds(self) -> float:
        return self.gpus * self.elapsed_s

    @property
    def cpu_seconds(self) -> float:
        return self.cpus * self.elapsed_s


class GpuAccounting(ABC):
    """The engine meters what each attempt used (Slurm's ``sacct``); the agent may report it."""

    @abstractmethod
    def usage(self, attempt_id: int) -> AttemptUsage | None:
        """The attempt's usage once the engine has accounted for it (None until then, or for an
        unknown attempt)."""
