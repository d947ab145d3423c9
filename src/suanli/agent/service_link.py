"""The agent's end of its link to the front desk (``core.linkframes``): one outbound WebSocket,
held open and redialled when it drops, that carries requests for this site's replicas.

The agent knows its replicas (``add`` when one starts, with the port it was given, ``remove``
when it ends), probes each on its readiness path until it answers 2xx, then says ``READY`` on
the link; a replica that refuses a connection is ``GONE`` until its probe passes again. Each
``OPEN`` stream is forwarded on a thread of its own to ``127.0.0.1:PORT`` and its answer sent
back as it comes: ``HEAD``, ``DATA`` per chunk read, ``DONE`` (or ``FAIL``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from suanli.core.linkframes import Frame, FrameError, Kind, decode, forwarded, json_frame, parse_open

log = logging.getLogger("suanli.agent.link")

#: Seconds between readiness probes, and between redials of a dropped link.
PROBE_S = 0.2
REDIAL_S = 1.0
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
#: Streams forwarded at once; more wait for a thread.
MAX_STREAMS = 256


def free_port() -> int:
    """A port free on the loopback now, for a replica's ``$PORT``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Replica:
    attempt_id: int
    port: int
    probe_path: str
    probe_deadline: float
    ready: bool = False
    removed: bool = False


