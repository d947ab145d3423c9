"""Exports need the owner's word: every PI export records the PIPL basis and the PI impact
assessment its owner gave (refused without them), and the scheduler stages data across a border
or into another zone's regime only with the owner's standing permission."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin-bonded, region: tianjin, zone: bonded, nodes: [{name: tjb-01, cpus: 2, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

#: 50,000 people's PI, no SPI: exempt abroad (X2f), so nothing but the owner's word stands in the way.
PEOPLE = {"level": "general", "pi_count": 50_000, "categories": ["marketing"]}


def register(net: Net) -> bytes:
    src = net.tmp / "people.bin"
    src.write_bytes(os.urandom(2**20 + 9))
    net.client.register_dataset(name="people", owner="bj-ai", home_site="beijing", path=str(src), classification=PEOPLE)
    return src.read_bytes()


def decisions(net: Net) -> list[dict[str, object]]:
    return [json.loads(e["data"])["body"] for e in net.client.ledger_entries() if e["kind"] == "decision"]


def test_a_pi_export_records_the_owners_basis_and_assessment(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        net.client.create_user("olga", tenant="bj-ai", zone="overseas")
        olga = Client(net.url, token=net.client.create_token(user="olga").token)
        data = register(net)

        # A dry run says what is missing; without the owner's word a PI export is refused.
        check = alice.check_movement("people", to="singapore")
        assert (check["route"], check["may_move_now"]) == ("exempt", False)
        assert "suanli data permit people --to singapore" in check["hold"]
        with pytest.raises(ApiError) as copy:
            alice.create_transfer("people", "singapore")
        assert copy.value.status == 422
        assert "suanli data permit people --to singapore" in str(copy.value)
        with pytest.raises(ApiError) as download:
            olga.download_data("people", io.BytesIO())
        assert download.value.status == 422
        assert "--zone overseas" in str(download.value)
        # In China it is no export: no word needed.
        assert alice.create_transfer("people", "tianjin-bonded")["state"] == "ready"
        assert decisions(net)[-1].get("pipl_basis") is None

        with pytest.raises(ApiError) as no_pia:
            alice.permit_export("people", to="singapore", basis="separate_consent", pia_ref=" ")
        assert no_pia.value.status == 422
        alice.permit_export("people", to="singapore", basis="separate_consent", pia_ref="PIA-2026-007")
        alice.permit_export("people", zone="overseas", basis="contract", pia_ref="PIA-2026-008")
        assert alice.check_movement("people", to="singapore")["may_move_now"] is True
        t = alice.create_transfer("people", "singapore")
        assert t["state"] == "ready"
        got = io.BytesIO()
        assert olga.download_data("people", got) == len(data)
        copy_decision, download_decision = decisions(net)[-2:]
        assert (copy_decision["pipl_basis"], copy_decision["pia_ref"]) == ("separate_consent", "PIA-2026-007")
        assert (download_decision["pipl_basis"], download_decision["pia_ref"]) == ("contract", "PIA-2026-008")
        assert [p["destination"] for p in alice.export_permissions("people")] == ["client@overseas", "singapore"]
        entries = [json.loads(e["data"]) for e in net.client.ledger_entries() if e["kind"] == "export.permission"]
        assert [(e["body"]["destination"], e["body"]["actor"]) for e in entries] == [
            ("singapore", "alice"),
            ("client@overseas", "alice"),
        ]

        # Withdrawn, it holds again; another tenant's member cannot give it.
        alice.revoke_export("people", zone="overseas")
        with pytest.raises(ApiError) as again:
            olga.download_data("people", io.BytesIO())
        assert again.value.status == 422
        eve = Client(net.url, token=net.user("eve", tenant="rival"))
        with pytest.raises(ApiError) as foreign:
            eve.permit_export("people", to="singapore", basis="contract", pia_ref="x")
        assert foreign.value.status == 404
        for c in (alice, olga, eve):
            c.close()


def test_the_scheduler_stages_across_a_border_only_with_the_owners_standing_permission(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        for site in ("beijing", "singapore"):
            net.local_agent(site)
        alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
        register(net)
        busy = alice._json(
            "POST",
            "/api/v1/jobs",
            json={"spec": {"name": "busy", "resources": {"cpus": 2}, "run": "sleep 60", "time_limit": 3600}},
        )
        net.pump(lambda: net.state(busy["id"]) == "RUNNING")
        spec = {
            "name": "reader",
            "resources": {"cpus": 2},
            "datasets": [{"name": "people", "mount": "/data/people"}],
            "run": 'wc -c < "$SUANLI_DATASET_PEOPLE"',
        }
        job = alice._json("POST", "/api/v1/jobs", json={"spec": spec})
        for _ in range(3):
            net.cycle()

        # Beijing is busy and singapore free, the copy would be exempt: still, nothing is copied.
        waiting = alice.job(job["id"])
        assert waiting.state.value == "PENDING"
        assert alice.transfers("people") == []
        explain = json.dumps(alice._json("GET", f"/api/v1/jobs/{job['id']}/explain"))
        assert "its owner gave no standing permission" in explain
        assert "suanli data permit people --to singapore --staging" in explain

        # A word for user copies is not a standing permission for the scheduler.
        alice.permit_export("people", to="singapore", basis="separate_consent", pia_ref="PIA-1")
        for _ in range(3):
            net.cycle()
        assert alice.transfers("people") == []

        alice.permit_export("people", to="singapore", basis="separate_consent", pia_ref="PIA-1", staging=True)
        net.pump(lambda: net.state(job["id"]) in ("SUCCEEDED", "FAILED"))
        done = alice.job(job["id"])
        assert done.state.value == "SUCCEEDED", "".join(alice.logs(job["id"]))
        assert done.attempts[-1].site == "singapore"
        [t] = alice.transfers("people")
        assert t["for_job"] == job["id"]
        staged = [d for d in decisions(net) if d.get("for_job") == job["id"]]
        assert (staged[0]["pipl_basis"], staged[0]["pia_ref"]) == ("separate_consent", "PIA-1")
        alice.cancel(busy["id"])
        alice.close()
