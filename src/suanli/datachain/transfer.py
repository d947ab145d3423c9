"""Secure chunked transfers between site stores: seal, send, verify, store; resumable.

The sender seals each chunk (AES-256-GCM, a per-transfer key, associated data binding the
transfer id, chunk index and last-chunk flag) and hands it to a :class:`Channel`; the
receiver opens it, checks its BLAKE3 hash against the manifest, and writes it in place. A
chunk that fails either check is refused and the sender resends it. A transfer that stops
half-way resumes: the receiver says which chunks it holds and only the others are sent.

Data of level ``important`` and above is written sealed at rest, under a dataset key from the
:class:`~suanli.datachain.crypto.KeyStore`, which never lives beside the data.

The hot path does as little per byte as it can (``docs/datachain.md``, "How a transfer moves bytes"):
buffers are reused per thread, never allocated per chunk; the receiver opens each chunk into
page-aligned memory, hashes it there, and writes it with ``O_DIRECT`` where the file system
allows, so a transfer does not pay to fill the page cache; durability comes from one
``fsync`` of the file and of its directories when the transfer finishes, and resuming after a
crash re-verifies the chunks the receiver had recorded instead of an ``fsync`` per chunk.

The parts: this module holds what both ends share (the :class:`Offer`, the :class:`Channel`
between them, their errors, the reused chunk buffers); :mod:`suanli.datachain.sender` the
sending side (:func:`~suanli.datachain.sender.send`, its rate limit, reading a source file
into chunks); :mod:`suanli.datachain.site_store` the receiving side and a site's datasets
(:class:`~suanli.datachain.site_store.SiteStore`, :class:`~suanli.datachain.site_store.LocalChannel`);
:mod:`suanli.datachain.channel_http` the channel over HTTP.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from suanli.datachain.crypto import Buffer
from suanli.datachain.manifest import Manifest

#: ``chunks(i)``: the plaintext of chunk ``i`` of the source. What it returns need only stay
#: valid until the same thread asks for another chunk (see :func:`~suanli.datachain.sender.file_chunks`).
ChunkSource = Callable[[int], Buffer]

#: Chunks in flight at once (sending threads, and HTTP connections). Each holds a chunk being
#: read and sealed at the sender and one being opened, hashed and written at the receiver, so
#: two cores stay busy while a chunk waits on the network or the disk.
DEFAULT_WORKERS = 4


class ChunkRejected(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"chunk {index} refused: {reason}")
        self.index = index
        self.reason = reason


class TransferError(Exception):
    """A transfer that cannot complete; the message says why and what to do."""


@dataclass(frozen=True)
class Offer:
    transfer_id: str
    dataset: str
    manifest: Manifest
    #: The per-transfer key. Travels to the receiver over the control channel, is kept in the
    #: receiver's key store while the transfer is open, and deleted when it finishes.
    key: bytes
    #: Seal the stored copy at rest (level ``important`` and above).
    at_rest: bool = False


class Channel(Protocol):
    """Where sealed chunks go. ``put`` must be done with ``blob`` when it returns: the sender
    reuses the buffer for its next chunk."""

    def begin(self, offer: Offer) -> set[int]: ...
    def put(self, transfer_id: str, index: int, last: bool, blob: Buffer) -> None: ...
    def finish(self, transfer_id: str) -> str: ...


def chunk_buffer(size: int) -> mmap.mmap:
    """A buffer for one chunk, reused for every chunk: anonymous, page-aligned memory (as
    ``O_DIRECT`` needs), backed by huge pages where the kernel offers them (fewer TLB misses
    for the cipher, the hash and the copies)."""
    buf = mmap.mmap(-1, max(size, 1))
    with contextlib.suppress(AttributeError, OSError):
        buf.madvise(mmap.MADV_HUGEPAGE)
    return buf
