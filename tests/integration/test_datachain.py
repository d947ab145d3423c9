"""The data chain end to end over HTTP: register, check, file, approve, copy, read, verify the ledger."""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner, Result

from suanli.app import movements
from suanli.app.chain import Chain
from suanli.app.control import ControlPlane, record_placements
from suanli.app.settings import Settings
from suanli.cli import app
from suanli.core.clock import ManualClock
from suanli.core.ledger import Checkpoint, Record, verify_inclusion, verify_log
from suanli.core.network import parse_network
from suanli.datachain.manifest import MiB
from suanli.datachain.site_store import LocalChannel
from suanli.sdk import ApiError, Client
from suanli.server.app import create_app
from suanli.store.models import LedgerEntry

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 8, memory: 32}]}
  - {name: tianjin-bonded, region: tianjin, zone: bonded, nodes: [{name: tjb-01, cpus: 8, memory: 32}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 8, memory: 32}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""


@dataclass
class DataNet:
    control: ControlPlane
    client: Client
    tmp: Path
    app: FastAPI
    #: A client signed in as an auditor (the admin's ``client`` may not decide filings).
    auditor: Client

    @property
    def chain(self) -> Chain:
        return self.control.chain


@pytest.fixture
def dnet(tmp_path: Path) -> Iterator[DataNet]:
    control = ControlPlane(Settings(home=tmp_path / "home"), clock=ManualClock())
    control.migrate()
    control.apply_network(parse_network(NETWORK))
    app = create_app(control)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    client = Client(url, token=control.admin_token_path.read_text().strip())
    made = client.create_user("regulator", role="auditor")
    assert made.role == "auditor"
    auditor = Client(url, token=client.create_token(user="regulator").token)
    try:
        yield DataNet(control, client, tmp_path, app, auditor)
    finally:
        auditor.close()
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
        control.close()


def make_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def ledger_report(c: Client, trusted: Checkpoint | None = None):  # type: ignore[no-untyped-def]
    key = bytes.fromhex(c.ledger_key())
    entries = c.ledger_entries()
    cps = [Checkpoint.from_dict(x) for x in c.ledger_checkpoints()]
    records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in entries]
    return verify_log(records, cps, key, trusted=trusted), entries


def test_owner_to_overseas_with_filing_and_verified_ledger(dnet: DataNet) -> None:
    c = dnet.client
    src = make_file(dnet.tmp / "notes.bin", 9 * MiB + 123)
    ds = c.register_dataset(
        name="notes",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        chunk_mib=4,
        classification={"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]},
    )
    assert ds["chunks"] == 3
    assert ds["classification"]["graded_by"] == "admin"

    check = c.check_movement("notes", to="singapore")
    assert check["route"] == "standard_contract"
    assert "X4" in check["rule_ids"]
    assert not check["may_move_now"]

    # A PI export needs the owner's word first: the PIPL basis and the PI impact assessment.
    with pytest.raises(ApiError) as no_word:
        c.create_transfer("notes", "singapore")
    assert no_word.value.status == 422
    c.permit_export("notes", to="singapore", basis="separate_consent", pia_ref="PIA-2026-001")
    t = c.create_transfer("notes", "singapore")
    assert t["state"] == "held"
    assert "waiting for a data filing" in t["reason"]
    with pytest.raises(ApiError) as held:
        c.run_transfer(t["id"])
    assert held.value.status == 403
    assert not (dnet.tmp / "home/datachain/sites/singapore/datasets/notes").exists()

    f = c.create_filing("notes", "singapore")
    assert f["state"] == "draft"
    package = c.filing_package(f["id"])
    assert "impact assessment" in package
    assert "200,000" in package
    c.move_filing(f["id"], "submit")
    assert "(submitted)" in c.transfer(t["id"])["reason"] or c.transfer(t["id"])["state"] == "held"
    # Approving needs the auditor role: not even the admin may.
    with pytest.raises(ApiError) as forbidden:
        c._json("POST", f"/api/v1/filings/{f['id']}/approve")
    assert forbidden.value.status == 403
    approved = dnet.auditor.move_filing(f["id"], "approve", note="ok")
    assert approved["state"] == "accepted"
    assert approved["released_transfers"] == [t["id"]]

    done = c.run_transfer(t["id"])
    assert done["state"] == "done", done
    # General data with personal information is sealed at rest, at the copy too.
    copied = dnet.tmp / "home/datachain/sites/singapore/datasets/notes/data.sealed"
    assert src.read_bytes()[:4096] not in copied.read_bytes()
    assert b"".join(dnet.chain.store("singapore").read_plain("notes")) == src.read_bytes()
    assert "singapore" in c.dataset("notes")["replicas"]

    counters = c.ledger_counters()
    assert counters == [{"exporter": "bj-ai", "year": 2026, "pi": 200_000, "spi": 0}]

    chain: Chain = dnet.chain
    with chain.db.session() as s:
        d = movements.readable_at(s, chain, "notes", "singapore", chain.clock.now())
        assert d.moves_now
        record_placements(s, chain, [("job-1", "singapore")], {"job-1": ("notes",)}, chain.clock.now(), chain.rules)
    chain.seal()

    report, entries = ledger_report(c)
    assert report.ok, report.problems
    kinds = [e["kind"] for e in entries]
    for k in ("dataset.registered", "dataset.graded", "decision", "filing.state", "transfer.state", "placement"):
        assert k in kinds
    assert "audit.access" in kinds
    assert "notes.bin" not in "".join(e["data"] for e in entries)

    proof = c.inclusion_proof(3)
    assert verify_inclusion(
        3,
        proof["size"],
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(h) for h in proof["proof"]],
        bytes.fromhex(proof["root"]),
    )

    # Tamper with one stored entry: verification fails and names it.
    with chain.db.session() as s:
        row = s.scalars(select(LedgerEntry).where(LedgerEntry.index == 5)).one()
        row.data = row.data.replace('"bj-ai"', '"someone"', 1) if '"bj-ai"' in row.data else row.data + " "
    bad, _ = ledger_report(c)
    assert not bad.ok
    assert bad.first_bad == 5


