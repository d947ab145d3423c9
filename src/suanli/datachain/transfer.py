"""Secure chunked transfers between site stores: seal, send, verify, store; resumable.

The sender seals each chunk (AES-256-GCM, a per-transfer key, associated data binding the
transfer id, chunk index and last-chunk flag) and hands it to a :class:`Channel`; the
receiver opens it, checks its BLAKE3 hash against the manifest, and writes it in place. A
chunk that fails either check is refused and the sender resends it. A transfer that stops
half-way resumes: the receiver says which chunks it holds and only the others are sent.

Data of level ``important`` and above is written sealed at rest, under a dataset key from the
:class:`~suanli.datachain.crypto.KeyStore`, which never lives beside the data.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from suanli.datachain.crypto import OVERHEAD, KeyStore, SealError, open_into, open_sealed, seal
from suanli.datachain.manifest import Manifest, chunk_hash, merkle_root

Progress = Callable[[int, int], None]


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
    def begin(self, offer: Offer) -> set[int]: ...
    def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None: ...
    def finish(self, transfer_id: str) -> str: ...


# --- receiver -------------------------------------------------------------------------------


@dataclass
class _Incoming:
    offer: Offer
    fd: int
    have: set[int]
    lock: threading.Lock = field(default_factory=threading.Lock)


class SiteStore:
    """One site's dataset store: ``<root>/datasets/<name>/`` and ``<root>/incoming/<transfer>/``."""

    def __init__(self, root: Path, keys: KeyStore) -> None:
        self.root = root
        self.keys = keys
        (root / "datasets").mkdir(parents=True, exist_ok=True)
        (root / "incoming").mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _Incoming] = {}
        self._lock = threading.Lock()
        #: Per receiving thread: one plaintext buffer reused for every chunk.
        self._buffers = threading.local()

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    def has(self, dataset: str) -> bool:
        return (self.dataset_dir(dataset) / "manifest.json").exists()

    def manifest_of(self, dataset: str) -> Manifest:
        return Manifest.model_validate_json((self.dataset_dir(dataset) / "manifest.json").read_text())

    def data_path(self, dataset: str) -> Path:
        d = self.dataset_dir(dataset)
        return d / "data.sealed" if (d / "data.sealed").exists() else d / "data"

    # The receiving side of a Channel.

    def begin(self, offer: Offer) -> set[int]:
        with self._lock:
            if offer.transfer_id in self._open:
                return set(self._open[offer.transfer_id].have)
            tdir = self.root / "incoming" / offer.transfer_id
            tdir.mkdir(parents=True, exist_ok=True)
            self.keys.put(f"transfer-{offer.transfer_id}", offer.key)
            meta = {"dataset": offer.dataset, "at_rest": offer.at_rest, "manifest": offer.manifest.model_dump()}
            (tdir / "offer.json").write_text(json.dumps(meta))
            have_file = tdir / "have"
            have = {int(x) for x in have_file.read_text().split()} if have_file.exists() else set()
            fd = os.open(tdir / "data.partial", os.O_RDWR | os.O_CREAT, 0o600)
            m = offer.manifest
            stored = m.size + (m.count * OVERHEAD if offer.at_rest else 0)
            if os.fstat(fd).st_size != stored:
                os.ftruncate(fd, stored)
            self._open[offer.transfer_id] = _Incoming(offer, fd, have)
            return set(have)

    def put(self, transfer_id: str, index: int, last: bool, blob: bytes | memoryview) -> None:
        inc = self._open.get(transfer_id)
        if inc is None:
            raise TransferError(f"transfer {transfer_id} is not open at this site; begin it first")
        m = inc.offer.manifest
        if not 0 <= index < m.count or last != (index == m.count - 1):
            raise ChunkRejected(index, f"not a chunk of this transfer ({m.count} chunks)")
        buf = getattr(self._buffers, "plain", None)
        if buf is None:
            buf = self._buffers.plain = bytearray(m.chunk_size)
        try:
            plain = open_into(inc.offer.key, transfer_id, index, last, blob, buf)
        except SealError as exc:
            raise ChunkRejected(index, str(exc)) from None
        if len(plain) != m.chunk_len(index) or chunk_hash(plain) != m.chunks[index]:
            raise ChunkRejected(index, "its BLAKE3 hash does not match the manifest")
        if inc.offer.at_rest:
            key = self.keys.get_or_create(f"dataset-{inc.offer.dataset}")
            os.pwrite(inc.fd, seal(key, inc.offer.dataset, index, last, plain), index * (m.chunk_size + OVERHEAD))
        else:
            os.pwrite(inc.fd, plain, index * m.chunk_size)
        with inc.lock:
            if index not in inc.have:
                inc.have.add(index)
                with (self.root / "incoming" / transfer_id / "have").open("a") as f:
                    f.write(f"{index}\n")

    def finish(self, transfer_id: str) -> str:
        inc = self._open.get(transfer_id)
        if inc is None:
            raise TransferError(f"transfer {transfer_id} is not open at this site")
        m = inc.offer.manifest
        missing = sorted(set(range(m.count)) - inc.have)
        if missing:
            raise TransferError(f"transfer {transfer_id} still lacks chunks {missing[:10]}; resume it")
        if merkle_root(m.chunks) != m.root:
            raise TransferError(f"the manifest of transfer {transfer_id} does not match its Merkle root")
        os.fsync(inc.fd)
        os.close(inc.fd)
        tdir = self.root / "incoming" / transfer_id
        final = self.dataset_dir(inc.offer.dataset)
        final.mkdir(parents=True, exist_ok=True)
        os.replace(tdir / "data.partial", final / ("data.sealed" if inc.offer.at_rest else "data"))
        (final / "manifest.json").write_text(m.model_dump_json())
        shutil.rmtree(tdir)
        self.keys.delete(f"transfer-{transfer_id}")
        del self._open[transfer_id]
        return m.root

    def read_chunk(self, dataset: str, index: int) -> bytes:
        """Chunk ``index`` of this site's copy, opened from at-rest sealing when sealed."""
        m = self.manifest_of(dataset)
        path = self.data_path(dataset)
        last = index == m.count - 1
        with path.open("rb") as f:
            if path.name == "data.sealed":
                key = self.keys.get(f"dataset-{dataset}")
                if key is None:
                    raise TransferError(f"the at-rest key of '{dataset}' is missing from the key store")
                f.seek(index * (m.chunk_size + OVERHEAD))
                return open_sealed(key, dataset, index, last, f.read(m.chunk_len(index) + OVERHEAD))
            f.seek(index * m.chunk_size)
            return f.read(m.chunk_len(index))

    def read_plain(self, dataset: str) -> Iterator[bytes]:
        """The dataset's bytes, opened from at-rest sealing if needed, each chunk verified."""
        m = self.manifest_of(dataset)
        sealed = self.data_path(dataset).name == "data.sealed"
        key = self.keys.get(f"dataset-{dataset}") if sealed else None
        with self.data_path(dataset).open("rb") as f:
            for i in range(m.count):
                last = i == m.count - 1
                if key is not None:
                    blob = f.read(m.chunk_len(i) + OVERHEAD)
                    chunk = open_sealed(key, dataset, i, last, blob)
                else:
                    chunk = f.read(m.chunk_len(i))
                if chunk_hash(chunk) != m.chunks[i]:
                    raise TransferError(f"chunk {i} of '{dataset}' at {self.root} does not match its manifest")
                yield chunk

    def adopt(self, dataset: str, source: Path, manifest: Manifest, *, at_rest: bool) -> None:
        """Register a file as this site's copy of ``dataset`` (its home copy)."""
        final = self.dataset_dir(dataset)
        final.mkdir(parents=True, exist_ok=True)
        if at_rest:
            key = self.keys.get_or_create(f"dataset-{dataset}")
            with source.open("rb") as src, (final / "data.sealed").open("wb") as dst:
                for i in range(manifest.count):
                    dst.write(seal(key, dataset, i, i == manifest.count - 1, src.read(manifest.chunk_len(i))))
        else:
            shutil.copyfile(source, final / "data")
        (final / "manifest.json").write_text(manifest.model_dump_json())


