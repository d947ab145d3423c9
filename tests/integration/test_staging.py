"""Compute to data, the moving half: the scheduler copies a waiting job's dataset to a site where
the job can start sooner, only where the rules let the copy run now, and says so meanwhile."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from suanli.app import transfers as transfer_runner
from suanli.core.ledger import Checkpoint, Record, verify_log
from suanli.sdk import Client
from tests.integration.conftest import Net, dashboard, start_net

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 4, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

GENERAL = {"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]}


def read_job(name: str, regions: list[str] | None = None, cpus: int = 2) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": name,
        "resources": {"cpus": cpus},
        "datasets": [{"name": "notes", "mount": "/data/notes"}],
        "run": 'sha256sum "$SUANLI_DATASET_NOTES" | cut -c1-64',
    }
    if regions:
        spec["placement"] = {"regions": regions}
    return spec


def register(net: Net) -> str:
    src = net.tmp / "notes.bin"
    src.write_bytes(os.urandom(5 * 2**20 + 3))
    net.client.register_dataset(
        name="notes", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=GENERAL
    )
    return hashlib.sha256(src.read_bytes()).hexdigest()


def occupy_beijing(net: Net, alice: Client) -> dict[str, str]:
    """Keep beijing, where the data lies, busy for an hour."""
    busy: dict[str, str] = alice._json(
        "POST",
        "/api/v1/jobs",
        json={"spec": {"name": "busy", "resources": {"cpus": 2}, "run": "sleep 60", "time_limit": 3600}},
    )
    net.pump(lambda: net.state(busy["id"]) == "RUNNING")
    return busy


def test_a_waiting_job_gets_its_data_copied_where_it_starts_sooner(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "tianjin", "singapore"):
            net.local_agent(site)
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        digest = register(net)

        # beijing, where the data lies, is busy for an hour.
        busy = occupy_beijing(net, alice)
        assert alice.job(busy["id"]).attempts[0].site == "beijing"

        # The job that reads it could start at tianjin now, once a copy lands: the scheduler copies.
        job = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("reader")})
        net.cycle()
        waiting = alice.job(job["id"])
        if waiting.state.value == "PENDING":
            assert "copying 'notes' (5.0 MiB" in waiting.reason, waiting.reason
            assert "to tianjin for it" in waiting.reason
            assert "no site holding the data has room now" in waiting.reason
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        done = alice.job(job["id"])
        assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
        assert done.attempts[-1].site == "tianjin"
        assert "".join(alice.logs(job["id"])).strip() == digest

        transfers = alice.transfers("notes")
        assert [(t["dest_site"], t["state"], t["for_job"]) for t in transfers] == [("tianjin", "done", job["id"])]
        assert transfers[0]["started_at"] is not None

        # The dashboard's data page names the job each copy was made for.
        web = dashboard(net)
        page = web.get("/data")
        web.close()
        assert page.status_code == 200
        assert f'href="/jobs/{job["id"]}"' in page.text

        # A second job at tianjin reads the copy: nothing more is copied.
        again = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("again", ["tianjin"])})
        net.pump(lambda: net.state(again["id"]) in ("SUCCEEDED", "FAILED"))
        assert alice.job(again["id"]).state.value == "SUCCEEDED"
        assert len(alice.transfers("notes")) == 1

        # On the record: the decision names the scheduler and the job; the log verifies.
        entries = net.client.ledger_entries()
        decisions = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "decision"]
        staged = [d for d in decisions if d.get("for_job") == job["id"]]
        assert len(staged) == 1
        assert staged[0]["destination"] == "tianjin"
        assert staged[0]["actor"] == f"scheduler, for job {job['id']} of bj-ai"
        assert any(e["kind"] == "placement" and job["id"] in e["data"] and "tianjin" in e["data"] for e in entries)
        key = bytes.fromhex(net.client.ledger_key())
        records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in entries]
        checkpoints = [Checkpoint.from_dict(c) for c in net.client.ledger_checkpoints()]
        report = verify_log(records, checkpoints, key)
        assert report.ok, report.problems
        alice.cancel(busy["id"])
        alice.close()


def test_nothing_is_copied_without_the_filing_the_route_needs(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "singapore"):
            net.local_agent(site)
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        auditor = Client(net.url, token=net.user("regulator", role="auditor"))
        digest = register(net)

        job = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("abroad", ["singapore"])})
        for _ in range(3):
            net.cycle()
        waiting = alice.job(job["id"])
        assert waiting.state.value == "PENDING"
        assert "a copy here needs standard contract" in waiting.reason, waiting.reason
        assert alice.transfers("notes") == []

        # Once an auditor accepts the filing, the copy still waits for the owner's standing
        # permission; given it, the copy starts by itself and the job runs there.
        filing = alice.create_filing("notes", "singapore")
        alice.move_filing(filing["id"], "submit")
        auditor.move_filing(filing["id"], "approve", note="contract checked")
        for _ in range(3):
            net.cycle()
        assert alice.transfers("notes") == []
        assert "its owner gave no standing permission" in alice.job(job["id"]).reason
        alice.permit_export("notes", to="singapore", basis="separate_consent", pia_ref="PIA-3", staging=True)
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        done = alice.job(job["id"])
        assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
        assert done.attempts[-1].site == "singapore"
        assert "".join(alice.logs(job["id"])).strip() == digest
        [t] = alice.transfers("notes")
        assert (t["state"], t["for_job"], t["filing_id"]) == ("done", job["id"], filing["id"])
        alice.close()
        auditor.close()


def test_a_job_that_can_start_where_its_data_lies_is_not_copied_for(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "tianjin"):
            net.local_agent(site)
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        register(net)
        job = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("home", cpus=1)})
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        assert alice.job(job["id"]).attempts[-1].site == "beijing"
        assert alice.transfers("notes") == []
        alice.close()


def test_copies_can_be_left_to_users(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK + "scheduling: {stage_data: false}\n") as net:
        net.local_agent("tianjin")
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        register(net)
        job = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("far", cpus=3)})
        for _ in range(3):
            net.cycle()
        waiting = alice.job(job["id"])
        assert waiting.state.value == "PENDING"
        assert "suanli data copy notes --to tianjin" in waiting.reason
        assert alice.transfers("notes") == []
        alice.close()


def test_a_copy_that_breaks_off_is_resumed_and_the_job_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer_runner, "RETRY_AFTER_S", 0.0)
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "tianjin"):
            net.local_agent(site)
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        digest = register(net)
        busy = occupy_beijing(net, alice)

        # The source copy is unreadable for a while: the copy breaks off, and the job says so.
        home = net.control.chain.store("beijing").dataset_dir("notes")
        aside = home.with_name("notes.aside")
        home.rename(aside)
        job = alice._json("POST", "/api/v1/jobs", json={"spec": read_job("reader")})
        net.pump(lambda: any(t["state"] == "failed" for t in alice.transfers("notes")))
        net.pump(lambda: "broke off" in alice.job(job["id"]).reason)
        assert alice.job(job["id"]).state.value == "PENDING"

        # Readable again: the scheduler resumes the same transfer, and the job runs on the copy.
        aside.rename(home)
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        done = alice.job(job["id"])
        assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
        assert done.attempts[-1].site == "tianjin"
        assert "".join(alice.logs(job["id"])).strip() == digest
        [t] = alice.transfers("notes")
        assert t["state"] == "done"
        alice.cancel(busy["id"])
        alice.close()