def test_important_data_is_sealed_at_rest_and_core_never_moves(dnet: DataNet) -> None:
    c = dnet.client
    src = make_file(dnet.tmp / "plans.bin", 5 * MiB)
    c.register_dataset(
        name="plans",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        chunk_mib=4,
        classification={"level": "important"},
    )
    home = dnet.tmp / "home/datachain/sites/beijing/datasets/plans"
    assert (home / "data.sealed").exists()
    assert src.read_bytes()[:4096] not in (home / "data.sealed").read_bytes()
    # Domestic copy to the bonded zone: allowed, and sealed at rest there too.
    t = c.create_transfer("plans", "tianjin-bonded")
    assert t["state"] == "ready"
    assert c.run_transfer(t["id"])["state"] == "done"
    assert (dnet.tmp / "home/datachain/sites/tianjin-bonded/datasets/plans/data.sealed").exists()
    keys = dnet.tmp / "home/datachain/keys"
    assert not any(p.suffix == ".key" for p in (dnet.tmp / "home/datachain/sites").rglob("*"))
    assert any(keys.iterdir())

    core_src = make_file(dnet.tmp / "grid.bin", 4 * MiB)
    c.register_dataset(
        name="grid",
        owner="bj-ai",
        home_site="beijing",
        path=str(core_src),
        chunk_mib=4,
        classification={"level": "core"},
    )
    for kind, where in (
        ("transfer", {"to": "tianjin-bonded"}),
        ("job_read", {"to": "singapore"}),
        ("download", {"zone": "mainland"}),
        ("overseas_access", {"zone": "overseas"}),
    ):
        d = c.check_movement("grid", kind=kind, **where)
        assert d["route"] == "deny", (kind, d)
        assert "L1" in d["rule_ids"]
    t = c.create_transfer("grid", "tianjin-bonded")
    assert t["state"] == "denied"
    with pytest.raises(ApiError) as denied:
        c.run_transfer(t["id"])
    assert denied.value.status == 403
    assert not (dnet.tmp / "home/datachain/sites/tianjin-bonded/datasets/grid").exists()
    report, _ = ledger_report(c)
    assert report.ok, report.problems