class LocalChannel:
    """A channel to a store in this process (the same sealing and checks, no network)."""

    def __init__(self, store: SiteStore) -> None:
        self.store = store

    def begin(self, offer: Offer) -> set[int]:
        return self.store.begin(offer)

    def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
        self.store.put(transfer_id, index, last, blob)

    def finish(self, transfer_id: str) -> str:
        return self.store.finish(transfer_id)


# --- sender ---------------------------------------------------------------------------------


class RateLimit:
    """A token bucket over bytes; ``None`` means no cap."""

    def __init__(
        self,
        bytes_per_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = bytes_per_s
        self.clock = clock
        self.sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + n / self.rate
            wait = start - now
        if wait > 0:
            self.sleep(wait)


@dataclass
class SendResult:
    chunks_sent: int = 0
    chunks_skipped: int = 0
    resends: int = 0
    bytes_sent: int = 0
    root: str = ""


def send(
    chunks: Callable[[int], bytes],
    offer: Offer,
    channel: Channel,
    *,
    workers: int = 2,
    bandwidth_bps: float | None = None,
    progress: Progress | None = None,
    max_resends: int = 3,
) -> SendResult:
    """Send every chunk the receiver lacks; ``chunks(i)`` reads chunk ``i`` of the source."""
    m = offer.manifest
    have = channel.begin(offer)
    result = SendResult(chunks_skipped=len(have))
    missing = [i for i in range(m.count) if i not in have]
    limit = RateLimit(bandwidth_bps)
    done = sum(m.chunk_len(i) for i in have)
    lock = threading.Lock()
    if progress:
        progress(done, m.size)

    def one(index: int) -> None:
        nonlocal done
        last = index == m.count - 1
        data = chunks(index)
        for attempt in range(max_resends + 1):
            limit.take(len(data))
            blob = seal(offer.key, offer.transfer_id, index, last, data)
            try:
                channel.put(offer.transfer_id, index, last, blob)
                break
            except ChunkRejected:
                if attempt == max_resends:
                    raise
                with lock:
                    result.resends += 1
        with lock:
            result.chunks_sent += 1
            result.bytes_sent += len(data)
            done += len(data)
            if progress:
                progress(done, m.size)

    if workers <= 1:
        for i in missing:
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for fut in [pool.submit(one, i) for i in missing]:
                fut.result()
    result.root = channel.finish(offer.transfer_id)
    return result


@contextmanager
def file_chunks(path: Path, manifest: Manifest) -> Iterator[Callable[[int], bytes]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield lambda i: os.pread(fd, manifest.chunk_len(i), i * manifest.chunk_size)
    finally:
        os.close(fd)
