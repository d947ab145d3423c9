"""Surviving the agent's own faults: the optional backend capability ``Recoverable``.

A backend whose attempts outlive the agent process (the local backend: process groups in their
own sessions) can do three things for the agent, which finds the capability with
``isinstance`` (a mixin, like ``MultiNode``):

- **adopt** after a restart: find the attempts a previous agent process was running and hold
  them again, with their fencing tokens, so the agent reports them instead of losing them;
- **keep alive**: a liveness mark the agent refreshes while it runs, naming the agent process
  and when the server last renewed its leases. Each attempt is frozen the moment the agent
  process dies, goes on if a restarted agent adopts it, and is stopped once the mark, or the
  last renewal, is older than the orphan timeout: before the server may declare it lost and run
  the job elsewhere, so an orphan never runs beside its replacement, nor finishes unreported;
- **remember accepted output**: log offsets the server has accepted, so an adopted attempt's
  output continues where the server's copy ends instead of starting again.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from suanli.core.protocol import LogChunk

#: The supervisor's grace between SIGTERM and SIGKILL when it stops an orphan, at most (seconds;
#: ``local_proc`` passes it as ``--grace``); it uses ``min(this, max(0.5, orphan timeout / 8))``.
SUPERVISOR_GRACE_S = 3.0
#: How often a supervisor looks at the liveness file (``supervisor.CHECK_S``).
SUPERVISOR_CHECK_S = 0.25


def orphan_timeout(lease_s: float) -> float:
    """How long attempts outlive a silent agent, or the last renewal of their lease: well inside
    the lease, so they have stopped (SIGTERM, a short grace, SIGKILL) before the server's lease
    runs out and a replacement can start (``fence_deadline(lease) < lease``, docs/faults.md)."""
    return max(lease_s * 0.5, lease_s - 6.0)


def fence_deadline(lease_s: float) -> float:
    """Seconds after the last renewal of a lease by which a supervisor has killed its rank, at
    the latest: the orphan timeout, one look at the liveness file, the grace. The server
    requeues no earlier than ``lease_s`` after that renewal, so this must stay below it."""
    timeout = orphan_timeout(lease_s)
    return timeout + SUPERVISOR_CHECK_S + min(SUPERVISOR_GRACE_S, max(0.5, timeout / 8))


def liveness_text(orphan_timeout_s: float | None, agent: str, pid: int, renewed: float | None) -> str:
    """The liveness file's content: the orphan timeout (0: off) on the first line, then the agent
    process (``pid``, ``agent``: an id of this process) and ``renewed``: the wall-clock time at or
    before which the server last renewed this agent's leases (absent: not known)."""
    lines = [f"{orphan_timeout_s or 0:g}", f"pid {pid}", f"agent {agent}"]
    if renewed is not None:
        lines.append(f"renewed {renewed:.3f}")
    return "\n".join(lines) + "\n"


def read_renewed(path: Path) -> float | None:
    """``renewed`` from a liveness file (a previous agent process's), None if it has none."""
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(" ")
            if key == "renewed":
                return float(value)
    return None


class Recoverable(ABC):
    """Attempts that survive the agent process. See the module docstring."""

    @abstractmethod
    def adopt(self) -> dict[int, float]:
        """Take over the attempts a previous agent process left running (or ended and not yet
        reported). Returns each adopted attempt's id and the seconds since it started."""

    @abstractmethod
    def keepalive(self) -> None:
        """Refresh the liveness mark (cheap; rate-limited inside)."""

    @abstractmethod
    def set_orphan_timeout(self, seconds: float | None) -> None:
        """Attempts stop by themselves when the agent is silent this long (None: never)."""

    @abstractmethod
    def logs_accepted(self, chunks: Sequence[LogChunk]) -> None:
        """The server has stored these chunks (returned earlier by ``read_logs``)."""

    @abstractmethod
    def lease_renewed(self, at: float) -> None:
        """The server renewed the leases of this agent's attempts at or after ``at`` (wall clock,
        ``time.time()``): the attempts stop by themselves once that is older than the orphan
        timeout, even while the agent lives (cut off from the server)."""

    @abstractmethod
    def last_renewal(self) -> float | None:
        """The last ``lease_renewed`` known here, a previous agent process's included (None:
        none): a restarted agent that cannot reach the server stops adopted attempts by it."""
