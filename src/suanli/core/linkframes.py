"""The frames of an agent's link to the front desk: many streams over one outbound connection.

Sites only dial out, so a request for a replica cannot reach its site's agent unless the agent
holds a connection open to the front desk. That connection (a WebSocket,
``/api/v1/agents/link``) carries *streams*, each one request and its answer, as binary frames:
one byte of kind, four bytes of stream id (big-endian), then the payload. Stream 0 carries what
concerns no single request (a replica ready, a replica gone).

The front desk opens a stream with ``OPEN`` (JSON: the target and the request, then the body);
the agent answers ``HEAD`` (JSON: status, headers), ``DATA`` as the bytes come (server-sent
events pass chunk by chunk), and ``DONE``, or ``FAIL`` (JSON: ``error``; ``refused`` when the
target took no connection, ``started`` when its answer had begun). ``CANCEL`` ends a stream
whose caller went away. The target's ``kind`` says what serves the stream: ``http`` (a
replica's port) today; an ``exec`` into a running job is another kind over the same frames,
with ``DATA`` in both directions.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

_HEADER = struct.Struct(">BI")
_JSON_LEN = struct.Struct(">I")
#: Largest request body the front desk sends down a link (an OpenAI request is a few KiB).
MAX_BODY = 8 * 1024 * 1024
#: Hop-by-hop headers (RFC 9110 §7.6.1) and those the relay sets itself: never forwarded.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "authorization",
        "cookie",
    }
)


class Kind(IntEnum):
    OPEN = 1
    HEAD = 2
    DATA = 3
    DONE = 4
    FAIL = 5
    CANCEL = 6
    READY = 7
    GONE = 8


@dataclass(frozen=True)
class Frame:
    kind: Kind
    stream: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return _HEADER.pack(self.kind, self.stream) + self.payload

    def json(self) -> Any:
        return json.loads(self.payload)


class FrameError(ValueError):
    """A frame that is not one: the link that sent it is closed."""


def decode(data: bytes) -> Frame:
    if len(data) < _HEADER.size:
        raise FrameError(f"a frame of {len(data)} bytes is shorter than its header")
    kind, stream = _HEADER.unpack_from(data)
    try:
        return Frame(Kind(kind), stream, data[_HEADER.size :])
    except ValueError:
        raise FrameError(f"no frame kind {kind}") from None


def json_frame(kind: Kind, stream: int, doc: Any) -> Frame:
    return Frame(kind, stream, json.dumps(doc, separators=(",", ":")).encode())


def open_frame(stream: int, target: dict[str, Any], request: dict[str, Any], body: bytes) -> Frame:
    """``OPEN``: the JSON (``target``, ``request``) with its length first, then the body."""
    doc = json.dumps({"target": target, "request": request}, separators=(",", ":")).encode()
    return Frame(Kind.OPEN, stream, _JSON_LEN.pack(len(doc)) + doc + body)


def parse_open(frame: Frame) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(target, request, body) of an ``OPEN`` frame."""
    p = frame.payload
    if len(p) < _JSON_LEN.size:
        raise FrameError("an OPEN frame without its request")
    (n,) = _JSON_LEN.unpack_from(p)
    doc = json.loads(p[_JSON_LEN.size : _JSON_LEN.size + n])
    return doc["target"], doc["request"], p[_JSON_LEN.size + n :]


def forwarded(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers that cross the relay: end-to-end ones only."""
    return [(k, v) for k, v in headers if k.lower() not in HOP_HEADERS]
