"""Job outputs: what a job writes to SUANLI_OUTPUT_DIR becomes a derived dataset at its site,
graded as its inputs until re-graded, and it leaves only through the same policy."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli.main import app
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net, dashboard, start_net

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 2, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 2, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

IMPORTANT = {"level": "important", "pi_count": 1200, "categories": ["health"]}
CORE = {"level": "core", "sub_grade": 1, "pi_count": 0, "categories": ["marketing"]}


def summarise(name: str, source: str, output: str) -> dict[str, object]:
    env = "SUANLI_DATASET_" + source.upper()
    return {
        "name": name,
        "resources": {"cpus": 1},
        "placement": {"regions": ["beijing"]},
        "datasets": [{"name": source, "mount": f"/data/{source}"}],
        "output": {"dataset": output},
        "run": f'mkdir -p "$SUANLI_OUTPUT_DIR/parts" && sha256sum "${env}" | cut -c1-64 '
        f'> "$SUANLI_OUTPUT_DIR/parts/summary.txt" && echo wrote',
    }


@pytest.fixture
def onet(tmp_path: Path) -> Net:  # type: ignore[misc]
    with start_net(tmp_path, NETWORK) as net:
        net.local_agent("beijing")
        yield net


def register(net: Net, name: str, classification: dict[str, object]) -> str:
    src = net.tmp / f"{name}.bin"
    src.write_bytes(os.urandom(2 * 2**20 + 5))
    net.client.register_dataset(
        name=name, owner="bj-ai", home_site="beijing", path=str(src), classification=classification
    )
    return hashlib.sha256(src.read_bytes()).hexdigest()


def test_an_output_becomes_a_derived_dataset_that_moves_only_by_the_rules(onet: Net) -> None:
    net = onet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    digest = register(net, "records", IMPORTANT)

    job = alice._json("POST", "/api/v1/jobs", json={"spec": summarise("summarise", "records", "summary")})
    net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
    done = alice.job(job["id"])
    assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))

    # Registered at the job's site, owned by its tenant, graded as its input until re-graded.
    out = alice.dataset("summary")
    assert (out["home_site"], out["owner"], out["derived_from"]) == ("beijing", "bj-ai", ["records"])
    assert out["classification"]["level"] == "important"
    assert out["classification"]["inherited"] is True
    assert out["classification"]["graded_by"] == f"job {job['id']}"
    assert out["classification"]["categories"] == ["health"]

    # The bytes are the folder the job wrote.
    buf = io.BytesIO()
    alice.download_data("summary", buf)
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz") as tar:
        member = tar.extractfile("parts/summary.txt")
        assert member is not None
        assert member.read().decode().strip() == digest

    # The dashboard shows what it was derived from.
    web = dashboard(net)
    assert "(derived from records)" in web.get("/data").text
    web.close()

    # It leaves only through the policy: abroad, an important dataset needs a security assessment.
    abroad = alice.check_movement("summary", to="singapore")
    assert abroad["route"] == "security_assessment"
    assert not abroad["may_move_now"]
    alice.permit_export("summary", to="singapore", basis="separate_consent", pia_ref="PIA-1")
    t = alice.create_transfer("summary", "singapore")
    assert t["state"] == "held"

    # On the record, with the job that made it.
    entries = net.client.ledger_entries()
    made = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "output"]
    assert len(made) == 1
    assert (made[0]["job"], made[0]["dataset"], made[0]["site"]) == (job["id"], "summary", "beijing")
    registered = [json.loads(e["data"])["body"] for e in entries if e["kind"] == "dataset.registered"]
    assert any(r["dataset"] == "summary" and r["derived_from"] == ["records"] for r in registered)
    alice.close()


def test_an_output_of_core_data_never_leaves_its_site(onet: Net) -> None:
    net = onet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    register(net, "crown", CORE)
    job = alice._json("POST", "/api/v1/jobs", json={"spec": summarise("crown-sum", "crown", "crown-sum")})
    net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
    assert alice.job(job["id"]).state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
    assert alice.dataset("crown-sum")["classification"]["level"] == "core"
    for where in ({"to": "tianjin"}, {"to": "singapore"}):
        assert alice.check_movement("crown-sum", **where)["route"] == "deny"
    assert alice.create_transfer("crown-sum", "tianjin")["state"] == "denied"
    alice.close()


def test_an_output_is_refused_at_submit_when_it_cannot_be_graded_or_is_taken(onet: Net) -> None:
    net = onet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    register(net, "records", IMPORTANT)
    bare = {"name": "bare", "run": "true", "output": {"dataset": "fresh"}}
    with pytest.raises(ApiError) as none:
        alice._json("POST", "/api/v1/jobs", json={"spec": bare})
    assert none.value.status == 422
    assert "inherits the grade of the datasets it reads" in str(none.value)
    with pytest.raises(ApiError) as taken:
        alice._json("POST", "/api/v1/jobs", json={"spec": summarise("again", "records", "records")})
    assert taken.value.status == 422
    assert "already registered" in str(taken.value)
    alice.close()


def test_a_taken_name_at_upload_leaves_the_job_succeeded_and_says_so(onet: Net) -> None:
    net = onet
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    register(net, "records", IMPORTANT)
    spec = summarise("slow", "records", "late")
    spec["run"] = f"sleep 1; {spec['run']}"
    job = alice._json("POST", "/api/v1/jobs", json={"spec": spec})
    net.pump(lambda: net.state(job["id"]) == "RUNNING")
    register(net, "late", IMPORTANT)  # someone takes the name while the job runs
    net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
    done = alice.job(job["id"])
    assert done.state.value == "SUCCEEDED"
    assert "its output was not registered as dataset 'late'" in done.attempts[-1].message
    assert alice.dataset("late")["derived_from"] == []
    alice.close()


def test_suanli_download_unpacks_a_jobs_output_folder(onet: Net, tmp_path: Path) -> None:
    net = onet
    token = net.user("alice", tenant="bj-ai")
    alice = Client(net.url, token=token)
    digest = register(net, "records", IMPORTANT)
    job = alice._json("POST", "/api/v1/jobs", json={"spec": summarise("summarise", "records", "summary")})
    plain = alice._json("POST", "/api/v1/jobs", json={"spec": {"name": "plain", "run": "true"}})
    net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED") and net.state(plain["id"]) == "SUCCEEDED")
    cli = CliRunner()
    conn = ["--server", net.url, "--token", token]

    got = cli.invoke(app, ["download", job["id"], "-o", str(tmp_path / "out"), "--json", *conn])
    assert got.exit_code == 0, got.output
    shown = json.loads(got.stdout)
    assert (shown["dataset"], shown["files"]) == ("summary", ["parts/summary.txt"])
    assert (tmp_path / "out" / "parts" / "summary.txt").read_text().strip() == digest

    none = cli.invoke(app, ["download", plain["id"], "-o", str(tmp_path / "none"), *conn])
    assert none.exit_code == 1
    assert "has no output" in none.stderr
    alice.close()
