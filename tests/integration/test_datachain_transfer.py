"""The transfer engine on real files: sealing, verification, resume, resend, HTTP."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from suanli.datachain.channel_http import HttpChannel, serve
from suanli.datachain.crypto import KeyStore, SealError, new_key, open_sealed, seal
from suanli.datachain.manifest import MiB, build_manifest, merkle_root
from suanli.datachain.transfer import ChunkRejected, LocalChannel, Offer, RateLimit, SiteStore, file_chunks, send

CHUNK = 4 * MiB


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
    server = serve(dest)
    channel = HttpChannel("127.0.0.1", server.server_address[1])
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
