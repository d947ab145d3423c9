"""A site's dataset store, and the receiving side of a transfer.

:class:`SiteStore` keeps ``<root>/datasets/<name>/`` (the data, sealed at rest for level
``important`` and above, and its manifest) and ``<root>/incoming/<transfer>/`` (a transfer on its
way in). As a receiver it opens, checks and writes each chunk in place (``begin``, ``put``,
``finish``), resumes after a crash from the chunks it recorded, and makes a finished copy
durable; as a source it reads a dataset's chunks for :func:`~suanli.datachain.sender.send`
(``chunks``). :class:`LocalChannel` is a channel to a store in this process. The protocol both
ends share is in :mod:`suanli.datachain.transfer`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from suanli.datachain.crypto import (
    OVERHEAD,
    Buffer,
    KeyStore,
    SealError,
    open_into,
    open_sealed,
    seal,
    seal_into,
)
from suanli.datachain.manifest import MAX_CHUNK, MIN_CHUNK, Manifest, chunk_hash, merkle_root
from suanli.datachain.sender import _pread_into, file_chunks
from suanli.datachain.transfer import (
    ChunkRejected,
    ChunkSource,
    Offer,
    TransferError,
    checked_dataset,
    checked_transfer_id,
    chunk_buffer,
)

#: ``O_DIRECT`` needs offsets, lengths and buffer addresses aligned to the device's logical
#: block; 4096 covers 512-byte and 4K-sector disks. Chunk sizes are whole MiB, so every chunk
#: but the last (and every chunk of a sealed-at-rest copy, whose stride is not aligned) qualifies.
DIRECT_ALIGN = 4096


@dataclass
class _Incoming:
    offer: Offer
    #: The partial file, opened for buffered I/O (the last chunk, sealed-at-rest chunks, fsync).
    fd: int
    #: The same file opened with ``O_DIRECT``, or ``None`` where the file system refuses it.
    direct_fd: int | None
    #: ``have``, opened for appending: one line per chunk written.
    have_fd: int
    have: set[int]
    #: The dataset's at-rest key (``important`` and above), fetched once per transfer.
    rest_key: bytes | None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open_direct(path: Path) -> int | None:
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:  # EINVAL: tmpfs and some FUSE file systems take no direct I/O
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole or not at all, on disk once this returns (but for the
    directory entry: the caller fsyncs the directory)."""
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SiteStore:
    """One site's dataset store: ``<root>/datasets/<name>/`` and ``<root>/incoming/<transfer>/``."""

    def __init__(self, root: Path, keys: KeyStore) -> None:
        self.root = root
        self.keys = keys
        (root / "datasets").mkdir(parents=True, exist_ok=True)
        (root / "incoming").mkdir(parents=True, exist_ok=True)
        self._open: dict[str, _Incoming] = {}
        self._lock = threading.Lock()
        #: Per receiving thread: one page-aligned plaintext buffer (and, for data sealed at
        #: rest, one sealing buffer) reused for every chunk.
        self._buffers = threading.local()

    def dataset_dir(self, dataset: str) -> Path:
        """``<root>/datasets/<dataset>``; a name that is not a dataset name (a path, ``..``) is
        refused, so nothing this store is told can reach outside it."""
        return self.root / "datasets" / checked_dataset(dataset)

    def _incoming_dir(self, transfer_id: str) -> Path:
        return self.root / "incoming" / checked_transfer_id(transfer_id)

    def has(self, dataset: str) -> bool:
        return (self.dataset_dir(dataset) / "manifest.json").exists()

    def manifest_of(self, dataset: str) -> Manifest:
        return Manifest.model_validate_json((self.dataset_dir(dataset) / "manifest.json").read_text())

    def data_path(self, dataset: str) -> Path:
        d = self.dataset_dir(dataset)
        return d / "data.sealed" if (d / "data.sealed").exists() else d / "data"

    # The receiving side of a Channel.

    def begin(self, offer: Offer) -> set[int]:
        """Open (or reopen) a transfer; returns the chunks already held. What the offer says is
        checked, not trusted: its ids are ids, its chunks fit, its manifest matches its root, and
        it does not replace a different copy of a dataset this site already holds."""
        tdir = self._incoming_dir(offer.transfer_id)
        final = self.dataset_dir(offer.dataset)
        with self._lock:
            if offer.transfer_id in self._open:
                inc = self._open[offer.transfer_id]
                if inc.offer.dataset != offer.dataset or inc.offer.manifest.root != offer.manifest.root:
                    raise TransferError(f"transfer {offer.transfer_id} is already open here for other data")
                return set(inc.have)
            m = offer.manifest
            if not MIN_CHUNK <= m.chunk_size <= MAX_CHUNK:
                raise TransferError(f"chunks must be 4–16 MiB; this transfer's are {m.chunk_size} bytes")
            if not m.verify_root():
                raise TransferError(f"the manifest of transfer {offer.transfer_id} does not match its Merkle root")
            if (final / "manifest.json").exists() and self.manifest_of(offer.dataset).root != m.root:
                raise TransferError(
                    f"this site already holds different data under '{offer.dataset}'; a copy never replaces it"
                )
            tdir.mkdir(parents=True, exist_ok=True)
            self.keys.put(f"transfer-{offer.transfer_id}", offer.key)
            meta = {"dataset": offer.dataset, "at_rest": offer.at_rest, "manifest": offer.manifest.model_dump()}
            (tdir / "offer.json").write_text(json.dumps(meta))
            partial = tdir / "data.partial"
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
            stored = m.size + (m.count * OVERHEAD if offer.at_rest else 0)
            if os.fstat(fd).st_size != stored:
                os.ftruncate(fd, stored)
            rest_key = self.keys.get_or_create(f"dataset-{offer.dataset}") if offer.at_rest else None
            inc = _Incoming(
                offer=offer,
                fd=fd,
                direct_fd=None if offer.at_rest else _open_direct(partial),
                have_fd=-1,
                have=set(),
                rest_key=rest_key,
            )
            inc.have = self._recorded_chunks(inc, tdir / "have")
            inc.have_fd = os.open(tdir / "have", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._open[offer.transfer_id] = inc
            return set(inc.have)

    def _recorded_chunks(self, inc: _Incoming, have_file: Path) -> set[int]:
        """The chunks an earlier run recorded, each read back and checked against the manifest.

        Chunks and the ``have`` list are not fsynced one by one, so after a crash the list may
        name a chunk whose bytes never reached the disk (or hold a torn last line). Checking
        each recorded chunk again costs a read and a hash once per resume, where an fsync per
        chunk would cost every transfer; a chunk that fails is simply sent again. The list is
        rewritten with the chunks that passed."""
        if not have_file.exists():
            return set()
        m = inc.offer.manifest
        recorded: set[int] = set()
        for token in have_file.read_text().split():
            with contextlib.suppress(ValueError):
                if 0 <= (i := int(token)) < m.count:
                    recorded.add(i)
        good = {i for i in sorted(recorded) if self._stored_chunk_ok(inc, i)}
        _write_durably(have_file, "".join(f"{i}\n" for i in sorted(good)))
        return good

    def _stored_chunk_ok(self, inc: _Incoming, index: int) -> bool:
        m = inc.offer.manifest
        last = index == m.count - 1
        if inc.rest_key is not None:
            blob = os.pread(inc.fd, m.chunk_len(index) + OVERHEAD, index * (m.chunk_size + OVERHEAD))
            try:
                plain: bytes = open_sealed(inc.rest_key, inc.offer.dataset, index, last, blob)
            except SealError:
                return False
        else:
            plain = os.pread(inc.fd, m.chunk_len(index), index * m.chunk_size)
        return len(plain) == m.chunk_len(index) and chunk_hash(plain) == m.chunks[index]

    def _buffer(self, name: str, size: int) -> mmap.mmap:
        buf: mmap.mmap | None = getattr(self._buffers, name, None)
        if buf is None or len(buf) < size:
            buf = chunk_buffer(size)
            setattr(self._buffers, name, buf)
        return buf

    def _write(self, inc: _Incoming, data: memoryview, offset: int) -> None:
        """``data`` at ``offset`` of the partial file: direct I/O when aligned (``data`` starts a
        page-aligned buffer), through the page cache otherwise."""
        fd = inc.fd
        if inc.direct_fd is not None and offset % DIRECT_ALIGN == 0 and len(data) % DIRECT_ALIGN == 0:
            fd = inc.direct_fd
        while len(data):
            try:
                n = os.pwrite(fd, data, offset)
            except OSError as exc:
                if fd == inc.fd or exc.errno != errno.EINVAL:
                    raise
                fd = inc.fd  # the device wants a larger alignment: use the page cache
                continue
            data, offset = data[n:], offset + n

    def put(self, transfer_id: str, index: int, last: bool, blob: Buffer) -> None:
        inc = self._open.get(checked_transfer_id(transfer_id))
        if inc is None:
            raise TransferError(f"transfer {transfer_id} is not open at this site; begin it first")
        m = inc.offer.manifest
        if not 0 <= index < m.count or last != (index == m.count - 1):
            raise ChunkRejected(index, f"not a chunk of this transfer ({m.count} chunks)")
        try:
            plain = open_into(inc.offer.key, transfer_id, index, last, blob, self._buffer("plain", m.chunk_size))
        except SealError as exc:
            raise ChunkRejected(index, str(exc)) from None
        if len(plain) != m.chunk_len(index) or chunk_hash(plain, parallel=False) != m.chunks[index]:
            raise ChunkRejected(index, "its BLAKE3 hash does not match the manifest")
        if inc.rest_key is not None:
            out = self._buffer("sealed", m.chunk_size + OVERHEAD)
            sealed = seal_into(inc.rest_key, inc.offer.dataset, index, last, plain, out)
            self._write(inc, sealed, index * (m.chunk_size + OVERHEAD))
        else:
            self._write(inc, plain, index * m.chunk_size)
        with inc.lock:
            if index not in inc.have:
                inc.have.add(index)
                os.write(inc.have_fd, f"{index}\n".encode())

    def finish(self, transfer_id: str) -> str:
        """Check that every chunk is in, make the copy durable, and move it into place.

        Durable means: the data (one fsync covers the page-cache writes and the metadata of
        the direct writes), the manifest, and both directory entries are on disk before this
        returns, so a transfer reported done survives a crash."""
        inc = self._open.get(checked_transfer_id(transfer_id))
        if inc is None:
            raise TransferError(f"transfer {transfer_id} is not open at this site")
        m = inc.offer.manifest
        missing = sorted(set(range(m.count)) - inc.have)
        if missing:
            raise TransferError(f"transfer {transfer_id} still lacks chunks {missing[:10]}; resume it")
        if merkle_root(m.chunks) != m.root:
            raise TransferError(f"the manifest of transfer {transfer_id} does not match its Merkle root")
        os.fsync(inc.fd)
        for fd in (inc.direct_fd, inc.fd, inc.have_fd):
            if fd is not None:
                os.close(fd)
        tdir = self._incoming_dir(transfer_id)
        final = self.dataset_dir(inc.offer.dataset)
        final.mkdir(parents=True, exist_ok=True)
        os.replace(tdir / "data.partial", final / ("data.sealed" if inc.offer.at_rest else "data"))
        _write_durably(final / "manifest.json", m.model_dump_json())
        _fsync_dir(final)
        _fsync_dir(final.parent)
        shutil.rmtree(tdir)
        self.keys.delete(f"transfer-{transfer_id}")
        del self._open[transfer_id]
        return m.root

    @contextmanager
    def chunks(self, dataset: str) -> Iterator[ChunkSource]:
        """The source side of a transfer: ``chunks(i)`` over this site's copy, opened from
        at-rest sealing when sealed, into buffers reused per thread (as :func:`file_chunks`)."""
        m = self.manifest_of(dataset)
        path = self.data_path(dataset)
        if path.name != "data.sealed":
            with file_chunks(path, m) as read_plain:
                yield read_plain
            return
        key = self.keys.get(f"dataset-{dataset}")
        if key is None:
            raise TransferError(f"the at-rest key of '{dataset}' is missing from the key store")
        local = threading.local()
        fd = os.open(path, os.O_RDONLY)

        def read_sealed(index: int) -> memoryview:
            if getattr(local, "sealed", None) is None:
                local.sealed = chunk_buffer(m.chunk_size + OVERHEAD)
                local.plain = chunk_buffer(m.chunk_size)
            n = m.chunk_len(index) + OVERHEAD
            got = _pread_into(fd, memoryview(local.sealed)[:n], index * (m.chunk_size + OVERHEAD))
            last = index == m.count - 1
            try:
                return open_into(key, dataset, index, last, memoryview(local.sealed)[:got], local.plain)
            except SealError as exc:
                raise TransferError(f"the stored copy of '{dataset}' at {self.root}: {exc}") from None

        try:
            yield read_sealed
        finally:
            os.close(fd)

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


def agent_store(home: Path) -> SiteStore:
    """A site agent's own store under its ``home``: ``store/`` (the data), ``keys/`` (apart)."""
    root = home / "store"
    return SiteStore(root, KeyStore(home / "keys", forbidden=[root]))


class LocalChannel:
    """A channel to a store in this process (the same sealing and checks, no network)."""

    def __init__(self, store: SiteStore) -> None:
        self.store = store

    def begin(self, offer: Offer) -> set[int]:
        return self.store.begin(offer)

    def put(self, transfer_id: str, index: int, last: bool, blob: Buffer) -> None:
        self.store.put(transfer_id, index, last, blob)

    def finish(self, transfer_id: str) -> str:
        return self.store.finish(transfer_id)
