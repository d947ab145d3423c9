"""FakeBackend: an in-memory backend shipped in the package (as httpx ships MockTransport).

Tests, the simulator and users' own tests run whole networks with it: nothing is executed,
the test decides what each attempt prints and how it ends. It keeps the same contract as every
backend (checked by the contract test), so an agent driven by it behaves as in production.

    backend = FakeBackend([NodeDecl(name="tj-01", gpus="H100:8", cpus=64, memory=512)])
    ...                                   # the agent starts attempt 7
    backend.emit(7, "epoch 1 loss 0.3\\n")
    backend.finish(7, exit_code=0)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.base import Backend
from suanli.agent.backends.logstream import Utf8Stream
from suanli.core.network import NodeDecl
from suanli.core.protocol import AttemptAssignment, AttemptReport, LogChunk, NodeReport
from suanli.core.states import AttemptState

#: What a cancelled fake attempt reports as its exit code: killed by SIGTERM.
CANCELLED_EXIT_CODE = -15


@dataclass
class FakeAttempt:
    """One attempt as the fake holds it; tests may read it (``backend.attempts[id]``)."""

    assignment: AttemptAssignment
    archive: Path | None
    state: AttemptState = AttemptState.RUNNING
    exit_code: int | None = None
    message: str = ""
    #: Everything emitted so far, per rank, as bytes (what a log file would hold).
    output: dict[int, bytearray] = field(default_factory=dict)
    streams: dict[int, Utf8Stream] = field(default_factory=dict)
    #: The grace period of the cancel that ended it, if one did.
    cancel_grace_s: float | None = None

    def unread(self) -> bool:
        return any(len(data) > self.streams[rank].emitted for rank, data in self.output.items())


class FakeBackend(Backend):
    """In-memory backend: ``start`` records the attempt as RUNNING; the test does the rest."""

    name = "fake"

    def __init__(self, nodes: Sequence[NodeDecl | NodeReport] | None = None) -> None:
        declared = nodes if nodes is not None else [NodeReport(name="fake-0", cpus=8, memory=32)]
        self._nodes: dict[str, NodeReport] = {}
        for n in declared:
            report = n if isinstance(n, NodeReport) else _report_of(n)
            self._nodes[report.name] = report.model_copy()
        self.attempts: dict[int, FakeAttempt] = {}
        #: Every assignment started, in order (duplicates are not recorded twice).
        self.started: list[AttemptAssignment] = []
        #: Every cancel call, as (attempt_id, grace_s), including ones for unknown attempts.
        self.cancels: list[tuple[int, float]] = []
        #: Every forget call's attempt id.
        self.forgotten: list[int] = []
        self._lock = threading.RLock()

    # -- driving it from a test -----------------------------------------------------------
    def emit(self, attempt_id: int, text: str | bytes, rank: int = 0) -> None:
        """The attempt's ``rank`` prints ``text`` (bytes may split a UTF-8 character)."""
        with self._lock:
            a = self._held(attempt_id)
            if a.state.is_terminal():
                raise ValueError(f"attempt {attempt_id} has ended ({a.state.value}); it cannot print any more")
            data = text.encode() if isinstance(text, str) else text
            a.output.setdefault(rank, bytearray()).extend(data)
            a.streams.setdefault(rank, Utf8Stream())

    def finish(
        self,
        attempt_id: int,
        exit_code: int | None = 0,
        *,
        state: AttemptState | None = None,
        message: str | None = None,
    ) -> None:
        """End the attempt: SUCCEEDED for code 0, FAILED otherwise, or ``state`` if given."""
        with self._lock:
            a = self._held(attempt_id)
            if a.state.is_terminal():
                raise ValueError(f"attempt {attempt_id} has already ended ({a.state.value})")
            if state is None:
                state = AttemptState.SUCCEEDED if exit_code == 0 else AttemptState.FAILED
            if not state.is_terminal():
                raise ValueError(f"finish() needs a terminal state, not {state.value}; use set_state()")
            a.state, a.exit_code = state, exit_code
            if message is not None:
                a.message = message
            elif state is AttemptState.FAILED and exit_code is not None:
                a.message = f"run exited with code {exit_code}"

    def set_state(self, attempt_id: int, state: AttemptState) -> None:
        """Move a live attempt to another live state (e.g. back to STARTING to test reports)."""
        with self._lock:
            a = self._held(attempt_id)
            if a.state.is_terminal() or state.is_terminal():
                raise ValueError("set_state() moves between live states only; use finish() to end an attempt")
            a.state = state

    def set_healthy(self, node: str, healthy: bool = True, reason: str = "") -> None:
        with self._lock:
            if node not in self._nodes:
                raise KeyError(f"the fake backend has no node '{node}'; it has {', '.join(self._nodes) or 'none'}")
            self._nodes[node] = self._nodes[node].model_copy(update={"healthy": healthy, "reason": reason})

    # -- Backend --------------------------------------------------------------------------
    def inventory(self) -> list[NodeReport]:
        with self._lock:
            return [n.model_copy() for n in self._nodes.values()]

    def start(self, assignment: AttemptAssignment, workdir_archive: Path | None) -> None:
        with self._lock:
            if assignment.attempt_id in self.attempts:
                return
            self.attempts[assignment.attempt_id] = FakeAttempt(assignment=assignment, archive=workdir_archive)
            self.started.append(assignment)

    def poll(self) -> list[AttemptReport]:
        with self._lock:
            return [
                AttemptReport(
                    attempt_id=a.assignment.attempt_id,
                    fencing_token=a.assignment.fencing_token,
                    state=a.state,
                    exit_code=a.exit_code,
                    message=a.message,
                )
                for a in self.attempts.values()
            ]

    def cancel(self, attempt_id: int, grace_s: float) -> None:
        """Ends a live attempt at once as CANCELLED with exit code -15 (as if it obeyed SIGTERM)."""
        with self._lock:
            self.cancels.append((attempt_id, grace_s))
            a = self.attempts.get(attempt_id)
            if a is None or a.state.is_terminal():
                return
            a.state, a.exit_code, a.message, a.cancel_grace_s = (
                AttemptState.CANCELLED,
                CANCELLED_EXIT_CODE,
                "cancelled",
                grace_s,
            )

    def read_logs(self, max_bytes: int = 256 * 1024) -> list[LogChunk]:
        with self._lock:
            chunks: list[LogChunk] = []
            budget = max_bytes
            for a in self.attempts.values():
                for rank, data in a.output.items():
                    stream = a.streams[rank]
                    take = max(0, min(budget - stream.held, len(data) - stream.consumed))
                    if budget <= 0 or (take <= 0 and stream.held == 0):
                        continue
                    budget -= take + stream.held  # the bytes of the chunk, held ones included
                    final = a.state.is_terminal() and stream.consumed + take >= len(data)
                    offset, text = stream.feed(bytes(data[stream.consumed : stream.consumed + take]), final)
                    if text:
                        chunks.append(
                            LogChunk(
                                attempt_id=a.assignment.attempt_id,
                                fencing_token=a.assignment.fencing_token,
                                rank=rank,
                                offset=offset,
                                data=text,
                            )
                        )
            return chunks

    def logs_drained(self, attempt_id: int) -> bool:
        with self._lock:
            a = self.attempts.get(attempt_id)
            return a is None or (a.state.is_terminal() and not a.unread())

    def forget(self, attempt_id: int) -> None:
        with self._lock:
            self.forgotten.append(attempt_id)
            self.attempts.pop(attempt_id, None)

    def _held(self, attempt_id: int) -> FakeAttempt:
        a = self.attempts.get(attempt_id)
        if a is None:
            raise KeyError(
                f"the fake backend holds no attempt {attempt_id}; it holds {sorted(self.attempts) or 'none'}"
            )
        return a


def _report_of(node: NodeDecl) -> NodeReport:
    return NodeReport(
        name=node.name, gpu_type=node.gpu_type, gpus_total=node.gpu_count, cpus=node.cpus, memory=node.memory
    )
