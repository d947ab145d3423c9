"""The front desk's end of the agents' links (``core.linkframes``): which replicas are ready,
and a request sent to one of them with its answer streamed back.

Each site's agent holds a WebSocket open to the front desk (``/api/v1/agents/link``, with its
site token) and says which of its replicas answered their readiness probe (``READY``) and which
went away (``GONE``); a site may speak only of its own attempts of a running service. A request
goes to the ready replica of its service with the fewest requests in flight. When a replica
refuses the connection (it died), or fails before its answer began and the request may be
repeated (``retryable``), the request is tried on another, up to :data:`MAX_TRIES` replicas.
With no replica ready the request waits, up to its bound, for one to become ready (the
service may be scaling from zero: :attr:`ServiceDesk.on_wait` tells the autoscaler), then
answers 503 with ``Retry-After``.

Everything here runs on the server's event loop; :meth:`ServiceDesk.live` may be read from any
thread (a snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from suanli.app.errors import BadGateway, Unavailable
from suanli.app.services import Live
from suanli.core.linkframes import Frame, FrameError, Kind, decode, json_frame, open_frame
from suanli.core.services import Load

#: Replicas one request is tried on before it fails.
MAX_TRIES = 3
#: The longest a request waits for a ready replica by default (a cold start may take longer:
#: then 503 with Retry-After).
WAIT_S = 30.0

Send = Callable[[bytes], Awaitable[None]]
Recv = Callable[[], Awaitable[bytes | None]]
#: (site, attempt id) → the service the attempt is a replica of, if the site runs it now.
Resolve = Callable[[str, int], Awaitable[str | None]]


@dataclass(frozen=True)
class Outgoing:
    """A request as the relay forwards it: the path below the service (with its query)."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]
    #: The replica (attempt id) that answers.
    attempt_id: int


class _Link:
    def __init__(self, site: str, send: Send) -> None:
        self.site = site
        self._send = send
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self.streams: dict[int, asyncio.Queue[Frame]] = {}
        self.closed = False

    def open_stream(self) -> tuple[int, asyncio.Queue[Frame]]:
        sid = next(self._ids)
        q: asyncio.Queue[Frame] = asyncio.Queue()
        self.streams[sid] = q
        return sid, q

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise ConnectionError(f"the link of site {self.site} is closed")
        async with self._lock:
            await self._send(frame.encode())

    def fail_all(self, why: str) -> None:
        self.closed = True
        for q in self.streams.values():
            q.put_nowait(json_frame(Kind.FAIL, 0, {"error": why, "link": True}))
        self.streams.clear()


@dataclass
class _Replica:
    attempt_id: int
    service_id: str
    link: _Link
    outstanding: int = 0


#: The end of an answer kept to read its ``usage`` from (OpenAI puts it last, in a JSON body
#: and in a stream's final event).
TAIL_BYTES = 4096
PROMPT_RE = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
COMPLETION_RE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def _last_int(pattern: re.Pattern[bytes], text: bytes) -> int:
    found = pattern.findall(text)
    return int(found[-1]) if found else 0


#: How long a caller's route to a service is remembered (a stopped service's ready replicas go
#: at once; its route, at most this long later).
ROUTE_TTL_S = 2.0


