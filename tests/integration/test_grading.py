"""Grades only auditors lower: a member's downgrade is held until an auditor decides it, both steps
on the ledger; raising applies at once; who graded is the authenticated user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.datachain.manifest import MiB
from suanli.sdk import ApiError, Client
from tests.integration.test_datachain import DataNet, dnet, ledger_report, make_file

__all__ = ["dnet"]


@dataclass
class Graded:
    net: DataNet
    member: Client
    member_token: str
    auditor_token: str


@pytest.fixture
def graded(dnet: DataNet) -> Iterator[Graded]:
    c = dnet.client
    src = make_file(dnet.tmp / "people.bin", 4 * MiB)
    d = c.register_dataset(
        name="people",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        chunk_mib=4,
        classification={"level": "important", "pi_count": 50_000, "spi_count": 50_000, "categories": ["finance"]},
        graded_by="Tianjin CAC (official)",
    )
    # Who graded is the caller, never the text the client sent.
    assert d["classification"]["graded_by"] == "admin"
    c.create_user("alice", role="member", tenant="bj-ai")
    token = c.create_token(user="alice").token
    member = Client(c.server, token=token)
    auditor_token = c.create_token(user="regulator").token
    try:
        yield Graded(dnet, member, token, auditor_token)
    finally:
        member.close()


def test_a_members_downgrade_is_held_until_an_auditor_approves_it(graded: Graded) -> None:
    net, member = graded.net, graded.member
    down = {"level": "general", "pi_count": 50_000, "spi_count": 0, "categories": ["finance"]}
    out = member.grade_dataset("people", down)
    assert out["applied"] is False
    request = out["request"]
    assert request["state"] == "pending"
    assert request["requested_by"] == "alice"
    assert request["lowers"] == ["level important → general", "SPI 50,000 → 0"]
    # The dataset keeps its stricter grade, and the rules still decide on it.
    assert out["dataset"]["classification"]["level"] == "important"
    assert member.dataset("people")["grade_version"] == 1
    assert member.check_movement("people", to="singapore")["route"] == "security_assessment"

    # Neither the member nor the admin may decide it: only an auditor.
    for who in (member, net.client):
        with pytest.raises(ApiError) as refused:
            who.decide_grade_request(request["id"], "approve")
        assert refused.value.status == 403
    assert member.grade_requests(state="pending") == [request]

    approved = net.auditor.decide_grade_request(request["id"], "approve", note="checked the source records")
    assert approved["applied"] is True
    assert approved["request"]["state"] == "approved"
    assert approved["request"]["decided_by"] == "regulator"
    ds = approved["dataset"]
    assert ds["grade_version"] == 2
    assert ds["classification"]["level"] == "general"
    assert ds["classification"]["graded_by"] == "alice (approved by regulator)"
    assert member.check_movement("people", to="singapore")["route"] == "exempt"  # X2f: 50,000 PI, no SPI
    with pytest.raises(ApiError) as twice:
        net.auditor.decide_grade_request(request["id"], "deny")
    assert twice.value.status == 409

    report, entries = ledger_report(net.auditor)
    assert report.ok, report
    kinds = [json.loads(e["data"])["kind"] for e in entries]
    requested = kinds.index("grade.requested")
    decided = kinds.index("grade.decided")
    assert requested < decided < len(kinds) - 1 - kinds[::-1].index("dataset.graded")
    bodies = [json.loads(e["data"])["body"] for e in entries]
    assert bodies[requested]["requested_by"] == "alice"
    assert bodies[decided] == {
        "request": request["id"],
        "dataset": "people",
        "state": "approved",
        "decided_by": "regulator",
    }


def test_raising_applies_at_once_and_lowering_any_part_is_held(graded: Graded) -> None:
    net, member = graded.net, graded.member
    up = {"level": "important", "pi_count": 60_000, "spi_count": 50_000, "categories": ["finance", "transport"]}
    raised = member.grade_dataset("people", up)
    assert raised["applied"] is True
    assert raised["dataset"]["grade_version"] == 2
    assert raised["dataset"]["classification"]["graded_by"] == "alice"

    lowerings = {
        "a category dropped": {**up, "categories": ["transport"]},
        "fewer people": {**up, "pi_count": 1},
        "a return flow claimed": {**up, "return_flow": True},
        "raised here, lowered there": {**up, "level": "core", "spi_count": 0},
    }
    ids = []
    for what, c in lowerings.items():
        out = member.grade_dataset("people", c)
        assert out["applied"] is False, what
        assert out["dataset"]["grade_version"] == 2, what
        ids.append(out["request"]["id"])
    denied = net.auditor.decide_grade_request(ids[0], "deny", note="the category stands")
    assert denied["applied"] is False
    assert denied["request"]["state"] == "denied"
    assert member.dataset("people")["grade_version"] == 2
    # Approving a request made on an older grade is refused: the owner asks again.
    member.grade_dataset("people", {**up, "level": "core"})
    with pytest.raises(ApiError) as stale:
        net.auditor.decide_grade_request(ids[1], "approve")
    assert stale.value.status == 409
    assert "re-graded" in str(stale.value)
    # Another tenant's member sees none of it.
    net.client.create_tenant("other")
    net.client.create_user("bob", role="member", tenant="other")
    with Client(net.client.server, token=net.client.create_token(user="bob").token) as bob:
        assert bob.grade_requests() == []
        with pytest.raises(ApiError) as hidden:
            bob.grade_request(ids[0])
        assert hidden.value.status == 404


def test_the_cli_requests_and_an_auditor_decides(graded: Graded, tmp_path: Path) -> None:
    runner = CliRunner()
    url = graded.net.client.server

    def cli(token: str, *args: str) -> str:
        result = runner.invoke(app, ["--server", url, "--token", token, *args])
        assert result.exit_code == 0, result.output
        return result.output

    said = cli(
        graded.member_token, "data", "grade", "people", "--level", "general", "--pi", "50000", "--category", "finance"
    )
    assert "held for an auditor" in said
    assert "SPI 50,000 → 0" in said
    [pending] = json.loads(cli(graded.member_token, "data", "requests", "--state", "pending", "--json"))
    out = json.loads(cli(graded.auditor_token, "data", "approve", pending["id"], "--note", "ok", "--json"))
    assert out["request"]["state"] == "approved"
    assert out["dataset"]["classification"]["level"] == "general"
    assert "approved by regulator" in cli(graded.member_token, "data", "requests")
