"""Surviving the agent's own faults: the optional backend capability ``Recoverable``.

A backend whose attempts outlive the agent process (the local backend: process groups in their
own sessions) can do three things for the agent, which finds the capability with
``isinstance`` (a mixin, like ``MultiNode``):

- **adopt** after a restart: find the attempts a previous agent process was running and hold
  them again, with their fencing tokens, so the agent reports them instead of losing them;
- **keep alive**: a liveness mark the agent refreshes while it runs. Each attempt stops by
  itself once the mark is older than the orphan timeout: the server has declared it lost by
  then and may run the job elsewhere, so an orphan never runs beside its replacement;
- **remember accepted output**: log offsets the server has accepted, so an adopted attempt's
  output continues where the server's copy ends instead of starting again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from suanli.core.protocol import LogChunk


def orphan_timeout(lease_s: float) -> float:
    """How long attempts outlive a silent agent: well inside the lease, so they have stopped
    (SIGTERM, a short grace, SIGKILL) before the server's lease runs out and a replacement can
    start; the same bound stops the attempts of an agent cut off from the server."""
    return max(lease_s * 0.5, lease_s - 6.0)


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
