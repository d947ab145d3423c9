"""The transfer channel over HTTP: a small receiver server for a site store, and its client.

Plain HTTP/1.1 with keep-alive, one connection per sending thread; chunks are sealed before
they reach the socket, so the channel needs no TLS for confidentiality or integrity. The
per-transfer key travels in the ``begin`` request: in this version that request must come
over loopback or a TLS-terminating proxy (the control plane's own channel in production).

Every request carries the site's token (``Authorization: Bearer …``); one without it, or with
another, is answered 401 before its body is read, and the connection is closed. What a request
names is checked, not trusted: transfer ids and dataset names are ids, never paths
(:func:`~suanli.datachain.transfer.checked_transfer_id`), so nothing a sender says can write or
delete outside the store.
"""

from __future__ import annotations

import hmac
import http.client
import json
import mmap
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from suanli.datachain.crypto import OVERHEAD, Buffer
from suanli.datachain.manifest import MAX_CHUNK, Manifest
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import ChunkRejected, Offer, TransferError, chunk_buffer

#: The largest body a chunk request may have: a sealed chunk of the largest chunk size.
MAX_SEALED = MAX_CHUNK + OVERHEAD
#: The largest ``begin`` body: a manifest of about 4 million chunk hashes (16 TiB in 4 MiB chunks).
MAX_OFFER = 320 * 1024 * 1024


def _handler(store: SiteStore, token: str) -> type[BaseHTTPRequestHandler]:
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Small header writes must not wait on delayed ACKs (Nagle): 40 ms per chunk otherwise.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _length(self) -> int:
            try:
                return int(self.headers.get("Content-Length", "0"))
            except ValueError:
                return -1

        def _authorised(self) -> bool:
            """Whether the request carries the site's token; if not, it is answered 401 and the
            connection closed (its body is never read)."""
            given = self.headers.get("Authorization", "").encode()
            if hmac.compare_digest(given, expected):
                return True
            self.close_connection = True
            self._reply(401, {"detail": "the transfer channel needs the site's token (Authorization: Bearer …)"})
            return False

        def _body_into(self, n: int) -> memoryview:
            """The request body read into this connection's reused buffer: what the header
            reader had buffered first, then straight from the socket, the kernel waiting for
            the whole body (``MSG_WAITALL``) rather than Python looping over small reads."""
            buf: mmap.mmap | None = getattr(self, "_buf", None)
            if buf is None or len(buf) < n:
                buf = self._buf = chunk_buffer(n)
            view = memoryview(buf)[:n]
            got = self.rfile.readinto1(view) if n else 0
            while got < n:
                k = self.connection.recv_into(view[got:], n - got, socket.MSG_WAITALL)
                if not k:
                    break
                got += k
            return view[:got]

        def do_GET(self) -> None:
            if self._authorised():
                self._reply(404, {"detail": "no such endpoint"})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            n = self._length()
            if not 0 <= n <= MAX_OFFER:
                self.close_connection = True
                self._reply(413, {"detail": f"a transfer's offer has at most {MAX_OFFER} bytes"})
                return
            body = self.rfile.read(n)
            parts = urlsplit(self.path).path.strip("/").split("/")
            try:
                if len(parts) == 2 and parts[0] == "transfers":
                    self._reply(200, {"have": sorted(store.begin(_offer(parts[1], body)))})
                elif len(parts) == 3 and parts[0] == "transfers" and parts[2] == "finish":
                    self._reply(200, {"root": store.finish(parts[1])})
                else:
                    self._reply(404, {"detail": "no such endpoint"})
            except TransferError as exc:
                self._reply(409, {"detail": str(exc)})
            except (ValueError, KeyError, TypeError) as exc:  # a malformed offer (pydantic's errors are ValueErrors)
                self._reply(400, {"detail": f"not a transfer offer: {exc}"})

        def do_PUT(self) -> None:
            if not self._authorised():
                return
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            n = self._length()
            if not 0 <= n <= MAX_SEALED:
                self.close_connection = True  # the body is not read: the connection cannot go on
                self._reply(413, {"detail": f"a sealed chunk has at most {MAX_SEALED} bytes"})
                return
            blob = self._body_into(n)
            if len(parts) != 4 or parts[0] != "transfers" or parts[2] != "chunks" or not parts[3].isdigit():
                self._reply(404, {"detail": "no such endpoint"})
                return
            last = parse_qs(url.query).get("last", ["0"])[0] == "1"
            try:
                store.put(parts[1], int(parts[3]), last, blob)
                self._reply(200, {"ok": True})
            except ChunkRejected as exc:
                self._reply(422, {"detail": str(exc), "index": exc.index})
            except TransferError as exc:
                self._reply(409, {"detail": str(exc)})

    return Handler


def _offer(transfer_id: str, body: bytes) -> Offer:
    """The offer a ``begin`` request makes; its ids are checked as the :class:`Offer` is made."""
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    return Offer(
        transfer_id=transfer_id,
        dataset=doc["dataset"],
        manifest=Manifest.model_validate(doc["manifest"]),
        key=_key(doc["key"]),
        at_rest=doc.get("at_rest", False) is True,
    )


def _key(text: object) -> bytes:
    key = bytes.fromhex(text) if isinstance(text, str) else b""
    if len(key) != 32:
        raise ValueError("the transfer key must be 32 bytes, hex-encoded")
    return key


def serve(store: SiteStore, token: str, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start a receiver in a daemon thread; ``server.server_address`` has the port. Every
    request must carry ``token`` (the site's) as a bearer token."""
    if len(token) < 16:
        raise ValueError("the transfer channel needs the site's token (16 characters or more)")
    server = ThreadingHTTPServer((host, port), _handler(store, token))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="suanli-receiver", daemon=True).start()
    return server


class HttpChannel:
    """The sending end: ``token`` is the receiving site's token, sent with every request."""

    def __init__(self, host: str, port: int, token: str, timeout: float = 60.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._auth = f"Bearer {token}"
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._all_lock = threading.Lock()

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _conn(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _call(self, method: str, path: str, body: Buffer) -> tuple[int, dict[str, Any]]:
        conn = self._conn()
        try:
            headers = {"Content-Length": str(memoryview(body).nbytes), "Authorization": self._auth}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            raise
        return resp.status, json.loads(data or b"{}")

    def begin(self, offer: Offer) -> set[int]:
        doc = {
            "dataset": offer.dataset,
            "manifest": offer.manifest.model_dump(),
            "key": offer.key.hex(),
            "at_rest": offer.at_rest,
        }
        status, body = self._call("POST", f"/transfers/{offer.transfer_id}", json.dumps(doc).encode())
        if status != 200:
            raise TransferError(str(body.get("detail", status)))
        return {int(i) for i in body["have"]}

    def put(self, transfer_id: str, index: int, last: bool, blob: Buffer) -> None:
        status, body = self._call("PUT", f"/transfers/{transfer_id}/chunks/{index}?last={int(last)}", blob)
        if status == 422:
            raise ChunkRejected(index, str(body.get("detail")))
        if status != 200:
            raise TransferError(str(body.get("detail", status)))

    def finish(self, transfer_id: str) -> str:
        status, body = self._call("POST", f"/transfers/{transfer_id}/finish", b"")
        if status != 200:
            raise TransferError(str(body.get("detail", status)))
        return str(body["root"])
