"""The transfer runner: a request to run a copy answers at once (202, ``queued``), the control
plane's runner copies it off the request path, and a stopped runner resumes what it left queued."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.core.states import TransferState
from suanli.datachain.site_store import LocalChannel, SiteStore
from suanli.sdk import ApiError
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing, tianjin]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 2, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

MiB = 2**20


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with start_net(tmp_path, NETWORK) as network:
        yield network


def register(net: Net, name: str, size: int) -> bytes:
    data = os.urandom(size)
    src = net.tmp / f"{name}.bin"
    src.write_bytes(data)
    net.client.register_dataset(
        name=name, owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification={"level": "general"}
    )
    return data


def copied(net: Net, name: str) -> Path:
    return net.tmp / "home/datachain/sites/tianjin/datasets" / name / "data"


def states_on_ledger(net: Net, transfer_id: str) -> list[str]:
    bodies = [json.loads(e["data"])["body"] for e in net.client.ledger_entries(kind="transfer.state")]
    return [b["state"] for b in bodies if b["transfer"] == transfer_id]


def test_a_run_request_answers_before_the_copy_and_the_runner_finishes_it(net: Net) -> None:
    data = register(net, "notes", 9 * MiB + 5)
    t = net.client.create_transfer("notes", "tianjin")
    assert t["state"] == TransferState.READY

    # Every chunk waits at the gate until the test opens it: the copy cannot end before the answer.
    gate, entered, threads = threading.Event(), threading.Event(), set[str]()

    class Gated(LocalChannel):
        def __init__(self, store: SiteStore) -> None:
            threads.add(threading.current_thread().name)  # the thread that runs the copy opens it
            super().__init__(store)

        def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
            entered.set()
            assert gate.wait(30)
            super().put(transfer_id, index, last, blob)

    net.control.transfers.channel_factory = Gated
    r = net.http.post(f"/api/v1/transfers/{t['id']}/run")
    assert r.status_code == 202, r.text
    assert r.json()["id"] == t["id"]
    assert r.json()["state"] == TransferState.QUEUED
    assert r.json()["reason"].startswith("queued to run")

    assert entered.wait(30), "the runner never began the copy"
    running = net.client.transfer(t["id"])
    assert running["state"] == TransferState.RUNNING
    assert not copied(net, "notes").exists()
    # Queued or running, a transfer runs once at a time.
    with pytest.raises(ApiError) as again:
        net.client.run_transfer(t["id"], wait=False)
    assert again.value.status == 409
    assert "already queued or running" in str(again.value)

    gate.set()
    done = net.client.wait_transfer(t["id"], timeout=30)
    assert done["state"] == TransferState.DONE, done
    assert copied(net, "notes").read_bytes() == data
    assert "tianjin" in net.client.dataset("notes")["replicas"]
    # The copy ran on the runner's threads, and the record is what it always was: queueing adds nothing.
    assert len(threads) == 1
    assert threads.pop().startswith("suanli-copy")
    assert states_on_ledger(net, t["id"]) == ["ready", "running", "done"]
    assert net.control.transfers.queued() == []


def test_a_stopped_runner_resumes_what_it_left_queued(net: Net) -> None:
    data = register(net, "plans", 5 * MiB)
    t = net.client.create_transfer("plans", "tianjin")
    runner = net.control.transfers
    runner.stop()

    # Asked while the runner is stopped: recorded as queued, copied by nobody yet.
    queued = net.client.run_transfer(t["id"], wait=False)
    assert queued["state"] == TransferState.QUEUED
    assert net.client.transfer(t["id"])["state"] == TransferState.QUEUED
    assert runner.queued() == []
    assert not copied(net, "plans").exists()

    # The next start picks it up again.
    assert runner.start() == [t["id"]]
    done = net.client.wait_transfer(t["id"], timeout=30)
    assert done["state"] == TransferState.DONE, done
    assert copied(net, "plans").read_bytes() == data


def test_a_copy_that_breaks_off_is_failed_with_its_reason_and_resumes_when_asked(net: Net) -> None:
    data = register(net, "logs", 13 * MiB)
    t = net.client.create_transfer("logs", "tianjin")

    class Breaking(LocalChannel):
        puts = 0

        def put(self, transfer_id: str, index: int, last: bool, blob: bytes) -> None:
            if Breaking.puts >= 2:
                raise ConnectionError("link lost")
            Breaking.puts += 1
            super().put(transfer_id, index, last, blob)

    net.control.transfers.channel_factory = Breaking
    failed = net.client.run_transfer(t["id"], timeout=30)
    assert failed["state"] == TransferState.FAILED
    assert "link lost" in failed["reason"]
    assert "run it again to resume" in failed["reason"]

    net.control.transfers.channel_factory = LocalChannel
    done = net.client.run_transfer(t["id"], timeout=30)
    assert done["state"] == TransferState.DONE, done
    assert copied(net, "logs").read_bytes() == data
    assert states_on_ledger(net, t["id"]) == ["ready", "running", "failed", "running", "done"]
