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
import re
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


#: A dataset name, as a job spec or a registration spells it: it names a folder of a site's
#: store, so it can never be a path (no '/', never '.' or '..', no leading dot).
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")
#: A transfer id (the control plane makes 16 hex digits; tests and tools use a UUID's 32): it
#: names the folder of a transfer on its way in, so letters, digits, '_' and '-' only.
TRANSFER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


class ChunkRejected(Exception):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"chunk {index} refused: {reason}")
        self.index = index
        self.reason = reason


class TransferError(Exception):
    """A transfer that cannot complete; the message says why and what to do."""


def checked_dataset(name: str) -> str:
    """``name`` if it is a dataset name; a :class:`TransferError` otherwise (never a path)."""
    if not isinstance(name, str) or not DATASET_RE.match(name):
        raise TransferError(
            f"{name!r} is not a dataset name: 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def checked_transfer_id(transfer_id: str) -> str:
    """``transfer_id`` if it is a transfer id; a :class:`TransferError` otherwise (never a path)."""
    if not isinstance(transfer_id, str) or not TRANSFER_ID_RE.match(transfer_id):
        raise TransferError(
            f"{transfer_id!r} is not a transfer id: 1-64 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return transfer_id


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

    def __post_init__(self) -> None:
        checked_transfer_id(self.transfer_id)
        checked_dataset(self.dataset)


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
