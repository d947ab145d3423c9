"""Turning a growing byte log into text chunks with byte offsets, shared by the backends."""

from __future__ import annotations

import codecs


class Utf8Stream:
    """Decodes one rank's log incrementally.

    A read can end in the middle of a multi-byte character; those bytes are held back until the
    rest arrives (or, at the end of the stream, replaced with U+FFFD), so no chunk ever carries
    half a character. Offsets count raw bytes of the log, which is what the server deduplicates on.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        #: Bytes of the log fed in so far.
        self.consumed = 0
        #: Bytes of the log whose text has been returned.
        self.emitted = 0

    @property
    def held(self) -> int:
        """Bytes of an incomplete character waiting for the rest."""
        return self.consumed - self.emitted

    def feed(self, data: bytes, final: bool = False) -> tuple[int, str]:
        """Returns ``(offset, text)``: the byte offset where ``text`` starts in the log."""
        offset = self.emitted
        text = self._decoder.decode(data, final)
        self.consumed += len(data)
        self.emitted = self.consumed - len(self._decoder.getstate()[0])
        return offset, text