def test_regrade_is_versioned_and_derived_data_inherits(dnet: DataNet) -> None:
    c = dnet.client
    a = make_file(dnet.tmp / "a.bin", 4 * MiB)
    c.register_dataset(
        name="a",
        owner="bj-ai",
        home_site="beijing",
        path=str(a),
        chunk_mib=4,
        classification={"level": "important", "pi_count": 5},
    )
    c.register_dataset(
        name="b",
        owner="bj-ai",
        home_site="beijing",
        path=str(a),
        chunk_mib=4,
        classification={"level": "general", "spi_count": 3},
    )
    out = make_file(dnet.tmp / "out.bin", 4 * MiB)
    d = c.register_dataset(
        name="ab-out",
        owner="bj-ai",
        home_site="beijing",
        path=str(out),
        chunk_mib=4,
        derived_from=["a", "b"],
        graded_by="job-7",
    )
    assert d["classification"]["level"] == "important"
    assert d["classification"]["inherited"] is True
    assert (d["classification"]["pi_count"], d["classification"]["spi_count"]) == (5, 3)
    # Keeping the inherited level (and counts) applies at once; lowering it waits for an auditor.
    kept = {"level": "important", "sub_grade": 1, "pi_count": 5, "spi_count": 3}
    g = c.grade_dataset("ab-out", kept)["dataset"]
    assert g["grade_version"] == 2
    assert g["classification"]["inherited"] is False
    assert g["classification"]["graded_by"] == "admin"
    held = c.grade_dataset("ab-out", {**kept, "level": "general"})
    assert held["applied"] is False
    assert [x["version"] for x in c.dataset("ab-out")["grades"]] == [1, 2]


def test_interrupted_copy_resumes_through_the_service(dnet: DataNet) -> None:
    c = dnet.client
    src = make_file(dnet.tmp / "logs.bin", 13 * MiB)
    c.register_dataset(
        name="logs", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification={"level": "general"}
    )
    t = c.create_transfer("logs", "tianjin-bonded")
    assert t["state"] == "ready"
    chain: Chain = dnet.chain

    class Breaking(LocalChannel):
        puts = 0

        def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
            if Breaking.puts >= 2:
                raise ConnectionError("link lost")
            Breaking.puts += 1
            super().put(transfer_id, index, last, blob)

    with pytest.raises(ConnectionError):
        movements.run_transfer(chain, t["id"], channel_factory=Breaking)
    failed = c.transfer(t["id"])
    assert failed["state"] == "failed"
    assert "resume" in failed["reason"]
    assert c.run_transfer(t["id"])["state"] == "done"
    assert (dnet.tmp / "home/datachain/sites/tianjin-bonded/datasets/logs/data").read_bytes() == src.read_bytes()
    done = [e for e in c.ledger_entries(kind="transfer.state") if '"done"' in e["data"]]
    assert '"chunks_skipped":2' in done[-1]["data"]


