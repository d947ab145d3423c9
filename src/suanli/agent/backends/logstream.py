"""Turning a growing byte log into text chunks with byte offsets, shared by the backends."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable

#: What a secret's value becomes in the output the agent ships (as the server shows it in specs).
MASK = b"***"


class Utf8Stream:
    """Decodes one rank's log incrementally, masking the job's secrets.

    A read can end in the middle of a multi-byte character; those bytes are held back until the
    rest arrives (or, at the end of the stream, replaced with U+FFFD), so no chunk ever carries
    half a character. Offsets count raw bytes of the log, which is what the server deduplicates on.

    ``secrets``: values replaced with ``***`` wherever they appear. A read that ends with what
    may be the start of one holds those bytes back (at most the longest value's length - 1) until
    more data shows whether it is one, or the stream ends, so a value split across reads is
    masked too. The offsets stay those of the raw log: a chunk's offset is where its first raw
    byte is, so a chunk re-read after a restart starts at the same offset and is deduplicated.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        #: Bytes of the log fed in so far.
        self.consumed = 0
        #: Bytes of the log whose text has been returned.
        self.emitted = 0
        values = sorted({s.encode("utf-8") for s in secrets if s}, key=len, reverse=True)
        self._secrets = values
        # Longest first: where two values start at one place, the longer one is masked whole.
        self._pattern = re.compile(b"|".join(re.escape(v) for v in values)) if values else None
        self._by_first: dict[int, list[bytes]] = {}
        for v in values:
            self._by_first.setdefault(v[0], []).append(v)
        #: Raw bytes fed but not yet given to the decoder (a possible start of a secret).
        self._pending = b""

    @property
    def held(self) -> int:
        """Bytes read but not yet returned as text: an incomplete character, or what may be the
        start of a secret."""
        return self.consumed - self.emitted

    def room(self, limit: int) -> int:
        """How many new bytes to read for a chunk of about ``limit`` bytes: held bytes count
        against it, but a long held-back possible secret never stops the stream from moving."""
        return max(limit - self.held, limit // 4)

    def feed(self, data: bytes, final: bool = False) -> tuple[int, str]:
        """Returns ``(offset, text)``: the byte offset where ``text`` starts in the log."""
        offset = self.emitted
        self.consumed += len(data)
        if self._pattern is not None:
            buf = self._pending + data
            cut = len(buf) if final else self._safe_end(buf)
            self._pending = buf[cut:]
            data = self._pattern.sub(MASK, buf[:cut])
        text = self._decoder.decode(data, final)
        # The decoder holds only raw bytes: those of an incomplete character after the last mask.
        self.emitted = self.consumed - len(self._pending) - len(self._decoder.getstate()[0])
        return offset, text

    def _safe_end(self, buf: bytes) -> int:
        """Where the part of ``buf`` that can be masked and returned now ends: before the earliest
        tail that may still grow into a secret, and never inside a secret found whole."""
        n = len(buf)
        longest = len(self._secrets[0])
        cut = n
        for p in range(max(0, n - longest + 1), n):
            candidates = self._by_first.get(buf[p])
            if candidates is None:
                continue
            tail = buf[p:]
            if any(len(v) > len(tail) and v.startswith(tail) for v in candidates):
                cut = p
                break
        if cut < n and self._pattern is not None:
            # Matches as ``sub`` finds them (leftmost, from the start): none may cross the cut.
            for m in self._pattern.finditer(buf):
                if m.end() > cut:  # a whole secret across the cut: hold it all
                    cut = min(cut, m.start())
                    break
        return cut
