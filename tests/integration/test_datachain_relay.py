"""Site → relay → site: sealed chunks through a bounded relay that never holds the key, with
back-pressure, and resumption after the relay restarts or a chunk is damaged on the way."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from suanli.datachain.crypto import KeyStore, new_key
from suanli.datachain.manifest import MiB, build_manifest
from suanli.datachain.relay import Chunk, Outcome, Relay, RelayChannel, RelayLost, Ticket, receive
from suanli.datachain.sender import send
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import Offer, TransferError

CHUNK = 4 * MiB


class Switchable:
    """A link to a relay that a test can swap for a fresh one (the relay restarted), or that
    damages one chunk on its way; it keeps every sealed blob that passed."""

    def __init__(self, relay: Relay, *, damage: int | None = None, restart_after: int | None = None) -> None:
        self.relay = relay
        self.damage = damage
        self.restart_after = restart_after
        self.pushed: list[bytes] = []
        self.lock = threading.Lock()

    def open(self, ticket: Ticket) -> None:
        self.relay.open(ticket)

    def push(self, transfer_id: str, chunk: Chunk, timeout: float) -> bool:
        with self.lock:
            if self.restart_after is not None and len(self.pushed) >= self.restart_after:
                self.restart_after = None
                self.relay = Relay(self.relay.capacity)  # all it held is gone
            self.pushed.append(chunk.blob)
            if chunk.index == self.damage:
                self.damage = None
                blob = bytearray(chunk.blob)
                blob[len(blob) // 2] ^= 0xFF
                chunk = Chunk(chunk.index, chunk.last, bytes(blob))
        return self.relay.push(transfer_id, chunk, timeout)

    def pull(self, transfer_id: str, timeout: float) -> Chunk | None:
        return self.relay.pull(transfer_id, timeout)

    def report_have(self, transfer_id: str, have: set[int]) -> None:
        self.relay.report_have(transfer_id, have)

    def wait_have(self, transfer_id: str, timeout: float) -> set[int] | None:
        return self.relay.wait_have(transfer_id, timeout)

    def report_outcome(self, transfer_id: str, outcome: Outcome) -> None:
        self.relay.report_outcome(transfer_id, outcome)

    def wait_outcome(self, transfer_id: str, timeout: float) -> Outcome | None:
        return self.relay.wait_outcome(transfer_id, timeout)


@pytest.fixture
def sites(tmp_path: Path) -> tuple[SiteStore, SiteStore, bytes]:
    """beijing holds 'notes' (sealed at rest); tianjin holds nothing yet. Each its own home."""
    data = os.urandom(6 * CHUNK + 999)
    src = tmp_path / "notes.bin"
    src.write_bytes(data)
    beijing = SiteStore(tmp_path / "agents/beijing/store", KeyStore(tmp_path / "agents/beijing/keys"))
    tianjin = SiteStore(tmp_path / "agents/tianjin/store", KeyStore(tmp_path / "agents/tianjin/keys"))
    beijing.adopt("notes", src, build_manifest(src, CHUNK), at_rest=True)
    src.unlink()
    return beijing, tianjin, data


def _receiving(tianjin: SiteStore, offer: Offer, link: Switchable) -> tuple[threading.Thread, list[object]]:
    got: list[object] = []

    def run() -> None:
        try:
            got.append(receive(tianjin, offer, link, idle_s=30, poll_s=0.2))
        except Exception as exc:  # the test asserts on it
            got.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def _send(beijing: SiteStore, offer: Offer, link: Switchable) -> Callable[[], object]:
    def run() -> object:
        with beijing.chunks("notes") as chunks:
            return send(chunks, offer, RelayChannel(link, wait_s=30, poll_s=0.2), workers=2)

    return run


def test_a_copy_goes_through_the_relay_as_ciphertext_within_its_bound(
    tmp_path: Path, sites: tuple[SiteStore, SiteStore, bytes]
) -> None:
    beijing, tianjin, data = sites
    relay = Relay(capacity=2)
    link = Switchable(relay)
    offer = Offer(uuid.uuid4().hex, "notes", beijing.manifest_of("notes"), new_key(), at_rest=True)
    thread, got = _receiving(tianjin, offer, link)
    result = _send(beijing, offer, link)()
    thread.join(30)
    assert got == [offer.manifest.root]
    assert getattr(result, "root", None) == offer.manifest.root
    assert b"".join(tianjin.read_plain("notes")) == data
    assert relay.high_water <= 2  # never more than its bound held at once
    assert relay.buffered() == 0
    assert len(link.pushed) == offer.manifest.count
    for blob in link.pushed:  # only ciphertext passed: no stretch of the data, never the key
        assert data[:64] not in blob
        assert data[CHUNK : CHUNK + 64] not in blob
        assert offer.key not in blob
    assert "key" not in Ticket.__dataclass_fields__
    assert data[:4096] not in (tmp_path / "agents/tianjin/store/datasets/notes/data.sealed").read_bytes()


def test_a_full_relay_pushes_back_and_refuses_what_it_does_not_know(sites: tuple[SiteStore, SiteStore, bytes]) -> None:
    beijing, _, _ = sites
    relay = Relay(capacity=3)
    ticket = Ticket(uuid.uuid4().hex, "notes", beijing.manifest_of("notes"))
    relay.open(ticket)
    with pytest.raises(RelayLost, match="begin again"):  # the source has not heard what to send
        relay.push(ticket.transfer_id, Chunk(0, False, b"s"), timeout=0)
    with pytest.raises(RelayLost, match="say it again"):  # the destination has not said what it holds
        relay.pull(ticket.transfer_id, timeout=0)
    relay.report_have(ticket.transfer_id, set())
    assert relay.wait_have(ticket.transfer_id, timeout=0) == set()
    for i in range(3):
        assert relay.push(ticket.transfer_id, Chunk(i, False, b"s" * 100), timeout=1)
    assert not relay.push(ticket.transfer_id, Chunk(3, False, b"s" * 100), timeout=0.2)  # full: wait
    assert relay.buffered() == 3
    pulled = relay.pull(ticket.transfer_id, timeout=1)
    assert pulled is not None
    assert pulled.index == 0
    assert relay.push(ticket.transfer_id, Chunk(3, False, b"s" * 100), timeout=1)  # room again
    with pytest.raises(TransferError, match="not a chunk"):
        relay.push(ticket.transfer_id, Chunk(6, False, b"s"), timeout=1)  # the last chunk says last
    with pytest.raises(RelayLost):
        relay.push(uuid.uuid4().hex, Chunk(0, False, b"s"), timeout=1)
    with pytest.raises(TransferError, match="not a transfer id"):
        Ticket("..", "notes", beijing.manifest_of("notes"))
    with pytest.raises(TransferError, match="other data"):
        relay.open(Ticket(ticket.transfer_id, "other", beijing.manifest_of("notes")))
    # The destination's word stays until the source reads it, however often either side reopens.
    relay.report_outcome(ticket.transfer_id, Outcome(root="ab" * 32))
    relay.open(ticket)
    assert relay.wait_outcome(ticket.transfer_id, timeout=0) == Outcome(root="ab" * 32)
    while relay.pull(ticket.transfer_id, timeout=0) is not None:
        pass
    assert relay.push(ticket.transfer_id, Chunk(1, False, b"s"), timeout=0)  # sent again: the word is stale
    assert relay.wait_outcome(ticket.transfer_id, timeout=0) is None


def test_a_copy_resumes_after_the_relay_restarts(sites: tuple[SiteStore, SiteStore, bytes]) -> None:
    beijing, tianjin, data = sites
    link = Switchable(Relay(capacity=2), restart_after=4)
    offer = Offer(uuid.uuid4().hex, "notes", beijing.manifest_of("notes"), new_key(), at_rest=True)
    thread, got = _receiving(tianjin, offer, link)
    run = _send(beijing, offer, link)
    with pytest.raises(RelayLost):
        run()
    result = run()  # the copy run again: the destination said what it holds
    thread.join(30)
    assert got == [offer.manifest.root]
    assert getattr(result, "chunks_skipped", 0) >= 1
    assert b"".join(tianjin.read_plain("notes")) == data


def test_a_chunk_damaged_in_the_relay_is_refused_and_sent_again(sites: tuple[SiteStore, SiteStore, bytes]) -> None:
    beijing, tianjin, data = sites
    link = Switchable(Relay(capacity=4), damage=2)
    offer = Offer(uuid.uuid4().hex, "notes", beijing.manifest_of("notes"), new_key(), at_rest=True)
    thread, got = _receiving(tianjin, offer, link)
    run = _send(beijing, offer, link)
    with pytest.raises(TransferError, match=r"still lacks chunks \[2\]"):
        run()
    result = run()
    thread.join(30)
    assert got == [offer.manifest.root]
    assert getattr(result, "chunks_sent", 0) == 1
    assert b"".join(tianjin.read_plain("notes")) == data