class ServiceLink:
    """Thread-safe. ``run`` (on a thread of its own) holds the link until ``stop`` is set."""

    def __init__(self, server: str, token: str, *, site: str) -> None:
        base = server.rstrip("/")
        self.url = ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base.removeprefix("http://")) + (
            "/api/v1/agents/link"
        )
        self.site = site
        self._token = token
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._replicas: dict[int, _Replica] = {}
        self._ws: ClientConnection | None = None
        self._streams: dict[int, threading.Event] = {}
        self._pool = ThreadPoolExecutor(MAX_STREAMS, thread_name_prefix=f"suanli-link-{site}")
        # No Nagle on either hop: a frame or a request held back for an ACK costs tens of ms.
        transport = httpx.HTTPTransport(socket_options=[NODELAY], limits=httpx.Limits(max_keepalive_connections=64))
        self._http = httpx.Client(timeout=httpx.Timeout(None, connect=5.0), transport=transport)
        self._stop = threading.Event()
        self.connected = threading.Event()

    # -- replicas ---------------------------------------------------------------------------
    def add(self, attempt_id: int, port: int, probe_path: str, probe_timeout_s: float) -> None:
        with self._lock:
            self._replicas[attempt_id] = _Replica(attempt_id, port, probe_path, time.monotonic() + probe_timeout_s)
        self._pool.submit(self._probe, attempt_id)

    def remove(self, attempt_id: int) -> None:
        with self._lock:
            r = self._replicas.pop(attempt_id, None)
        if r is not None:
            r.removed = True
            if r.ready:
                self._send(json_frame(Kind.GONE, 0, {"attempt": attempt_id}))

    def port_of(self, attempt_id: int) -> int | None:
        with self._lock:
            r = self._replicas.get(attempt_id)
            return r.port if r else None

    def _probe(self, attempt_id: int) -> None:
        """Probe until the replica answers 2xx (then say READY), is removed, or its time is up."""
        while not self._stop.is_set():
            with self._lock:
                r = self._replicas.get(attempt_id)
            if r is None or r.removed:
                return
            try:
                ok = self._http.get(f"http://127.0.0.1:{r.port}{r.probe_path}", timeout=2.0).is_success
            except httpx.HTTPError:
                ok = False
            if ok:
                r.ready = True
                self._send(json_frame(Kind.READY, 0, {"attempt": attempt_id}))
                return
            if time.monotonic() > r.probe_deadline:
                log.warning("replica attempt %s did not answer %s in time", attempt_id, r.probe_path)
                return
            self._stop.wait(PROBE_S)

    def _lost(self, attempt_id: int) -> None:
        """The replica refused a connection: not ready until its probe passes again."""
        with self._lock:
            r = self._replicas.get(attempt_id)
            if r is None or not r.ready:
                return
            r.ready = False
            r.probe_deadline = time.monotonic() + 30.0
        self._send(json_frame(Kind.GONE, 0, {"attempt": attempt_id}))
        self._pool.submit(self._probe, attempt_id)

    # -- the link ---------------------------------------------------------------------------
    def _send(self, frame: Frame) -> bool:
        with self._send_lock:
            ws = self._ws
            if ws is None:
                return False
            try:
                ws.send(frame.encode())
                return True
            except (WebSocketException, OSError):
                return False

    def run(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self._stop = stop
        while not self._stop.is_set():
            try:
                with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    max_size=None,
                    compression=None,
                    open_timeout=10,
                ) as ws:
                    self._serve(ws)
            except (WebSocketException, OSError) as exc:
                log.info("the link of site %s to the front desk dropped: %s; redialling", self.site, exc)
            finally:
                with self._send_lock:
                    self._ws = None
                self.connected.clear()
            self._stop.wait(REDIAL_S)

    def _serve(self, ws: ClientConnection) -> None:
        ws.socket.setsockopt(*NODELAY)
        with self._send_lock:
            self._ws = ws
        with self._lock:
            ready = [r.attempt_id for r in self._replicas.values() if r.ready]
        for attempt_id in ready:  # the front desk may have restarted: say again what is ready
            self._send(json_frame(Kind.READY, 0, {"attempt": attempt_id}))
        self.connected.set()
        while not self._stop.is_set():
            try:
                data = ws.recv(timeout=1.0)
            except TimeoutError:
                continue
            if isinstance(data, str):
                continue
            try:
                frame = decode(data)
            except FrameError as exc:
                log.warning("closing the link: %s", exc)
                return
            if frame.kind == Kind.OPEN:
                cancelled = threading.Event()
                with self._lock:
                    self._streams[frame.stream] = cancelled
                self._pool.submit(self._forward, frame, cancelled)
            elif frame.kind == Kind.CANCEL:
                with self._lock:
                    ev = self._streams.get(frame.stream)
                if ev is not None:
                    ev.set()

    def _forward(self, frame: Frame, cancelled: threading.Event) -> None:
        sid = frame.stream
        try:
            target, request, body = parse_open(frame)
            attempt_id = int(target["attempt"])
            port = self.port_of(attempt_id)
            if port is None:
                self._send(json_frame(Kind.FAIL, sid, {"error": f"no replica {attempt_id} here", "refused": True}))
                return
            self._relay(sid, attempt_id, port, request, body, cancelled)
        except (KeyError, ValueError, json.JSONDecodeError) as exc:
            self._send(json_frame(Kind.FAIL, sid, {"error": f"a bad request frame: {exc}", "refused": True}))
        finally:
            with self._lock:
                self._streams.pop(sid, None)

    def _relay(
        self, sid: int, attempt_id: int, port: int, request: dict[str, object], body: bytes, cancelled: threading.Event
    ) -> None:
        url = f"http://127.0.0.1:{port}{request['path']}"
        headers = [(str(k), str(v)) for k, v in request.get("headers", [])]  # type: ignore[attr-defined]
        started = False
        try:
            with self._http.stream(str(request["method"]), url, headers=headers, content=body) as response:
                started = True
                head = {"status": response.status_code, "headers": forwarded(list(response.headers.multi_items()))}
                self._send(json_frame(Kind.HEAD, sid, head))
                for chunk in _chunks(response):
                    if cancelled.is_set():
                        return
                    self._send(Frame(Kind.DATA, sid, chunk))
            self._send(Frame(Kind.DONE, sid))
        except httpx.ConnectError as exc:
            log.warning("replica attempt %s refused a connection: %s", attempt_id, exc)
            self._lost(attempt_id)
            self._send(json_frame(Kind.FAIL, sid, {"error": f"the replica refused: {exc}", "refused": True}))
        except httpx.HTTPError as exc:
            log.warning("replica attempt %s failed a request: %s", attempt_id, exc)
            self._send(json_frame(Kind.FAIL, sid, {"error": f"the replica failed: {exc}", "started": started}))

    def close(self) -> None:
        self._stop.set()
        with self._send_lock:
            ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives (each read the server's bytes so far: SSE events pass at once)."""
    yield from response.iter_raw()
