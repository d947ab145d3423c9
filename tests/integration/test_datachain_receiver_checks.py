"""The receiving side checks what it is told: ids are ids (never paths), and every channel
request carries the site's token. Each test here fails on a receiver that trusts its sender."""

from __future__ import annotations

import http.client
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.datachain.channel_http import HttpChannel, serve
from suanli.datachain.crypto import KeyStore, new_key, seal
from suanli.datachain.manifest import Manifest, MiB, build_manifest
from suanli.datachain.sender import file_chunks, send
from suanli.datachain.site_store import LocalChannel, SiteStore
from suanli.datachain.transfer import Offer, TransferError

CHUNK = 4 * MiB
TOKEN = "beijing-site-token-" + "k" * 16


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.bin"
    path.write_bytes(os.urandom(CHUNK + 321))
    return path


@pytest.fixture
def dest(tmp_path: Path) -> SiteStore:
    return SiteStore(tmp_path / "sites" / "tianjin", KeyStore(tmp_path / "keys"))


def _send_local(source: Path, dest: SiteStore, transfer_id: str, dataset: str) -> None:
    offer = Offer(transfer_id, dataset, build_manifest(source, CHUNK), new_key())
    with file_chunks(source, offer.manifest) as chunks:
        send(chunks, offer, LocalChannel(dest))


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_a_dataset_name_with_dotdot_never_writes_outside_the_store(
    tmp_path: Path, source: Path, dest: SiteStore
) -> None:
    before = _files_under(tmp_path)
    with pytest.raises(TransferError, match="is not a dataset name"):
        _send_local(source, dest, uuid.uuid4().hex, "../../escaped")
    assert not (tmp_path / "escaped").exists()
    assert _files_under(tmp_path) == before
    for name in ("..", ".", "a/b", "/etc", ".hidden", ""):
        with pytest.raises(TransferError, match="is not a dataset name"):
            dest.dataset_dir(name)


def test_a_transfer_id_of_dotdot_never_deletes_the_store(tmp_path: Path, source: Path, dest: SiteStore) -> None:
    _send_local(source, dest, uuid.uuid4().hex, "kept")
    assert dest.has("kept")
    for bad in ("..", ".", "../incoming", "a/b"):
        with pytest.raises(TransferError, match="is not a transfer id"):
            _send_local(source, dest, bad, "other")
    with pytest.raises(TransferError, match="is not a transfer id"):
        dest.finish("..")
    with pytest.raises(TransferError, match="is not a transfer id"):
        dest.put("..", 0, False, b"x" * 64)
    assert dest.has("kept")
    assert b"".join(dest.read_plain("kept")) == source.read_bytes()


def test_a_copy_never_replaces_different_data_under_the_same_name(
    tmp_path: Path, source: Path, dest: SiteStore
) -> None:
    _send_local(source, dest, uuid.uuid4().hex, "notes")
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(CHUNK // 2))
    with pytest.raises(TransferError, match="already holds different data"):
        _send_local(other, dest, uuid.uuid4().hex, "notes")
    assert b"".join(dest.read_plain("notes")) == source.read_bytes()
    _send_local(source, dest, uuid.uuid4().hex, "notes")  # the same data again is harmless


def test_an_offer_whose_manifest_does_not_match_its_root_is_refused(source: Path, dest: SiteStore) -> None:
    m = build_manifest(source, CHUNK)
    forged = Manifest(size=m.size, chunk_size=m.chunk_size, chunks=m.chunks, root="00" * 32)
    with pytest.raises(TransferError, match="Merkle root"):
        dest.begin(Offer(uuid.uuid4().hex, "notes", forged, new_key()))


@pytest.fixture
def receiver(dest: SiteStore) -> Iterator[int]:
    server = serve(dest, TOKEN)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _raw(port: int, method: str, path: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path)
        if token is not None:
            conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _offer_doc(source: Path, dataset: str) -> bytes:
    m = build_manifest(source, CHUNK)
    return json.dumps({"dataset": dataset, "manifest": m.model_dump(), "key": new_key().hex()}).encode()


def test_every_channel_endpoint_needs_the_site_token(source: Path, dest: SiteStore, receiver: int) -> None:
    tid = uuid.uuid4().hex
    offer = _offer_doc(source, "notes")
    for token in (None, "wrong-token-" + "k" * 16, ""):
        assert _raw(receiver, "POST", f"/transfers/{tid}", offer, token)[0] == 401
        assert _raw(receiver, "PUT", f"/transfers/{tid}/chunks/0?last=0", b"x" * 64, token)[0] == 401
        assert _raw(receiver, "POST", f"/transfers/{tid}/finish", b"", token)[0] == 401
    assert not (dest.root / "incoming" / tid).exists()
    with pytest.raises(TransferError):
        dest.put(tid, 0, False, b"x")  # nothing was opened
    wrong = HttpChannel("127.0.0.1", receiver, "wrong-token-" + "k" * 16)
    try:
        with pytest.raises(TransferError, match="site's token"):
            wrong.begin(Offer(tid, "notes", build_manifest(source, CHUNK), new_key()))
    finally:
        wrong.close()
    with pytest.raises(ValueError, match="site's token"):
        serve(dest, "")


def test_the_http_receiver_refuses_paths_for_ids(tmp_path: Path, source: Path, dest: SiteStore, receiver: int) -> None:
    channel = HttpChannel("127.0.0.1", receiver, TOKEN)
    try:
        offer = Offer(uuid.uuid4().hex, "kept", build_manifest(source, CHUNK), new_key())
        with file_chunks(source, offer.manifest) as chunks:
            send(chunks, offer, channel)
    finally:
        channel.close()
    before = _files_under(tmp_path)
    status, body = _raw(receiver, "POST", f"/transfers/{uuid.uuid4().hex}", _offer_doc(source, "../../../escaped"))
    assert status == 409
    assert "not a dataset name" in body["detail"]
    status, body = _raw(receiver, "POST", "/transfers/..", _offer_doc(source, "other"))
    assert status == 409
    assert "not a transfer id" in body["detail"]
    assert _raw(receiver, "POST", "/transfers/../finish", b"")[0] == 409
    blob = seal(new_key(), "..", 0, True, b"x")
    assert _raw(receiver, "PUT", "/transfers/../chunks/0?last=1", blob)[0] == 409
    assert _raw(receiver, "POST", f"/transfers/{uuid.uuid4().hex}", b"{not json")[0] == 400
    assert _raw(receiver, "POST", f"/transfers/{uuid.uuid4().hex}", b'{"dataset": "x"}')[0] == 400
    short_key = json.loads(_offer_doc(source, "other"))
    short_key["key"] = "00"
    assert _raw(receiver, "POST", f"/transfers/{uuid.uuid4().hex}", json.dumps(short_key).encode())[0] == 400
    assert _files_under(tmp_path) == before
    assert dest.has("kept")
    assert b"".join(dest.read_plain("kept")) == source.read_bytes()