def test_the_cli_walks_the_whole_story(dnet: DataNet, tmp_path: Path) -> None:
    runner = CliRunner()
    url = dnet.client.server

    admin = dnet.control.admin_token_path.read_text().strip()
    auditor = dnet.client.create_token(user="regulator").token

    def cli(*args: str, token: str = admin) -> Result:
        return runner.invoke(app, ["--server", url, "--token", token, *args])

    src = make_file(tmp_path / "clinic.bin", 6 * MiB)
    r = cli(
        "data",
        "register",
        "clinic",
        "--path",
        str(src),
        "--site",
        "beijing",
        "--owner",
        "bj-ai",
        "--pi",
        "150000",
        "--spi",
        "20",
        "--category",
        "public_health",
        "--chunk-mib",
        "4",
    )
    assert r.exit_code == 0, r.output
    r = cli("data", "check", "clinic", "--to", "singapore")
    assert r.exit_code == 0, r.output
    assert "needs an accepted standard-contract filing" in r.output
    assert "X4" in r.output
    r = cli("data", "permit", "clinic", "--to", "singapore", "--basis", "separate_consent", "--pia", "PIA-2026-002")
    assert r.exit_code == 0, r.output
    assert "PI impact assessment PIA-2026-002" in r.output
    r = cli("data", "copy", "clinic", "--to", "singapore")
    assert r.exit_code == 1
    assert "held" in r.output
    assert "suanli filing create clinic --to singapore" in r.output
    pkg = tmp_path / "pkg.html"
    r = cli("filing", "create", "clinic", "--to", "singapore", "--package", str(pkg))
    assert r.exit_code == 0, r.output
    filing_id = r.output.split()[0]
    assert "impact assessment" in pkg.read_text()
    pdf = tmp_path / "pkg.pdf"
    r = cli("filing", "package", filing_id, "--pdf", str(pdf))
    assert r.exit_code == 0, r.output
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert cli("filing", "submit", filing_id).exit_code == 0
    r = cli("filing", "approve", filing_id, "--note", "checked", token=auditor)
    assert r.exit_code == 0, r.output
    assert "accepted" in r.output
    hint = shlex.split(r.output.split("may now run: ", 1)[1].splitlines()[0])  # runnable as printed
    assert hint[:2] == ["suanli", "data"]
    r = cli(*hint[1:])
    assert r.exit_code == 0, r.output
    assert "done" in r.output
    r = cli("filing", "ls")
    assert r.stdout.splitlines()[0].split() == ["ID", "DATASET", "TO", "ROUTE", "STATE", "EXPIRES"]
    assert filing_id in r.output
    r = cli("data", "ls")  # every table has a header (issue 22, C10)
    assert r.stdout.splitlines()[0].split() == ["NAME", "OWNER", "HOME", "LEVEL", "PI", "SPI", "BYTES", "REPLICAS"]
    assert any(line.split()[:3] == ["clinic", "bj-ai", "beijing"] for line in r.stdout.splitlines())
    r = cli("data", "transfers")
    assert r.stdout.splitlines()[0].split() == ["ID", "DATASET", "FROM", "TO", "STATE", "REASON"]
    assert any("clinic" in line and "singapore" in line for line in r.stdout.splitlines()[2:])
    r = cli("ledger", "verify")
    assert r.exit_code == 0, r.output
    assert "filing.state" in r.output
    assert "transfer.state" in r.output
    export = tmp_path / "log.json"
    assert cli("ledger", "export", str(export)).exit_code == 0
    doc = json.loads(export.read_text())
    assert cli("ledger", "verify", "--file", str(export)).exit_code == 0
    doc["entries"][2], doc["entries"][4] = doc["entries"][4], doc["entries"][2]
    export.write_text(json.dumps(doc))
    r = cli("ledger", "verify", "--file", str(export))
    assert r.exit_code == 1
    assert "entry 2" in r.output
    r = cli("ledger", "counters")
    assert "150,000" in r.output
    r = cli("ledger", "consistency", str(dnet.client.ledger_checkpoints()[0]["size"]))
    assert r.exit_code == 0, r.output
    assert "consistent" in r.output
    r = cli("ledger", "entries", "--kind", "decision")
    assert r.exit_code == 0, r.output
    assert "route=standard_contract" in r.output
    r = cli("data", "check", "clinic", "--kind", "overseas_access", "--zone", "overseas")
    assert "X7" in r.output


def test_registering_a_taken_name_changes_nothing(dnet: DataNet) -> None:
    c = dnet.client
    first = make_file(dnet.tmp / "first.bin", 4 * MiB)
    c.register_dataset(
        name="x", owner="bj-ai", home_site="beijing", path=str(first), chunk_mib=4, classification={"level": "general"}
    )
    other = make_file(dnet.tmp / "other.bin", 4 * MiB)
    with pytest.raises(ApiError) as taken:
        c.register_dataset(
            name="x",
            owner="bj-ai",
            home_site="beijing",
            path=str(other),
            chunk_mib=4,
            classification={"level": "general"},
        )
    assert taken.value.status == 409
    assert (dnet.tmp / "home/datachain/sites/beijing/datasets/x/data").read_bytes() == first.read_bytes()
    with pytest.raises(ApiError) as bad_chunk:
        c.register_dataset(
            name="y",
            owner="bj-ai",
            home_site="beijing",
            path=str(other),
            chunk_mib=2,
            classification={"level": "general"},
        )
    assert "4–16 MiB" in bad_chunk.value.detail


def test_a_check_is_a_dry_run_that_records_nothing(dnet: DataNet) -> None:
    """Issue 16, item 9: ``suanli data check`` asked again and again must not fill the permanent ledger."""
    c = dnet.client
    c.register_dataset(
        name="asked",
        owner="bj-ai",
        home_site="beijing",
        path=str(make_file(dnet.tmp / "asked.bin", 1024)),
        classification={"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]},
    )
    before = c.ledger_entries()
    checkpoints = c.ledger_checkpoints()
    for kind, where in (("transfer", {"to": "singapore"}), ("overseas_access", {"zone": "overseas"})):
        answer = c.check_movement("asked", kind=kind, **where)
        assert answer["route"]
    result = CliRunner().invoke(
        app,
        [
            "--server",
            c.server,
            "--token",
            dnet.control.admin_token_path.read_text().strip(),
            "data",
            "check",
            "asked",
            "--to",
            "tianjin-bonded",
        ],
    )
    assert result.exit_code == 0, result.output
    assert c.ledger_entries() == before
    assert c.ledger_checkpoints() == checkpoints
