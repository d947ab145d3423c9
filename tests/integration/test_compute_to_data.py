"""Compute to data: a job that reads a dataset runs only where a copy lies and the rules allow
reading it; it waits, saying why, elsewhere; core data never leaves home; every placement on
data is on the ledger. The whole story of the data-chain issue, end to end."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from suanli.core.ledger import Checkpoint, Record, verify_log
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 4, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

GENERAL = {"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]}
CORE = {"level": "core", "sub_grade": 1, "pi_count": 0, "categories": ["marketing"]}


def read_job(name: str, dataset: str, region: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": name,
        "resources": {"cpus": 1},
        "datasets": [{"name": dataset, "mount": f"/data/{dataset}"}],
        "run": f'sha256sum "$SUANLI_DATASET_{dataset.upper()}" | cut -c1-64',
    }
    if region:
        spec["placement"] = {"regions": [region]}
    return spec


@pytest.fixture
def dnet(tmp_path: Path) -> Net:  # type: ignore[misc]
    with start_net(tmp_path, NETWORK) as net:
        net.local_agent("beijing")
        net.local_agent("singapore")
        yield net


def test_a_job_reads_data_only_where_it_may(dnet: Net) -> None:
    net = dnet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    auditor = Client(net.url, token=net.user("regulator", role="auditor"))
    eve = Client(net.url, token=net.user("eve", tenant="rival"))
    src = net.tmp / "notes.bin"
    src.write_bytes(os.urandom(3 * 2**20 + 17))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    net.client.register_dataset(
        name="notes", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=GENERAL
    )

    # At home: placed at beijing, reads the bytes the owner registered.
    home = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("at-home", "notes")})
    net.pump(lambda: net.state(home["id"]) in ("SUCCEEDED", "FAILED"))
    done = alice.job(home["id"])
    assert done.state.value == "SUCCEEDED", "".join(alice.logs(home["id"]))
    assert done.attempts[0].site == "beijing"
    assert "".join(alice.logs(home["id"])).strip() == digest

    # Abroad without a copy: it waits and says what a copy would need.
    abroad = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("abroad", "notes", "singapore")})
    for _ in range(3):
        net.cycle()
    waiting = alice.job(abroad["id"])
    assert waiting.state.value == "PENDING"
    assert "'notes' is not here" in waiting.reason
    assert "suanli data copy notes --to singapore" in waiting.reason
    explained = alice.explain(abroad["id"])
    assert any("a copy here needs standard contract" in s.text for s in explained.sites), explained

    # The owner files, the auditor approves, the copy runs: now the job runs there.
    alice.permit_export("notes", to="singapore", basis="separate_consent", pia_ref="PIA-1")
    transfer = alice.create_transfer("notes", "singapore")
    filing = alice.create_filing("notes", "singapore")
    alice.move_filing(filing["id"], "submit")
    auditor.move_filing(filing["id"], "approve", note="contract checked")
    assert alice.run_transfer(transfer["id"])["state"] == "done"
    net.pump(lambda: net.state(abroad["id"]) in ("SUCCEEDED", "FAILED"))
    ran = alice.job(abroad["id"])
    assert ran.state.value == "SUCCEEDED", "".join(alice.logs(abroad["id"]))
    assert ran.attempts[-1].site == "singapore"
    assert "".join(alice.logs(abroad["id"])).strip() == digest
    # General data with personal information is sealed at rest at both sites: nowhere in clear.
    for site in ("beijing", "singapore"):
        stored = net.control.chain.store(site).data_path("notes")
        assert stored.name == "data.sealed"
        assert src.read_bytes()[:4096] not in stored.read_bytes()

    # Another tenant cannot even name it; core data never leaves home.
    with pytest.raises(ApiError) as refused:
        eve._json("POST", "/api/v1/jobs", json={"spec": read_job("steal", "notes")})
    assert refused.value.status == 422
    assert "no dataset 'notes' of tenant 'rival'" in str(refused.value)
    src2 = net.tmp / "core.bin"
    src2.write_bytes(os.urandom(1024))
    net.client.register_dataset(name="crown", owner="bj-ai", home_site="beijing", path=str(src2), classification=CORE)
    with pytest.raises(ApiError) as core:
        alice._json("POST", "/api/v1/jobs", json={"spec": read_job("core-abroad", "crown", "singapore")})
    assert core.value.status == 422
    assert "core data" in str(core.value)
    assert "home site beijing only" in str(core.value)

    # Every step is on the ledger, and it verifies.
    entries = net.client.ledger_entries()
    placements = [e for e in entries if e["kind"] == "placement"]
    assert {p["data"].count('"site":"beijing"') + p["data"].count('"site":"singapore"') for p in placements} == {1}
    assert any(home["id"] in p["data"] for p in placements)
    assert any(abroad["id"] in p["data"] and "singapore" in p["data"] for p in placements)
    key = bytes.fromhex(net.client.ledger_key())
    records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in entries]
    checkpoints = [Checkpoint.from_dict(c) for c in net.client.ledger_checkpoints()]
    report = verify_log(records, checkpoints, key)
    assert report.ok, report.problems
    kinds = {e["kind"] for e in entries}
    assert {"dataset.registered", "decision", "filing.state", "transfer.state", "placement", "read"} <= kinds
    # Each job's read of the bytes is a movement of its own: one entry each, naming where.
    reads = [e["data"] for e in entries if e["kind"] == "read"]
    assert len(reads) == 2, reads
    assert any(home["id"] in r and '"site":"beijing"' in r for r in reads)
    assert any(abroad["id"] in r and '"site":"singapore"' in r for r in reads)
    assert all(f'"bytes":{src.stat().st_size}' in r for r in reads)
    for c in (alice, auditor, eve):
        c.close()


def test_an_agent_fetches_only_data_of_its_own_attempts(dnet: Net) -> None:
    net = dnet
    token = net.control.site_token_path("singapore").read_text().strip()
    with net.http_as(token) as agent:
        r = agent.get("/api/v1/agents/datasets/notes", params={"attempt": 1})
        assert r.status_code == 404
    with net.http_as(net.admin_token) as admin:
        assert admin.get("/api/v1/agents/datasets/notes", params={"attempt": 1}).status_code == 401


def test_the_owner_downloads_as_the_rules_allow(dnet: Net) -> None:
    net = dnet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    auditor = Client(net.url, token=net.user("regulator", role="auditor"))
    eve = Client(net.url, token=net.user("eve", tenant="rival"))
    src = net.tmp / "notes.bin"
    src.write_bytes(os.urandom(2**20 + 5))
    net.client.register_dataset(name="notes", owner="bj-ai", home_site="beijing", path=str(src), classification=GENERAL)

    got = io.BytesIO()
    assert alice.download_data("notes", got) == src.stat().st_size
    assert got.getvalue() == src.read_bytes()

    # Abroad it is an export of 200,000 people's data: held until a filing is accepted. Where the
    # downloader is comes from their user record, not from what the client says.
    with pytest.raises(ApiError) as claimed:
        alice.download_data("notes", io.BytesIO(), zone="overseas")
    assert claimed.value.status == 422
    net.client.create_user("olga", tenant="bj-ai", zone="overseas")
    alice.permit_export("notes", zone="overseas", basis="separate_consent", pia_ref="PIA-1")
    with Client(net.url, token=net.client.create_token(user="olga").token) as olga, pytest.raises(ApiError) as held:
        olga.download_data("notes", io.BytesIO())
    assert held.value.status == 403
    assert "the rules hold this download" in str(held.value)
    assert net.client.ledger_counters() == []  # nothing exported, nothing counted
    for other, status in ((eve, 404), (auditor, 403)):
        with pytest.raises(ApiError) as refused:
            other.download_data("notes", io.BytesIO())
        assert refused.value.status == status

    entries = net.client.ledger_entries()
    downloads = [e for e in entries if e["kind"] == "download"]
    assert len(downloads) == 1
    assert '"zone":"mainland"' in downloads[0]["data"]
    assert '"actor":"alice"' in downloads[0]["data"]
    decided = [e for e in entries if e["kind"] == "decision" and '"kind":"download"' in e["data"]]
    assert len(decided) == 2  # the one that went, and the one held
    for c in (alice, auditor, eve):
        c.close()
