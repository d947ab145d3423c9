"""The API's streaming response for a followed log (the reading itself is ``app/follow.py``)."""

from __future__ import annotations

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from suanli.app.follow import LogStream


class FollowResponse(StreamingResponse):
    """A streaming response that gives its stream's follow slot back when it ends, however it
    ends (also when it never started streaming)."""

    def __init__(self, stream: LogStream, headers: dict[str, str]) -> None:
        super().__init__(stream.text, media_type="text/plain; charset=utf-8", headers=headers)
        self.slot = stream.slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.slot is not None:
                self.slot.release()
