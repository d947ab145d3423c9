"""Registering a dataset at a site by upload (issue 18, slice 3): the bytes go, sealed, through
the front desk to the site's agent (a process of its own, with its own home) and rest only in
that agent's store. A unique marker in the data is never found under the server's home (its
database included), and only in clear at the site where the grade lets it be stored in clear."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.agent.sitedata import open_store
from suanli.app.settings import Settings
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.datachain.manifest import MiB, build_manifest
from suanli.launch.network import LocalNetwork, agent_home
from suanli.sdk import ApiError, Client

NETWORK = parse_network(
    "regions: [beijing, tianjin]\n"
    "sites:\n"
    "  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 4}]}\n"
    "  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 2, memory: 4}]}\n"
    "tenants:\n"
    "  - {name: bj-ai, home_region: beijing}\n"
    "  - {name: tj-lab, home_region: tianjin}\n"
)
CHUNK = 4 * MiB


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork(Settings(home=tmp_path / "home", port=0, heartbeat_s=0.3), NETWORK)
    net.start()
    try:
        net.wait_online()
        yield net
    finally:
        net.stop()


def _marked(path: Path, marker: bytes, size: int) -> bytes:
    """Random bytes of ``size`` with ``marker`` in the middle of the second chunk."""
    data = bytearray(os.urandom(size))
    at = CHUNK + CHUNK // 2
    data[at : at + len(marker)] = marker
    path.write_bytes(bytes(data))
    return bytes(data)


def _files_holding(root: Path, marker: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and marker in p.read_bytes()]


def _user(net: LocalNetwork, name: str, tenant: str) -> str:
    with Client(net.url, token=net.admin_token) as admin:
        admin.create_user(name, tenant=tenant)
        return admin.create_token(user=name, name="test").token


def _cli(net: LocalNetwork, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUANLI_SERVER": net.url, "SUANLI_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "suanli", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_an_upload_rests_only_at_the_sites_agent(net: LocalNetwork, tmp_path: Path) -> None:
    home = tmp_path / "home"
    bj_home = agent_home(home, "beijing")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    alice = _user(net, "alice", "bj-ai")

    # PI makes it sealed at rest: the marker is in clear nowhere but the uploader's own file.
    secret_marker = b"SUANLI-MARKER-" + os.urandom(12).hex().encode()
    data = _marked(client_dir / "notes.bin", secret_marker, 2 * CHUNK + 4321)
    r = _cli(
        net,
        alice,
        "data",
        "register",
        "notes",
        "--upload",
        str(client_dir / "notes.bin"),
        "--site",
        "beijing",
        "--owner",
        "bj-ai",
        "--pi",
        "500",
        "--chunk-mib",
        "4",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    with Client(net.url, token=alice) as as_alice:
        d = as_alice.dataset("notes")
    assert d["home_site"] == "beijing"
    assert d["root"] == build_manifest(client_dir / "notes.bin", CHUNK).root
    stored = bj_home / "store" / "datasets" / "notes"
    assert (stored / "data.sealed").is_file()
    assert not (stored / "data").exists()
    assert _files_holding(home, secret_marker) == []  # sealed at the site, nowhere at the server
    assert not (home / "datachain" / "sites" / "beijing" / "datasets" / "notes").exists()
    # The site opens its own copy: the bytes are the uploader's.
    assert b"".join(open_store(bj_home).read_plain("notes")) == data

    # General data with no PI is stored in clear, at the site only.
    clear_marker = b"SUANLI-CLEAR-" + os.urandom(12).hex().encode()
    _marked(client_dir / "plain.bin", clear_marker, CHUNK + 9)
    with Client(net.url, token=alice) as as_alice:
        m = build_manifest(client_dir / "plain.bin", CHUNK)
        raw = (client_dir / "plain.bin").read_bytes()
        out = as_alice.upload_dataset(
            name="plain",
            owner="bj-ai",
            site="tianjin",
            manifest=m.model_dump(),
            read_chunk=lambda i: raw[i * CHUNK : i * CHUNK + m.chunk_len(i)],
            classification={"level": "general", "categories": ["marketing"]},
        )
    assert out["home_site"] == "tianjin"
    tj_home = agent_home(home, "tianjin")
    assert _files_holding(home, clear_marker) == [tj_home / "store" / "datasets" / "plain" / "data"]

    # A job at beijing reads it from beijing's own store, read-only, the read on the ledger.
    spec = parse_job_spec(
        'run: \'sha256sum "$SUANLI_DATASET_NOTES"; test -w "$SUANLI_DATASET_NOTES" || echo read-only; '
        'sha256sum "$SUANLI_DATASET_NOTES" > "$SUANLI_OUTPUT_DIR/digest.txt"\'\n'
        "datasets: [{name: notes, mount: /data/notes}]\nplacement: {regions: [beijing]}\n"
        "output: {dataset: notes-digest}\n"
    )
    with Client(net.url, token=alice) as as_alice:
        job = as_alice.submit(spec)
        deadline = time.monotonic() + 60
        while (state := as_alice.job(job.id).state.value) not in ("SUCCEEDED", "FAILED"):
            assert time.monotonic() < deadline, as_alice.job(job.id)
            time.sleep(0.2)
        out = "".join(as_alice.logs(job.id))
    assert state == "SUCCEEDED", out
    assert hashlib.sha256(data).hexdigest() in out
    assert "read-only" in out

    # Its output stays at beijing: in the agent's store (sealed), registered by its manifest.
    with Client(net.url, token=alice) as as_alice:
        o = as_alice.dataset("notes-digest")
        assert o["home_site"] == "beijing"
        assert o["classification"]["pi_count"] == 500  # inherited (C3)
        with (client_dir / "out.tgz").open("wb") as got:
            as_alice.download_data("notes-digest", got)  # through the relay, from beijing's agent
    assert (bj_home / "store" / "datasets" / "notes-digest" / "data.sealed").is_file()
    assert not (home / "datachain" / "sites" / "beijing" / "datasets" / "notes-digest").exists()
    with tarfile.open(client_dir / "out.tgz") as tar:
        [info] = [m for m in tar.getmembers() if m.name.endswith("digest.txt")]
        member = tar.extractfile(info)
        assert member is not None
        assert hashlib.sha256(data).hexdigest() in member.read().decode()

    # A download comes from beijing's agent through the relay, decided and recorded first.
    with Client(net.url, token=alice) as as_alice, (client_dir / "got.bin").open("wb") as got:
        assert as_alice.download_data("notes", got) == len(data)
    assert (client_dir / "got.bin").read_bytes() == data

    # On the ledger: the upload, with its site and root, after the registration.
    with Client(net.url, token=net.admin_token) as admin:
        ups = [json.loads(e["data"])["body"] for e in admin.ledger_entries(kind="upload")]
    assert [(u["dataset"], u["site"]) for u in ups] == [("notes", "beijing"), ("plain", "tianjin")]
    assert ups[0]["root"] == d["root"]
    assert ups[0]["sealed_at_rest"] is True
    assert ups[0]["by"] == "alice"
    with Client(net.url, token=net.admin_token) as admin:
        reads = [json.loads(e["data"])["body"] for e in admin.ledger_entries(kind="read")]
    assert [(r["dataset"], r["site"], r["from"], r["root"]) for r in reads] == [
        ("notes", "beijing", "site store", d["root"])
    ]
    # The job's read-only working copy is the one place the marker is in clear: at the site.
    assert _files_holding(home, secret_marker) == [bj_home / "datasets" / job.id / "notes"]
    with Client(net.url, token=net.admin_token) as admin:
        assert [e["kind"] for e in admin.ledger_entries()].count("download") == 2


def test_an_upload_is_checked_before_a_byte_moves(net: LocalNetwork, tmp_path: Path) -> None:
    alice = _user(net, "alice", "bj-ai")
    tj = _user(net, "tom", "tj-lab")
    src = tmp_path / "x.bin"
    raw = os.urandom(CHUNK + 1)
    src.write_bytes(raw)
    m = build_manifest(src, CHUNK)
    general = {"level": "general", "categories": ["marketing"]}
    common = {"name": "x", "owner": "bj-ai", "site": "beijing", "manifest": m.model_dump(), "classification": general}
    with Client(net.url, token=tj) as as_tom:  # another tenant cannot register for bj-ai
        with pytest.raises(ApiError) as refused:
            as_tom.upload_dataset(**common, read_chunk=lambda i: b"")
        assert refused.value.status == 403
    with Client(net.url, token=alice) as as_alice:
        forged = {**m.model_dump(), "root": "0" * 64}
        with pytest.raises(ApiError) as refused:
            as_alice.upload_dataset(**{**common, "manifest": forged}, read_chunk=lambda i: b"")
        assert refused.value.status == 422
        assert "Merkle root" in refused.value.detail
        not_hex = {**m.model_dump(), "chunks": ["zz"] * m.count}
        with pytest.raises(ApiError) as refused:
            as_alice.upload_dataset(**{**common, "manifest": not_hex}, read_chunk=lambda i: b"")
        assert refused.value.status == 422
        # Bytes that are not the declared chunk are refused, and nothing is registered.
        with pytest.raises(ApiError) as refused:
            as_alice.upload_dataset(**common, read_chunk=lambda i: os.urandom(m.chunk_len(i)), wait_s=20)
        assert refused.value.status == 422
        assert "does not match the manifest" in refused.value.detail
        with pytest.raises(ApiError) as missing:
            as_alice.dataset("x")
        assert missing.value.status == 404


def _upload(client: Client, name: str, site: str, path: Path, classification: dict[str, object]) -> dict[str, object]:
    m = build_manifest(path, CHUNK)
    with path.open("rb") as f:

        def read_chunk(i: int) -> bytes:
            f.seek(i * CHUNK)
            return f.read(m.chunk_len(i))

        return client.upload_dataset(
            name=name,
            owner="bj-ai",
            site=site,
            manifest=m.model_dump(),
            read_chunk=read_chunk,
            classification=classification,
        )


def test_a_copy_goes_from_agent_to_agent_and_resumes_after_the_destination_restarts(
    net: LocalNetwork, tmp_path: Path
) -> None:
    """The transfer runner copies nothing itself: beijing's agent seals and pushes, tianjin's
    pulls, checks and stores. Tianjin's agent is frozen mid-copy (the relay fills and the source
    waits: back-pressure), killed, and started again: the copy resumes and completes."""
    home = tmp_path / "home"
    alice = _user(net, "alice", "bj-ai")
    marker = b"SUANLI-COPY-" + os.urandom(12).hex().encode()
    src = tmp_path / "big.bin"
    data = _marked(src, marker, 20 * CHUNK + 17)
    with Client(net.url, token=alice) as as_alice:
        _upload(as_alice, "big", "beijing", src, {"level": "general", "pi_count": 300, "categories": ["marketing"]})
        tid = str(as_alice.create_transfer("big", "tianjin")["id"])
        as_alice.run_transfer(tid, wait=False)
        assert net.control is not None
        relay = net.control.relay
        deadline = time.monotonic() + 60
        while relay.relayed(tid) == 0:
            assert time.monotonic() < deadline, as_alice.transfer(tid)
            time.sleep(0.005)
        tianjin = next(a for a in net.agents if a.site == "tianjin")
        os.kill(tianjin.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 30
        while relay.buffered() < relay.capacity:  # the source fills the relay, then waits
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert relay.high_water == relay.capacity
        tianjin.proc.kill()
        tianjin.proc.wait()
        net._start_agent(next(s for s in NETWORK.sites if s.name == "tianjin"))
        t = as_alice.wait_transfer(tid, timeout=120)
        assert t["state"] == "done", t
        assert "tianjin" in as_alice.dataset("big")["replicas"]
        # A job at tianjin reads the replica from tianjin's own store.
        spec = parse_job_spec(
            "run: 'sha256sum \"$SUANLI_DATASET_BIG\"'\n"
            "datasets: [{name: big, mount: /data/big}]\nplacement: {regions: [tianjin]}\n"
        )
        job = as_alice.submit(spec)
        deadline = time.monotonic() + 60
        while (state := as_alice.job(job.id).state.value) not in ("SUCCEEDED", "FAILED"):
            assert time.monotonic() < deadline, as_alice.job(job.id)
            time.sleep(0.2)
        assert state == "SUCCEEDED", "".join(as_alice.logs(job.id))
        assert hashlib.sha256(data).hexdigest() in "".join(as_alice.logs(job.id))
    assert relay.buffered() == 0
    tj_home = agent_home(home, "tianjin")
    assert b"".join(open_store(tj_home).read_plain("big")) == data
    assert (tj_home / "store" / "datasets" / "big" / "data.sealed").is_file()
    # Sealed at both sites' stores, nothing at the server: in clear only in the job's read-only copy.
    assert _files_holding(home, marker) == [tj_home / "datasets" / job.id / "big"]
    with Client(net.url, token=net.admin_token) as admin:
        states = [json.loads(e["data"])["body"] for e in admin.ledger_entries(kind="transfer.state")]
    done = [s for s in states if s["state"] == "done"]
    assert [(s["transfer"], s["via"]) for s in done] == [(tid, "agents, through the relay")]
    with Client(net.url, token=net.admin_token) as admin:
        reads = [json.loads(e["data"])["body"] for e in admin.ledger_entries(kind="read")]
    assert [(r["dataset"], r["site"], r["from"]) for r in reads] == [("big", "tianjin", "site store")]


def test_a_file_on_the_sites_disk_is_registered_where_it_lies(net: LocalNetwork, tmp_path: Path) -> None:
    """`--local-path`, run at the site: the file goes into the agent's store and only its
    manifest reaches the front desk, which takes the site's token as proof it is there."""
    home = tmp_path / "home"
    bj_home = agent_home(home, "beijing")
    alice = _user(net, "alice", "bj-ai")
    marker = b"SUANLI-LOCAL-" + os.urandom(12).hex().encode()
    src = tmp_path / "site-disk" / "local.bin"
    src.parent.mkdir()
    data = _marked(src, marker, 2 * CHUNK + 5)
    args = ["data", "register", "local", "--local-path", str(src), "--site", "beijing", "--owner", "bj-ai"]
    args += ["--pi", "10", "--chunk-mib", "4", "--json"]
    # Without the agent's home (its store, its token), nothing happens.
    refused = _cli(net, alice, *args)
    assert refused.returncode != 0
    assert "--agent-home" in refused.stderr
    # Another site's home: the token is not beijing's (401), and its store is left as it was.
    tj_home = agent_home(home, "tianjin")
    refused = _cli(net, alice, *args, "--agent-home", str(tj_home))
    assert refused.returncode != 0
    assert "not valid for site 'beijing'" in refused.stderr
    assert not (tj_home / "store" / "datasets" / "local").exists()
    r = _cli(net, alice, *args, "--agent-home", str(bj_home))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["home_site"], d["root"]) == ("beijing", build_manifest(src, CHUNK).root)
    assert b"".join(open_store(bj_home).read_plain("local")) == data
    assert (bj_home / "store" / "datasets" / "local" / "data.sealed").is_file()
    assert _files_holding(home, marker) == []  # sealed at the site; nothing at the server
    with Client(net.url, token=net.admin_token) as admin:
        [entry] = [json.loads(e["data"])["body"] for e in admin.ledger_entries(kind="local")]
    assert (entry["dataset"], entry["site"], entry["by"]) == ("local", "beijing", "alice")
    assert entry["sealed_at_rest"] is True
