"""Node health checks: an operator's program run per node on an interval (like Slurm's
HealthCheckProgram). Exit 0 means healthy; anything else marks the node unhealthy, with the
first line the program printed as the reason ("XID 79: GPU fell off the bus").

The agent takes any ``NodeHealth`` (``apply`` overlays verdicts on the backend's inventory):
this ``HealthChecker``, ``suanli.agent.nvml_health.NvmlHealth`` (GPU faults from NVML), or
several of them in ``HealthChecks``."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from suanli.core.protocol import NodeReport

log = logging.getLogger("suanli.agent")


class NodeHealth(Protocol):
    def apply(self, nodes: Sequence[NodeReport]) -> list[NodeReport]:
        """The inventory with this check's verdicts on it."""
        ...


class HealthChecks:
    """Several checks, applied in turn: a node is unhealthy if any says so, for all their reasons."""

    def __init__(self, *checks: NodeHealth) -> None:
        self.checks = list(checks)

    def apply(self, nodes: Sequence[NodeReport]) -> list[NodeReport]:
        out = list(nodes)
        for check in self.checks:
            out = check.apply(out)
        return out


def overlay(node: NodeReport, reason: str, *, transient: bool = False) -> NodeReport:
    """``node`` with one more reason to be unhealthy. A lasting fault outranks a transient one
    (whose reason it replaces); reasons of the same kind are joined."""
    if node.healthy:
        return node.model_copy(update={"healthy": False, "reason": reason, "transient": transient})
    if node.transient and not transient:
        return node.model_copy(update={"reason": reason, "transient": False})
    if node.transient == transient and reason not in node.reason:
        return node.model_copy(update={"reason": f"{node.reason}; {reason}" if node.reason else reason})
    return node


@dataclass
class Verdict:
    healthy: bool
    reason: str
    at: float


class HealthChecker:
    """Runs ``program`` (a shell command) for each node at most every ``interval_s`` seconds,
    with SUANLI_NODE_NAME set. Results are cached; ``apply`` overlays them on an inventory."""

    def __init__(
        self,
        program: str,
        interval_s: float = 60.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.program, self.interval_s, self.timeout_s, self.clock = program, interval_s, timeout_s, clock
        self._verdicts: dict[str, Verdict] = {}
        self._lock = threading.Lock()

    def check(self, node: str) -> Verdict:
        env = {**os.environ, "SUANLI_NODE_NAME": node}
        try:
            done = subprocess.run(
                ["bash", "-c", self.program],
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Verdict(False, f"health check timed out after {self.timeout_s:g}s", self.clock())
        if done.returncode == 0:
            return Verdict(True, "", self.clock())
        first = next((line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()), "")
        reason = first or f"health check exited with code {done.returncode}"
        return Verdict(False, f"health check: {reason}", self.clock())

    def apply(self, nodes: Sequence[NodeReport]) -> list[NodeReport]:
        """The inventory with each node's latest verdict (re-checked when older than the interval)."""
        out: list[NodeReport] = []
        for node in nodes:
            with self._lock:
                verdict = self._verdicts.get(node.name)
            if verdict is None or self.clock() - verdict.at >= self.interval_s:
                verdict = self.check(node.name)
                with self._lock:
                    previous = self._verdicts.get(node.name)
                    self._verdicts[node.name] = verdict
                if previous is None or previous.healthy != verdict.healthy:
                    level = logging.INFO if verdict.healthy else logging.WARNING
                    log.log(
                        level,
                        "node %s is %s %s",
                        node.name,
                        "healthy" if verdict.healthy else "unhealthy",
                        verdict.reason,
                    )
            if not verdict.healthy:
                node = overlay(node, verdict.reason)
            out.append(node)
        return out
