"""L1 by every path at once: core data never leaves its home site — not by a copy, the scheduler's
staging, a download (at home or abroad), a job at another site, a derived dataset registered
elsewhere, nor by a member grading it down first."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from suanli.core.ledger import Checkpoint, Record, verify_log
from suanli.sdk import ApiError, Client
from tests.integration.conftest import start_net

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 4, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

CORE = {"level": "core", "pi_count": 0, "categories": ["grid"]}


def reader(name: str, regions: list[str] | None = None, output: str | None = None) -> dict[str, object]:
    run = 'sha256sum "$SUANLI_DATASET_CROWN" | cut -c1-64'
    if output:
        run = f'{run} > "$SUANLI_OUTPUT_DIR/sum.txt" && cat "$SUANLI_OUTPUT_DIR/sum.txt"'
    spec: dict[str, object] = {
        "name": name,
        "resources": {"cpus": 2},
        "datasets": [{"name": "crown", "mount": "/data/crown"}],
        "run": run,
    }
    if regions:
        spec["placement"] = {"regions": regions}
    if output:
        spec["output"] = {"dataset": output}
    return spec


def stores_holding(home: Path, name: str) -> list[str]:
    sites = home / "datachain" / "sites"
    return sorted(p.name for p in sites.iterdir() if (p / "datasets" / name).exists()) if sites.is_dir() else []


def test_core_data_never_leaves_its_site_by_any_path(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "tianjin", "singapore"):
            net.local_agent(site)
        home = tmp_path / "home"
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        auditor = Client(net.url, token=net.user("regulator", role="auditor"))
        net.client.create_user("olga", tenant="bj-ai", zone="overseas")
        olga = Client(net.url, token=net.client.create_token(user="olga").token)
        src = tmp_path / "crown.bin"
        src.write_bytes(os.urandom(2 * 2**20 + 7))
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        net.client.register_dataset(
            name="crown", owner="bj-ai", home_site="beijing", path=str(src), classification=CORE
        )

        # 0. Grading it down first does not help: the request waits for an auditor, the grade stays core.
        lowered = alice.grade_dataset("crown", {**CORE, "level": "general"})
        assert lowered["applied"] is False
        assert alice.dataset("crown")["classification"]["level"] == "core"

        # 1. A copy, to a site in China or abroad, is denied and never runs (even with a filing's help).
        for site in ("tianjin", "singapore"):
            t = alice.create_transfer("crown", site)
            assert t["state"] == "denied", t
            assert "L1" in t["decision"]["rule_ids"]
            with pytest.raises(ApiError) as denied:
                alice.run_transfer(t["id"])
            assert denied.value.status == 403
            with pytest.raises(ApiError) as no_filing:
                alice.create_filing("crown", site)
            assert no_filing.value.status == 422

        # 2. A download is denied at home and abroad.
        for who in (alice, olga):
            with pytest.raises(ApiError) as download:
                who.download_data("crown", io.BytesIO())
            assert download.value.status == 403
            assert "core data" in str(download.value)
        with pytest.raises(ApiError) as no_download_filing:
            alice.create_filing("crown", zone="overseas")
        assert no_download_filing.value.status == 422

        # 3. A job pinned to another site is refused at submit.
        for region in ("tianjin", "singapore"):
            with pytest.raises(ApiError) as elsewhere:
                alice._json("POST", "/api/v1/jobs", json={"spec": reader(f"at-{region}", [region])})
            assert elsewhere.value.status == 422
            assert "home site beijing only" in str(elsewhere.value)

        # 4. Staging: beijing is busy and tianjin is free, yet the scheduler copies nothing.
        busy = alice._json(
            "POST",
            "/api/v1/jobs",
            json={"spec": {"name": "busy", "resources": {"cpus": 2}, "run": "sleep 60", "time_limit": 3600}},
        )
        net.pump(lambda: net.state(busy["id"]) == "RUNNING")
        job = alice._json("POST", "/api/v1/jobs", json={"spec": reader("waits", output="crown-sum")})
        for _ in range(5):
            net.cycle()
        waiting = alice.job(job["id"])
        assert waiting.state.value == "PENDING"
        assert alice.transfers("crown") != []  # only the two denied above
        assert all(t["state"] == "denied" for t in alice.transfers("crown"))
        explain = alice._json("GET", f"/api/v1/jobs/{job['id']}/explain")
        assert "core data" in json.dumps(explain)

        # 5. Once home frees, the job runs at home; its derived output is registered at home, core.
        alice.cancel(busy["id"])
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        done = alice.job(job["id"])
        assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
        assert done.attempts[-1].site == "beijing"
        assert "".join(alice.logs(job["id"])).strip() == digest
        out = alice.dataset("crown-sum")
        assert (out["home_site"], out["classification"]["level"]) == ("beijing", "core")
        assert alice.create_transfer("crown-sum", "tianjin")["state"] == "denied"

        # 6. A derived dataset cannot be registered at another site either.
        other = tmp_path / "derived.bin"
        other.write_bytes(b"derived")
        for site in ("tianjin", "singapore"):
            with pytest.raises(ApiError) as derived:
                net.client.register_dataset(
                    name=f"crown-copy-{site}", owner="bj-ai", home_site=site, path=str(other), derived_from=["crown"]
                )
            assert derived.value.status == 403
            assert "never leaves its home site beijing" in str(derived.value)

        # Nothing of it lies anywhere but beijing; nothing was exported; the ledger verifies.
        assert stores_holding(home, "crown") == ["beijing"]
        assert stores_holding(home, "crown-sum") == ["beijing"]
        assert [d["name"] for d in net.client.datasets()] == ["crown", "crown-sum"]
        assert net.client.ledger_counters() == []
        entries = net.client.ledger_entries()
        decisions = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "decision"]
        assert len(decisions) == 5  # three copies asked, two downloads
        assert all(d["route"] == "deny" for d in decisions)
        key = bytes.fromhex(net.client.ledger_key())
        records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in entries]
        checkpoints = [Checkpoint.from_dict(c) for c in net.client.ledger_checkpoints()]
        report = verify_log(records, checkpoints, key)
        assert report.ok, report.problems
        for c in (alice, auditor, olga):
            c.close()
