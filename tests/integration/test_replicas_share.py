"""Front-desk replicas with homes of their own on one database serve the same network: archives
live in the database's blob store (``app/blobstore.py``), every replica is given the same ledger
and secrets keys and the database refuses one that holds others (``app/serverkeys.py``), and a
replica started later replaces neither the admin's token nor the sites' agent tokens."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, text

from suanli.agent.agent import Agent
from suanli.agent.backends.local import LocalBackend
from suanli.app.control import ControlPlane
from suanli.app.ledger import LedgerService
from suanli.app.serverkeys import KeyMismatch
from suanli.app.settings import Settings
from suanli.core.ledger import MerkleTree, sign_checkpoint
from suanli.core.spec import JobSpec
from suanli.sdk.agent import SiteClient
from suanli.store.models import BlobChunk, LedgerCheckpoint, LedgerEntry
from tests.db_support import drop_database, fresh_database
from tests.integration.conftest import start_net

NETWORK = """\
regions: [beijing]
sites:
  - {name: beijing, region: beijing, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""
DAY = 86400.0


def _workdir(tmp: Path, text_: str) -> Path:
    root = tmp / "wd"
    root.mkdir()
    (root / "main.sh").write_text('test "$TOKEN" = s3cret || exit 7\ncat data.txt\n')
    (root / "data.txt").write_text(text_)
    return root


def test_a_workdir_uploaded_through_one_replica_runs_from_another(tmp_path: Path) -> None:
    url = fresh_database()
    try:
        keys = {"secret_key": Fernet.generate_key().decode(), "ledger_key": os.urandom(32).hex()}
        with start_net(tmp_path / "a", NETWORK, database_url=url, **keys) as a:
            # A replica with keys of its own is refused: it would sign and seal apart.
            alone = ControlPlane(Settings(home=tmp_path / "alone", database_url=url))
            try:
                with pytest.raises(KeyMismatch, match=r"give every replica the same \$SUANLI_LEDGER_KEY"):
                    alone.migrate()
            finally:
                alone.close()
            # The operator gives the next one the same keys and copies the admin token; nothing else.
            (tmp_path / "b" / "home").mkdir(parents=True)
            (tmp_path / "b" / "home" / "admin.token").write_bytes(a.control.admin_token_path.read_bytes())
            with start_net(tmp_path / "b", NETWORK, database_url=url, **keys) as b:
                assert b.control.admin_token_written is None, "the network's admin token stays"
                assert not b.control.site_token_path("beijing").exists(), "the site's token was not replaced"
                token = a.control.site_token_path("beijing").read_text().strip()
                site = tmp_path / "b" / "sites" / "beijing"
                decl = a.spec.site("beijing")
                assert decl is not None
                backend = LocalBackend(site, nodes=decl.node_decls(), kill_grace_s=2.0)
                agent = Agent(SiteClient(b.url, token=token), "beijing", backend, site, agent_id="agent-b")
                agent.register()
                b.agents["beijing"] = agent

                spec = JobSpec.model_validate({"run": "sh main.sh", "secrets": {"TOKEN": "s3cret"}})
                job = a.client.submit(spec, workdir=_workdir(tmp_path, "made on replica a"))
                for home in (tmp_path / "a" / "home", tmp_path / "b" / "home"):
                    assert list((home / "blobs").iterdir()) == [], "the archive is in the database only"
                b.pump(lambda: b.state(job.id) in ("SUCCEEDED", "FAILED"))
                assert b.state(job.id) == "SUCCEEDED", "B served the workdir and opened A's sealed secret"
                assert "made on replica a" in "".join(a.client.logs(job.id))
                assert a.client.ledger_key() == b.client.ledger_key(), "one ledger key for both"
    finally:
        drop_database(url)


def test_archives_in_the_database_are_read_back_and_swept_like_files(tmp_path: Path) -> None:
    """On either database: the ``database`` store keeps the bytes in rows, nothing on disk."""
    with start_net(tmp_path, NETWORK, blob_store="database") as net:
        big = tmp_path / "big"
        big.mkdir()
        (big / "noise.bin").write_bytes(os.urandom(5 * 2**19))  # gzip keeps it 2.5 MiB: three chunks
        (big / "main.sh").write_text("true\n")
        kept = net.client.upload_workdir(big)
        found = net.control.blobs.read(kept.digest)
        assert found is not None
        assert found.chunks is not None
        assert found.size == kept.size == sum(len(c) for c in found.chunks)
        assert list(net.control.settings.blob_dir.glob("*.tar.gz")) == []
        assert net.control.sweep_blobs().files == 0, "a fresh upload is kept"
        net.clock.advance(8 * DAY)
        swept = net.control.sweep_blobs()
        assert (swept.files, swept.bytes) == (1, kept.size)
        assert net.control.blobs.read(kept.digest) is None
        with net.control.db.read() as s:
            assert s.scalars(select(BlobChunk.digest)).all() == []


def test_a_bad_ledger_key_stops_the_start_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SUANLI_LEDGER_KEY is not an Ed25519 private key") as caught:
        ControlPlane(Settings(home=tmp_path / "home", ledger_key="abc123" * 3))
    assert "abc123" not in str(caught.value)


def test_two_replicas_sealing_the_same_size_at_once_keep_one_checkpoint(tmp_path: Path) -> None:
    url = fresh_database()
    try:
        with start_net(tmp_path, NETWORK, database_url=url) as net:
            chain = net.control.chain
            with net.control.db.session() as s:
                chain.ledger.record(s, "test", {"n": 1}, net.clock.now())
            key = (net.control.settings.home / "datachain" / "keys" / "ledger-ed25519.key").read_bytes()
            other = LedgerService(key)  # the other replica's service: same key
            with net.control.db.read() as s:
                leaf = s.scalars(select(LedgerEntry.leaf_hash)).one()
            tree = MerkleTree()
            tree.append_hash(bytes.fromhex(leaf))
            cp = sign_checkpoint(key, 1, tree.root(), "t", other.origin)
            with net.control.db.engine.connect() as conn:  # the other replica's seal, not committed yet
                conn.execute(
                    text(
                        "INSERT INTO ledger_checkpoints (size, root, timestamp, key_id, signature) "
                        "VALUES (1, :root, 't', :kid, :sig)"
                    ),
                    {"root": cp.root.hex(), "kid": cp.key_id, "sig": base64.b64encode(cp.signature.raw).decode()},
                )
                result: list[object] = []
                sealing = threading.Thread(target=lambda: result.append(chain.seal()))
                sealing.start()  # reads no checkpoint, then waits on the other's row
                _until_a_lock_is_awaited(net.control.db.engine)
                conn.commit()
            sealing.join(timeout=10)
            assert result == [None], "the collision is not an error: the other replica's checkpoint stands"
            assert chain.ledger.alarm is None
            with net.control.db.read() as s:
                assert s.scalars(select(LedgerCheckpoint.size)).all() == [1]
    finally:
        drop_database(url)


def _until_a_lock_is_awaited(engine: Engine) -> None:
    deadline = time.monotonic() + 10
    with engine.connect() as conn:
        while not conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one():
            assert time.monotonic() < deadline, "the seal never waited on the other replica's row"
            conn.rollback()
            time.sleep(0.01)
