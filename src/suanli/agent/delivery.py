"""Delivery helpers of the agent: the log outbox and the back-off between retries."""

from __future__ import annotations

import random
from collections import deque

from suanli.core.protocol import LogChunk


class LogOutbox:
    """Log chunks read from the backend and not yet accepted by the server (not thread-safe:
    the agent's lock guards it). A failed batch goes back to the front, in order."""

    def __init__(self) -> None:
        self._queue: deque[LogChunk] = deque()
        self._in_flight: list[LogChunk] | None = None
        self.size = 0  # bytes queued or in flight

    def add(self, chunks: list[LogChunk]) -> None:
        self._queue.extend(chunks)
        self.size += sum(_nbytes(c) for c in chunks)

    def claim(self, max_bytes: int) -> list[LogChunk]:
        """The next batch, or [] while another batch is in flight."""
        if self._in_flight is not None or not self._queue:
            return []
        batch: list[LogChunk] = []
        taken = 0
        while self._queue and (not batch or taken + _nbytes(self._queue[0]) <= max_bytes):
            chunk = self._queue.popleft()
            batch.append(chunk)
            taken += _nbytes(chunk)
        self._in_flight = batch
        return batch

    def settle(self, batch: list[LogChunk], accepted: bool) -> None:
        if not batch or batch is not self._in_flight:
            return
        self._in_flight = None
        if accepted:
            self.size -= sum(_nbytes(c) for c in batch)
        else:
            self._queue.extendleft(reversed(batch))

    def holds(self, attempt_id: int) -> bool:
        return any(c.attempt_id == attempt_id for c in (*self._queue, *(self._in_flight or ())))

    def drop(self, attempt_id: int) -> None:
        self.size -= sum(_nbytes(c) for c in self._queue if c.attempt_id == attempt_id)
        self._queue = deque(c for c in self._queue if c.attempt_id != attempt_id)


def _nbytes(chunk: LogChunk) -> int:
    return len(chunk.data.encode())


class Backoff:
    """Exponential back-off with jitter, so many agents do not hammer a restarting server."""

    def __init__(self, first: float, most: float) -> None:
        self.first, self.most, self._next = first, most, first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.most, self._next * 2)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first
