"""The sending side of a transfer: :func:`send` seals the chunks the receiver lacks and puts
them through a :class:`~suanli.datachain.transfer.Channel`, several at once, under a
:class:`RateLimit`; :func:`file_chunks` reads a source file into chunks, through buffers reused
per thread. The protocol both ends share is in :mod:`suanli.datachain.transfer`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from suanli.datachain.crypto import OVERHEAD, seal_into
from suanli.datachain.manifest import Manifest
from suanli.datachain.transfer import DEFAULT_WORKERS, Channel, ChunkRejected, ChunkSource, Offer, chunk_buffer

Progress = Callable[[int, int], None]


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
    chunks: ChunkSource,
    offer: Offer,
    channel: Channel,
    *,
    workers: int = DEFAULT_WORKERS,
    bandwidth_bps: float | None = None,
    progress: Progress | None = None,
    max_resends: int = 3,
) -> SendResult:
    """Send every chunk the receiver lacks; ``chunks(i)`` reads chunk ``i`` of the source.

    ``workers`` threads each read, seal and send whole chunks, so reading, sealing (which
    releases the GIL), the network and the receiver's work overlap; each thread seals into one
    buffer of its own. Chunks may arrive in any order: each is bound to its position by its
    associated data and written there. The first chunk that cannot be sent stops the others."""
    m = offer.manifest
    have = channel.begin(offer)
    result = SendResult(chunks_skipped=len(have))
    missing = [i for i in range(m.count) if i not in have]
    limit = RateLimit(bandwidth_bps)
    done = sum(m.chunk_len(i) for i in have)
    lock = threading.Lock()
    stop = threading.Event()
    local = threading.local()
    if progress:
        progress(done, m.size)

    def one(index: int) -> None:
        if stop.is_set():
            return
        try:
            send_one(index)
        except BaseException:
            stop.set()  # the other workers take no new chunk
            raise

    def send_one(index: int) -> None:
        nonlocal done
        last = index == m.count - 1
        data = memoryview(chunks(index))
        out: mmap.mmap | None = getattr(local, "out", None)
        if out is None or len(out) < len(data) + OVERHEAD:
            out = local.out = chunk_buffer(max(m.chunk_size, len(data)) + OVERHEAD)
        for attempt in range(max_resends + 1):
            limit.take(len(data))
            blob = seal_into(offer.key, offer.transfer_id, index, last, data, out)
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
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="suanli-send") as pool:
            futures = [pool.submit(one, i) for i in missing]
            try:
                for fut in futures:
                    fut.result()
            except BaseException:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    result.root = channel.finish(offer.transfer_id)
    return result


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill ``view`` from ``offset``; fewer bytes only at the end of the file."""
    got = 0
    while got < len(view):
        k = os.preadv(fd, [view[got:]], offset + got)
        if not k:
            break
        got += k
    return got


@contextmanager
def file_chunks(path: Path, manifest: Manifest) -> Iterator[Callable[[int], memoryview]]:
    """``chunks(i)`` over a source file, read into one buffer per calling thread (no fresh
    chunk-sized allocation per read): a returned view stays valid until that thread reads the
    next chunk. A file shorter than its manifest gives a short chunk, which the receiver refuses."""
    fd = os.open(path, os.O_RDONLY)
    local = threading.local()
    with contextlib.suppress(OSError, AttributeError):  # a hint for readahead; not everywhere
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    def read(index: int) -> memoryview:
        n = manifest.chunk_len(index)
        buf: mmap.mmap | None = getattr(local, "buf", None)
        if buf is None or len(buf) < n:
            buf = local.buf = chunk_buffer(max(n, manifest.chunk_size))
        view = memoryview(buf)
        return view[: _pread_into(fd, view[:n], index * manifest.chunk_size)]

    try:
        yield read
    finally:
        os.close(fd)