class ServiceDesk:
    def __init__(self) -> None:
        #: (caller, tenant, name or model) → (until, service id): the hot path skips the database.
        self.routes: dict[tuple[str, ...], tuple[float, str]] = {}
        self._replicas: dict[int, _Replica] = {}
        #: Metered since the last :meth:`take_usage`: service id → [requests, prompt, completion].
        self._usage: dict[str, list[int]] = {}
        self._usage_lock = threading.Lock()
        #: Completion tokens answered per service, recent ones (time, count): for the autoscaler.
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._cond: asyncio.Condition | None = None
        self._waiting: dict[str, int] = {}
        #: Called (on the event loop) when a request of a service waits for a ready replica.
        self.on_wait: Callable[[str], None] = lambda _service_id: None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def route(self, key: tuple[str, ...], resolve: Callable[[], Awaitable[str]]) -> str:
        """The service id for ``key``, remembered for :data:`ROUTE_TTL_S`."""
        now = time.monotonic()
        hit = self.routes.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        service_id = await resolve()
        if len(self.routes) > 10_000:
            self.routes.clear()
        self.routes[key] = (now + ROUTE_TTL_S, service_id)
        return service_id

    # -- what the rest of the front desk reads -------------------------------------------------
    def live(self, service_id: str) -> dict[int, Live]:
        """The service's ready replicas by attempt id, with their requests in flight (a snapshot)."""
        return {
            r.attempt_id: Live(ready=True, outstanding=r.outstanding)
            for r in list(self._replicas.values())
            if r.service_id == service_id
        }

    def take_usage(self) -> dict[str, list[int]]:
        """What was metered since the last call (the caller writes it to the store)."""
        with self._usage_lock:
            taken, self._usage = self._usage, {}
        return taken

    def tokens_per_s(self, service_id: str, window_s: float = 30.0) -> float:
        """Completion tokens per second the service answered over the last ``window_s``."""
        recent = self._tokens.get(service_id)
        if not recent:
            return 0.0
        since = time.monotonic() - window_s
        return sum(n for t, n in list(recent) if t >= since) / window_s

    def _meter(self, service_id: str, tail: bytes) -> None:
        """One request answered: count it, and the tokens its ``usage`` says (the last one in
        the answer's tail: a JSON body's, or a stream's final event)."""
        prompt = _last_int(PROMPT_RE, tail)
        completion = _last_int(COMPLETION_RE, tail)
        with self._usage_lock:  # taken from the scheduler's thread
            counts = self._usage.setdefault(service_id, [0, 0, 0])
            counts[0] += 1
            counts[1] += prompt
            counts[2] += completion
        if completion:
            recent = self._tokens.setdefault(service_id, deque(maxlen=100_000))
            recent.append((time.monotonic(), completion))

    def loads(self) -> dict[str, Load]:
        """Every service's load as the front desk sees it now (a snapshot, for the autoscaler)."""
        out: dict[str, Load] = {}
        for r in list(self._replicas.values()):
            was = out.get(r.service_id, Load())
            out[r.service_id] = Load(ready=was.ready + 1, in_flight=was.in_flight + r.outstanding)
        for service_id, waiting in list(self._waiting.items()):
            if waiting > 0:
                was = out.get(service_id, Load())
                out[service_id] = Load(ready=was.ready, in_flight=was.in_flight, waiting=waiting)
        for service_id in list(self._tokens):
            was = out.get(service_id, Load())
            out[service_id] = Load(was.ready, was.in_flight, was.waiting, self.tokens_per_s(service_id))
        return out

    # -- an agent's link ---------------------------------------------------------------------
    async def run_link(self, site: str, recv: Recv, send: Send, resolve: Resolve) -> None:
        """Serve one agent's link until it closes: its READY / GONE, and its streams' frames."""
        link = _Link(site, send)
        try:
            while (data := await recv()) is not None:
                frame = decode(data)
                if frame.stream == 0:
                    await self._control(link, frame, resolve)
                elif (q := link.streams.get(frame.stream)) is not None:
                    q.put_nowait(frame)
        except FrameError:
            pass
        finally:
            link.fail_all(f"the link of site {site} closed")
            for r in [r for r in self._replicas.values() if r.link is link]:
                self._replicas.pop(r.attempt_id, None)

    async def _control(self, link: _Link, frame: Frame, resolve: Resolve) -> None:
        doc = frame.json()
        attempt_id = int(doc.get("attempt", -1))
        if frame.kind == Kind.READY:
            service_id = await resolve(link.site, attempt_id)
            if service_id is None:
                return  # not this site's, or not a replica of a running service: ignored
            self._replicas[attempt_id] = _Replica(attempt_id, service_id, link)
            async with self._condition():
                self._condition().notify_all()
        elif frame.kind == Kind.GONE:
            r = self._replicas.get(attempt_id)
            if r is not None and r.link is link:
                self._replicas.pop(attempt_id, None)

    def forget(self, attempt_ids: set[int]) -> None:
        """Replicas whose attempts ended: no request goes to them any more."""
        for a in attempt_ids:
            self._replicas.pop(a, None)

    # -- a request ---------------------------------------------------------------------------
    async def invoke(self, service_id: str, request: Outgoing, *, retryable: bool, wait_s: float = WAIT_S) -> Answer:
        deadline = time.monotonic() + wait_s
        tried: set[int] = set()
        last = "no replica answered"
        for _ in range(MAX_TRIES):
            replica = await self._pick(service_id, tried, deadline, wait_s)
            tried.add(replica.attempt_id)
            replica.outstanding += 1
            sid, q = replica.link.open_stream()
            done = False
            try:
                target = {"kind": "http", "attempt": replica.attempt_id}
                req = {"method": request.method, "path": request.path, "headers": request.headers}
                await replica.link.send(open_frame(sid, target, req, request.body))
                first = await q.get()
                if first.kind == Kind.HEAD:
                    head = first.json()
                    done = True  # the body's reader finishes the stream
                    headers = [(str(k), str(v)) for k, v in head["headers"]]
                    body = self._body(replica, sid, q)
                    return Answer(int(head["status"]), headers, body, replica.attempt_id)
                doc = first.json() if first.kind == Kind.FAIL else {"error": f"frame {first.kind.name}"}
            except ConnectionError as exc:
                doc = {"error": str(exc), "link": True}
            finally:
                if not done:
                    replica.outstanding -= 1
                    replica.link.streams.pop(sid, None)
            last = str(doc.get("error", last))
            if doc.get("refused") or doc.get("link"):
                self._replicas.pop(replica.attempt_id, None)  # it is gone until it says READY again
                if doc.get("refused"):
                    continue  # it never reached the replica: always safe to try another
            if not retryable or doc.get("started"):
                raise BadGateway(f"the replica failed the request: {last}")
        raise BadGateway(f"{MAX_TRIES} replicas failed the request; the last: {last}")

    async def _pick(self, service_id: str, tried: set[int], deadline: float, wait_s: float) -> _Replica:
        cond = self._condition()
        waited = False
        async with cond:
            while True:
                ready = [r for r in self._replicas.values() if r.service_id == service_id]
                fresh = [r for r in ready if r.attempt_id not in tried]
                if fresh:
                    if waited:
                        self._waiting[service_id] -= 1
                    return min(fresh, key=lambda r: r.outstanding)
                left = deadline - time.monotonic()
                if left <= 0:
                    if waited:
                        self._waiting[service_id] -= 1
                    raise Unavailable(
                        f"no replica of the service was ready within {wait_s:.0f} s; it may be starting: "
                        "try again shortly",
                        retry_after=max(1, round(wait_s / 2)),
                    )
                if not waited:
                    waited = True
                    self._waiting[service_id] = self._waiting.get(service_id, 0) + 1
                self.on_wait(service_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cond.wait(), timeout=min(left, 1.0))

    async def _body(self, replica: _Replica, sid: int, q: asyncio.Queue[Frame]) -> AsyncIterator[bytes]:
        finished = False
        tail = b""
        try:
            while True:
                frame = await q.get()
                if frame.kind == Kind.DATA:
                    tail = (tail + frame.payload)[-TAIL_BYTES:]
                    yield frame.payload
                elif frame.kind == Kind.DONE:
                    finished = True
                    self._meter(replica.service_id, tail)
                    return
                else:
                    why = frame.json().get("error", "") if frame.kind == Kind.FAIL else frame.kind.name
                    raise BadGateway(f"the replica's answer broke off: {why}")
        finally:
            replica.outstanding -= 1
            replica.link.streams.pop(sid, None)
            if not finished and not replica.link.closed:
                with contextlib.suppress(ConnectionError):
                    await replica.link.send(Frame(Kind.CANCEL, sid))
