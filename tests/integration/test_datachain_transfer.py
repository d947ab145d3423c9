"""The transfer engine on real files: sealing, verification, resume, resend, HTTP."""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from pathlib import Path

import pytest

from suanli.datachain import site_store
from suanli.datachain.channel_http import HttpChannel, serve
from suanli.datachain.crypto import OVERHEAD, KeyStore, SealError, new_key, open_sealed, seal, seal_into
from suanli.datachain.manifest import MiB, build_manifest, merkle_root
from suanli.datachain.sender import RateLimit, file_chunks, send
from suanli.datachain.site_store import LocalChannel, SiteStore
from suanli.datachain.transfer import ChunkRejected, Offer, TransferError

CHUNK = 4 * MiB
#: The receiving site's token in these tests.
TOKEN = "site-token-" + "x" * 16


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(os.urandom(5 * CHUNK + 777))
    return path


def store(tmp_path: Path, name: str = "dest") -> SiteStore:
    return SiteStore(tmp_path / name, KeyStore(tmp_path / f"{name}-keys"))


def offer_for(source: Path, *, at_rest: bool = False) -> Offer:
    return Offer(uuid.uuid4().hex, "notes", build_manifest(source, CHUNK), new_key(), at_rest)


class Flaky:
    """A channel that breaks (connection lost) after ``fail_after`` chunks, or corrupts chunks."""

    def __init__(self, inner: LocalChannel, *, fail_after: int | None = None, corrupt: set[int] | None = None) -> None:
        self.inner = inner
        self.fail_after = fail_after
        self.corrupt = set(corrupt or ())
        self.puts: list[int] = []

    def begin(self, offer: Offer) -> set[int]:
        return self.inner.begin(offer)

    def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
        if self.fail_after is not None and len(self.puts) >= self.fail_after:
            raise ConnectionError("link lost")
        self.puts.append(index)
        if index in self.corrupt:
            self.corrupt.discard(index)
            damaged = bytearray(blob)
            damaged[len(damaged) // 2] ^= 0xFF
            blob = bytes(damaged)
        self.inner.put(transfer_id, index, last, blob)

    def finish(self, transfer_id: str) -> str:
        return self.inner.finish(transfer_id)


def test_copy_verifies_against_the_manifest(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, LocalChannel(dest), workers=2)
    assert result.root == offer.manifest.root == merkle_root(offer.manifest.chunks)
    assert result.chunks_sent == 6
    assert dest.data_path("notes").read_bytes() == source.read_bytes()
    assert b"".join(dest.read_plain("notes")) == source.read_bytes()


def test_interrupted_transfer_resumes_with_only_missing_chunks(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    flaky = Flaky(LocalChannel(dest), fail_after=3)
    with file_chunks(source, offer.manifest) as chunks, pytest.raises(ConnectionError):
        send(chunks, offer, flaky, workers=1)
    # The receiving side restarts too: a fresh store object over the same directory.
    again = store(tmp_path)
    counting = Flaky(LocalChannel(again))
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, counting, workers=1)
    assert result.chunks_skipped == 3
    assert sorted(counting.puts) == [3, 4, 5]
    assert again.data_path("notes").read_bytes() == source.read_bytes()


def test_corrupted_chunk_is_detected_and_resent(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    flaky = Flaky(LocalChannel(dest), corrupt={1, 4})
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, flaky, workers=1)
    assert result.resends == 2
    assert flaky.puts.count(1) == 2
    assert dest.data_path("notes").read_bytes() == source.read_bytes()


def test_wrong_bytes_under_a_valid_seal_fail_the_manifest(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    dest.begin(offer)
    fake = seal(offer.key, offer.transfer_id, 0, False, os.urandom(CHUNK))
    with pytest.raises(ChunkRejected, match="BLAKE3"):
        dest.put(offer.transfer_id, 0, False, fake)


@pytest.mark.parametrize(
    ("context", "index", "last"),
    [("other-transfer", 0, False), ("T", 1, False), ("T", 0, True)],
    ids=["transfer id", "chunk index", "last flag"],
)
def test_associated_data_binds_transfer_index_and_last_flag(context: str, index: int, last: bool) -> None:
    key = new_key()
    blob = seal(key, "T", 0, False, b"chunk zero")
    assert open_sealed(key, "T", 0, False, blob) == b"chunk zero"
    with pytest.raises(SealError):
        open_sealed(key, context, index, last, blob)


def test_important_data_is_sealed_at_rest_with_a_key_kept_elsewhere(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source, at_rest=True)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks:
        send(chunks, offer, LocalChannel(dest))
    sealed = dest.data_path("notes")
    assert sealed.name == "data.sealed"
    assert source.read_bytes()[:1024] not in sealed.read_bytes()
    assert b"".join(dest.read_plain("notes")) == source.read_bytes()
    assert not list((tmp_path / "dest").rglob("*.key"))
    with pytest.raises(ValueError, match="must not be beside the data"):
        KeyStore(tmp_path / "dest" / "keys", forbidden=[tmp_path / "dest"])


def test_over_http(tmp_path: Path, source: Path) -> None:
    dest = store(tmp_path)
    server = serve(dest, TOKEN)
    channel = HttpChannel("127.0.0.1", server.server_address[1], TOKEN)
    try:
        offer = offer_for(source)
        with file_chunks(source, offer.manifest) as chunks:
            result = send(chunks, offer, channel, workers=2)
        assert result.root == offer.manifest.root
        assert dest.data_path("notes").read_bytes() == source.read_bytes()
        other = offer_for(source)
        assert channel.begin(other) == set()
        with pytest.raises(ChunkRejected, match="chunk 0"):
            channel.put(other.transfer_id, 0, False, b"x" * 64)
    finally:
        channel.close()
        server.shutdown()
        server.server_close()


def test_bandwidth_cap_spaces_chunks_out() -> None:
    now = [100.0]
    waits: list[float] = []
    limit = RateLimit(10 * MiB, clock=lambda: now[0], sleep=waits.append)
    for _ in range(3):
        limit.take(5 * MiB)
    assert waits == [0.5, 1.0]
    RateLimit(None, sleep=waits.append).take(10**12)
    assert len(waits) == 2


# --- the fast path: pipeline, buffer reuse, direct I/O, resume without per-chunk fsync ----------


class Recording:
    """A channel that records the order in which chunks were stored, delaying some of them."""

    def __init__(self, inner: LocalChannel, *, delay: dict[int, float] | None = None) -> None:
        self.inner = inner
        self.delay = delay or {}
        self.stored: list[int] = []
        self.lock = threading.Lock()

    def begin(self, offer: Offer) -> set[int]:
        return self.inner.begin(offer)

    def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
        time.sleep(self.delay.get(index, 0.0))
        self.inner.put(transfer_id, index, last, blob)
        with self.lock:
            self.stored.append(index)

    def finish(self, transfer_id: str) -> str:
        return self.inner.finish(transfer_id)


def test_pipeline_stores_chunks_arriving_out_of_order_in_place(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    channel = Recording(LocalChannel(dest), delay={0: 0.3})
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, channel, workers=4)
    assert channel.stored[0] != 0, "chunk 0 was held back, so others must have landed first"
    assert sorted(channel.stored) == list(range(6))
    assert result.root == offer.manifest.root
    assert dest.data_path("notes").read_bytes() == source.read_bytes()


def test_pipeline_detects_and_resends_corrupted_chunks_with_many_workers(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    flaky = Flaky(LocalChannel(dest), corrupt={0, 3, 5})
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, flaky, workers=4)
    assert result.resends == 3
    assert sorted(flaky.puts) == [0, 0, 1, 2, 3, 3, 4, 5, 5]
    assert dest.data_path("notes").read_bytes() == source.read_bytes()


def test_a_failed_chunk_stops_the_other_workers(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    puts: list[int] = []

    class Broken(Recording):
        def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
            puts.append(index)
            if index == 1:
                raise ConnectionError("link lost")
            time.sleep(0.2)
            super().put(transfer_id, index, last, blob)

    with file_chunks(source, offer.manifest) as chunks, pytest.raises(ConnectionError):
        send(chunks, offer, Broken(LocalChannel(dest)), workers=2)
    assert sorted(puts) == [0, 1], "no new chunk starts once one has failed"


def test_resume_rechecks_recorded_chunks_and_resends_the_ones_lost_in_a_crash(tmp_path: Path, source: Path) -> None:
    """Chunks are not fsynced one by one: after a crash the receiver's list of chunks may name a
    chunk whose bytes never reached the disk. Resuming reads each recorded chunk back."""
    offer = offer_for(source)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks, pytest.raises(ConnectionError):
        send(chunks, offer, Flaky(LocalChannel(dest), fail_after=4), workers=1)
    tdir = tmp_path / "dest" / "incoming" / offer.transfer_id
    assert sorted(int(x) for x in (tdir / "have").read_text().split()) == [0, 1, 2, 3]
    # The crash: chunk 2's bytes were lost, and the list has a torn line and a stray entry.
    with (tdir / "data.partial").open("r+b") as f:
        f.seek(2 * CHUNK)
        f.write(bytes(CHUNK))
    with (tdir / "have").open("a") as f:
        f.write("99\n5x")
    again = store(tmp_path)
    counting = Flaky(LocalChannel(again))
    with file_chunks(source, offer.manifest) as chunks:
        result = send(chunks, offer, counting, workers=2)
    assert result.chunks_skipped == 3
    assert sorted(counting.puts) == [2, 4, 5]
    assert again.data_path("notes").read_bytes() == source.read_bytes()


def test_resume_rechecks_chunks_sealed_at_rest(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source, at_rest=True)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks, pytest.raises(ConnectionError):
        send(chunks, offer, Flaky(LocalChannel(dest), fail_after=3), workers=1)
    partial = tmp_path / "dest" / "incoming" / offer.transfer_id / "data.partial"
    with partial.open("r+b") as f:  # one flipped byte in the stored (sealed) chunk 1
        f.seek(CHUNK + OVERHEAD + 100)
        byte = f.read(1)
        f.seek(CHUNK + OVERHEAD + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = store(tmp_path)
    counting = Flaky(LocalChannel(again))
    with file_chunks(source, offer.manifest) as chunks:
        send(chunks, offer, counting, workers=2)
    assert sorted(counting.puts) == [1, 3, 4, 5]
    assert b"".join(again.read_plain("notes")) == source.read_bytes()


def test_a_finished_copy_is_in_place_with_its_manifest_and_no_leftovers(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks:
        send(chunks, offer, LocalChannel(dest), workers=2)
    final = tmp_path / "dest" / "datasets" / "notes"
    assert sorted(p.name for p in final.iterdir()) == ["data", "manifest.json"]
    assert dest.manifest_of("notes") == offer.manifest
    assert not list((tmp_path / "dest" / "incoming").iterdir())
    assert not list((tmp_path / "dest-keys").glob("transfer-*"))


def test_copy_without_direct_io_is_the_same(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the file system refuses O_DIRECT (tmpfs, some FUSE), chunks go through the page cache."""
    monkeypatch.setattr(site_store, "_open_direct", lambda path: None)
    offer = offer_for(source)
    dest = store(tmp_path)
    with file_chunks(source, offer.manifest) as chunks:
        send(chunks, offer, LocalChannel(dest), workers=2)
    assert dest.data_path("notes").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("at_rest", [False, True], ids=["plain", "sealed at rest"])
def test_a_site_store_is_a_chunk_source(tmp_path: Path, source: Path, at_rest: bool) -> None:
    """The server's path: a site's own copy (opened from at-rest sealing if sealed) to another site."""
    offer = offer_for(source, at_rest=at_rest)
    home = SiteStore(tmp_path / "home", KeyStore(tmp_path / "keys"))
    home.adopt("notes", source, offer.manifest, at_rest=at_rest)
    dest = SiteStore(tmp_path / "dest", KeyStore(tmp_path / "keys"))
    with home.chunks("notes") as chunks:
        result = send(chunks, offer, LocalChannel(dest), workers=3)
    assert result.root == offer.manifest.root
    assert b"".join(dest.read_plain("notes")) == source.read_bytes()


def test_seal_into_reuses_the_buffer_with_a_fresh_nonce_each_time() -> None:
    key = new_key()
    out = bytearray(64 + OVERHEAD)
    first = bytes(seal_into(key, "T", 0, False, b"x" * 64, out))
    second = seal_into(key, "T", 0, False, b"x" * 64, out)
    assert first[:12] != bytes(second[:12])
    assert open_sealed(key, "T", 0, False, first) == open_sealed(key, "T", 0, False, second) == b"x" * 64
    with pytest.raises(ValueError, match="does not fit"):
        seal_into(key, "T", 0, False, b"x" * 65, out)


def test_a_sealed_chunk_larger_than_a_chunk_is_refused(tmp_path: Path, source: Path) -> None:
    offer = offer_for(source)
    dest = store(tmp_path)
    dest.begin(offer)
    too_big = seal(offer.key, offer.transfer_id, 0, False, os.urandom(CHUNK + 4096))
    with pytest.raises(ChunkRejected, match="larger than a chunk"):
        dest.put(offer.transfer_id, 0, False, too_big)


def test_over_http_with_many_connections_and_sealing_at_rest(tmp_path: Path, source: Path) -> None:
    dest = store(tmp_path)
    server = serve(dest, TOKEN)
    channel = HttpChannel("127.0.0.1", server.server_address[1], TOKEN)
    try:
        offer = offer_for(source, at_rest=True)
        with file_chunks(source, offer.manifest) as chunks:
            result = send(chunks, offer, channel, workers=4)
        assert result.root == offer.manifest.root
        assert result.chunks_sent == 6
        assert dest.data_path("notes").name == "data.sealed"
        assert b"".join(dest.read_plain("notes")) == source.read_bytes()
    finally:
        channel.close()
        server.shutdown()
        server.server_close()


def test_the_receiver_refuses_oversized_chunks_and_chunk_sizes(tmp_path: Path, source: Path) -> None:
    dest = store(tmp_path)
    server = serve(dest, TOKEN)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        conn.putrequest("PUT", "/transfers/x/chunks/0?last=0")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", str(1 << 40))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    wide = Offer(uuid.uuid4().hex, "notes", build_manifest(source, 32 * MiB), new_key())
    with pytest.raises(TransferError, match="4–16 MiB"):
        dest.begin(wide)
    assert not (tmp_path / "dest" / "incoming" / wide.transfer_id).exists()
