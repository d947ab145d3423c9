"""Filings follow the rules that required them: expiry capped by the rule's validity, an expired
approval releases nothing, and downloads abroad can be filed for (the downloader's zone is the
one their user record gives)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from suanli.datachain.manifest import MiB
from suanli.sdk import ApiError, Client
from tests.integration.test_datachain import DataNet, dnet, make_file

__all__ = ["dnet"]


def _register(net: DataNet, name: str, classification: dict[str, object]) -> bytes:
    src = make_file(net.tmp / f"{name}.bin", 4 * MiB)
    net.client.register_dataset(
        name=name, owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=classification
    )
    return src.read_bytes()


def test_an_auditor_cannot_set_an_expiry_beyond_the_rules_validity(dnet: DataNet) -> None:
    c = dnet.client
    _register(dnet, "ledger-book", {"level": "important", "categories": ["finance"]})
    f = c.create_filing("ledger-book", "singapore")
    assert f["route"] == "security_assessment"
    c.move_filing(f["id"], "submit")
    with pytest.raises(ApiError) as too_long:
        dnet.auditor.move_filing(f["id"], "approve", expires_at="2099-01-01T00:00:00Z")
    assert too_long.value.status == 422
    assert "valid 3 years" in str(too_long.value)
    assert [x["state"] for x in c.filings() if x["id"] == f["id"]] == ["submitted"]
    approved = dnet.auditor.move_filing(f["id"], "approve")
    now = dnet.control.clock.now()
    expires = approved["expires_at"]
    assert expires.startswith(str((now + timedelta(days=3 * 365)).date()))


def test_approving_an_expired_filing_releases_nothing(dnet: DataNet) -> None:
    c = dnet.client
    _register(dnet, "notes", {"pi_count": 200_000, "categories": ["marketing"]})
    c.permit_export("notes", to="singapore", basis="separate_consent", pia_ref="PIA-1")
    t = c.create_transfer("notes", "singapore")
    assert t["state"] == "held"
    f = c.create_filing("notes", "singapore", "certification")
    c.move_filing(f["id"], "submit")
    past = (dnet.control.clock.now() - timedelta(days=1)).isoformat()
    approved = dnet.auditor.move_filing(f["id"], "approve", expires_at=past, certificate_id="CERT-1")
    assert approved["state"] == "accepted"
    assert approved["released_transfers"] == []
    held = c.transfer(t["id"])
    assert held["state"] == "held"
    with pytest.raises(ApiError) as still:
        c.run_transfer(t["id"])
    assert still.value.status == 403
    assert "expired" in str(still.value)


def test_a_download_abroad_is_decided_for_the_users_zone_and_can_be_filed(dnet: DataNet) -> None:
    c = dnet.client
    data = _register(dnet, "clinic", {"pi_count": 150_000, "categories": ["public_health"]})
    c.create_user("olga", role="member", tenant="bj-ai", zone="overseas")
    c.create_user("mei", role="member", tenant="bj-ai")
    c.permit_export("clinic", zone="overseas", basis="separate_consent", pia_ref="PIA-1")
    with (
        Client(c.server, token=c.create_token(user="olga").token) as olga,
        Client(c.server, token=c.create_token(user="mei").token) as mei,
    ):
        # The client cannot declare itself home: the zone is the user record's.
        with pytest.raises(ApiError) as claimed:
            olga.download_data("clinic", io.BytesIO(), zone="mainland")
        assert claimed.value.status == 422
        assert "recorded in the overseas zone" in str(claimed.value)
        with pytest.raises(ApiError) as held:
            olga.download_data("clinic", io.BytesIO())
        assert held.value.status == 403
        assert "waiting for a data filing" in str(held.value)
        got = io.BytesIO()
        assert mei.download_data("clinic", got) == len(data)  # at home: not an export

        f = mei.create_filing("clinic", zone="overseas")
        assert (f["destination"], f["route"]) == ("client@overseas", "standard_contract")
        mei.move_filing(f["id"], "submit")
        dnet.auditor.move_filing(f["id"], "approve", expires_at="2027-06-01T00:00:00Z")
        got = io.BytesIO()
        assert olga.download_data("clinic", got) == len(data)
        assert got.getvalue() == data
    assert c.ledger_counters()[0]["pi"] == 150_000
