"""In-process wake-ups: version counters that waiters (threads and event loops) sleep on, and
the caps on open log streams. ``app/crosstalk.py`` carries bumps to the other replicas."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Callable


class Signals:
    """Version counters with a condition: waiters sleep until a counter they watch moves.

    Threads wait with :meth:`wait`; coroutines :meth:`subscribe` and await, holding no thread
    while they sleep (a bump wakes their event loop with ``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        #: Where bumps also go: the other replicas (``app/crosstalk.py``), when there are any.
        self.relay: Callable[[tuple[str, ...]], None] | None = None

    def bump(self, *keys: str) -> None:
        self.bump_local(*keys)
        if self.relay is not None:
            self.relay(keys)

    def bump_local(self, *keys: str) -> None:
        """Bump here only (what another replica's bump arrives as)."""
        with self._cond:
            for key in keys:
                self._versions[key] += 1
            woken = [s for key in keys for s in self._subscribers.get(key, ())]
            self._cond.notify_all()
        for subscription in woken:
            subscription.notify()

    def subscribe(self, *keys: str) -> Subscription:
        """A subscription to ``keys`` for the running event loop (use it as a context manager:
        leaving it unsubscribes)."""
        return Subscription(self, keys)

    def waiting(self, key: str) -> int:
        """How many subscriptions wait on ``key`` now."""
        with self._cond:
            return len(self._subscribers.get(key, ()))

    def _attach(self, subscription: Subscription) -> None:
        with self._cond:
            for key in subscription.keys:
                self._subscribers[key].add(subscription)

    def _detach(self, subscription: Subscription) -> None:
        with self._cond:
            for key in subscription.keys:
                waiting = self._subscribers.get(key)
                if waiting is not None:
                    waiting.discard(subscription)
                    if not waiting:
                        del self._subscribers[key]

    def version(self, key: str) -> int:
        with self._cond:
            return self._versions[key]

    def wait(self, key: str, seen: int, timeout: float) -> int:
        """Wait until ``key`` moves past ``seen`` or ``timeout`` passes; returns the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._versions[key] != seen, timeout=timeout)
            return self._versions[key]


class Subscription:
    """An event loop's interest in some signals: :meth:`wait` sleeps, costing no thread, until
    one of them is bumped (from any thread) or the timeout passes.

    Clear-then-read-then-wait loses no wake-up: a bump that lands after :meth:`clear` (while
    the caller reads) leaves the event set, so the next :meth:`wait` returns at once."""

    def __init__(self, signals: Signals, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self._signals = signals
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def __enter__(self) -> Subscription:
        self._signals._attach(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._signals._detach(self)

    def notify(self) -> None:
        """Set the event on its own loop; safe from any thread, and after the loop closed."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    async def wait(self, timeout: float) -> bool:
        """Whether a bump came (False: the timeout passed first)."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class FollowSlots:
    """Open log streams per key (a tenant), capped: counting is cheap and thread-safe, and a
    slot is given back exactly once however its stream ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def acquire(self, key: str, cap: int) -> FollowSlot | None:
        """A slot for one more stream of ``key``, or None when it already holds ``cap``."""
        with self._lock:
            held = self._open.get(key, 0)
            if held >= cap:
                return None
            self._open[key] = held + 1
        return FollowSlot(self, key)

    def open(self, key: str) -> int:
        with self._lock:
            return self._open.get(key, 0)

    def _release(self, key: str) -> None:
        with self._lock:
            left = self._open.get(key, 0) - 1
            if left > 0:
                self._open[key] = left
            else:
                self._open.pop(key, None)


class FollowSlot:
    def __init__(self, slots: FollowSlots, key: str) -> None:
        self.key = key
        self._slots: FollowSlots | None = slots

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._release(self.key)
