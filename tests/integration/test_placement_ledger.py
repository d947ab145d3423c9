"""A placement of a job on data and its ledger entry commit together: when the entry cannot be
written, the placement is not made either (the job stays pending, with no attempt)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli.app.ledger import LedgerService
from suanli.sdk import Client
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with start_net(tmp_path, NETWORK) as n:
        n.fake_agent("beijing")
        yield n


def test_placement_and_its_ledger_entry_commit_together(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    src = net.tmp / "notes.bin"
    src.write_bytes(os.urandom(4096))
    net.client.register_dataset(
        name="notes",
        owner="bj-ai",
        home_site="beijing",
        path=str(src),
        classification={"level": "general", "sub_grade": 2, "pi_count": 10, "categories": ["marketing"]},
    )
    spec = {
        "name": "reader",
        "resources": {"cpus": 1},
        "datasets": [{"name": "notes", "mount": "/data/notes"}],
        "run": "true",
    }
    with Client(net.url, token=net.user("alice", tenant="bj-ai")) as alice:
        job = alice._json("POST", "/api/v1/jobs", json={"spec": spec})

    real = LedgerService.record

    def failing(self: LedgerService, session: Any, kind: str, body: dict[str, Any], at: Any) -> int:
        if kind == "placement":
            raise RuntimeError("the ledger write failed")
        return real(self, session, kind, body, at)

    monkeypatch.setattr(LedgerService, "record", failing)
    with pytest.raises(RuntimeError, match="the ledger write failed"):
        net.control.tick()
    still = net.client.job(job["id"])
    assert still.state.value == "PENDING"
    assert still.attempts == []
    assert not [e for e in net.client.ledger_entries() if e["kind"] == "placement"]

    monkeypatch.setattr(LedgerService, "record", real)
    net.control.tick()
    placed = net.client.job(job["id"])
    assert placed.state.value != "PENDING"
    assert placed.attempts[0].site == "beijing"
    entries = [e for e in net.client.ledger_entries() if e["kind"] == "placement"]
    assert len(entries) == 1
    assert job["id"] in entries[0]["data"]
    latest = net.client.ledger_latest_checkpoint()
    assert latest is not None
    assert latest["size"] == len(net.client.ledger_entries())  # sealed right after the commit
