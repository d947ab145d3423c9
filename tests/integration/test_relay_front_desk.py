"""The front desk's relay over HTTP: a copy from beijing's agent store to tianjin's, each side
calling out to the front desk with its own site token, and nobody else let in.

The transfer runner does not yet hand copies to agents, so the test marks the decided transfer
``running`` itself (what the runner will do) and plays both agents' parts with the real links."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from suanli.agent.relay_link import HttpRelayLink
from suanli.core.states import TransferState
from suanli.datachain.crypto import KeyStore, new_key
from suanli.datachain.manifest import MiB, build_manifest
from suanli.datachain.relay import RelayChannel, receive
from suanli.datachain.sender import send
from suanli.datachain.site_store import SiteStore
from suanli.datachain.transfer import Offer
from suanli.sdk import Client
from suanli.store.models import DataTransfer
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing, tianjin, ningxia]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 4, memory: 8}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 4, memory: 8}]}
  - {name: ningxia, region: ningxia, zone: mainland, nodes: [{name: nx-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""
GENERAL = {"level": "general", "sub_grade": 2, "pi_count": 0, "categories": ["marketing"]}
CHUNK = 4 * MiB


@pytest.fixture
def rnet(tmp_path: Path) -> Net:  # type: ignore[misc]
    with start_net(tmp_path, NETWORK) as net:
        yield net


def _token(net: Net, site: str) -> str:
    return net.control.site_token_path(site).read_text().strip()


def _running_transfer(net: Net, data: bytes) -> tuple[str, SiteStore, SiteStore]:
    """'notes' registered with beijing as home, its bytes in beijing's agent store; a decided
    copy to tianjin, marked running. Returns the transfer id and both agents' stores."""
    src = net.tmp / "notes.bin"
    src.write_bytes(data)
    net.client.register_dataset(
        name="notes", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=GENERAL
    )
    beijing = SiteStore(net.tmp / "agents/beijing/store", KeyStore(net.tmp / "agents/beijing/keys"))
    tianjin = SiteStore(net.tmp / "agents/tianjin/store", KeyStore(net.tmp / "agents/tianjin/keys"))
    beijing.adopt("notes", src, build_manifest(src, CHUNK), at_rest=False)
    alice = Client(net.url, token=net.user("alice", tenant="bj-ai"))
    tid = str(alice.create_transfer("notes", "tianjin")["id"])
    alice.close()
    with net.control.db.session() as s:
        t = s.get(DataTransfer, tid)
        assert t is not None
        assert t.state == TransferState.READY
        t.state = TransferState.RUNNING
    return tid, beijing, tianjin


def test_a_copy_passes_through_the_front_desk_between_two_agent_stores(rnet: Net) -> None:
    net = rnet
    data = os.urandom(5 * CHUNK + 123)
    tid, beijing, tianjin = _running_transfer(net, data)
    offer = Offer(tid, "notes", beijing.manifest_of("notes"), new_key())  # reaches both agents, not the relay
    source = HttpRelayLink(net.url, _token(net, "beijing"))
    dest = HttpRelayLink(net.url, _token(net, "tianjin"))
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(receive(tianjin, offer, dest, idle_s=30, poll_s=1)))
    thread.start()
    try:
        with beijing.chunks("notes") as chunks:
            result = send(chunks, offer, RelayChannel(source, wait_s=30, poll_s=1), workers=2)
        thread.join(30)
    finally:
        source.close()
        dest.close()
    assert got == [offer.manifest.root]
    assert result.root == offer.manifest.root
    assert b"".join(tianjin.read_plain("notes")) == data
    assert net.control.relay.buffered() == 0
    assert net.control.relay.high_water <= net.control.relay.capacity


def test_only_the_two_sites_of_a_running_transfer_reach_the_relay(rnet: Net) -> None:
    net = rnet
    tid, _, _ = _running_transfer(net, os.urandom(CHUNK + 1))
    base = f"/api/v1/agents/relay/{tid}"
    with net.http_as(_token(net, "ningxia")) as other:
        assert other.get(base).status_code == 404
        assert other.put(f"{base}/chunks/0", content=b"x" * 64).status_code == 404
        assert other.get(f"{base}/chunks/next", params={"wait_s": 0}).status_code == 404
    with net.http_as(None) as nobody:
        assert nobody.get(base).status_code == 401
    with net.http_as(net.admin_token) as admin:  # a user's token is not a site's
        assert admin.get(base).status_code == 401
    with net.http_as(_token(net, "beijing")) as src:
        assert src.get(base).json()["role"] == "source"
        assert src.get(f"{base}/chunks/next", params={"wait_s": 0}).status_code == 404  # the source never pulls
        assert src.put(f"{base}/have", json={"have": []}).status_code == 404
        assert src.put(f"{base}/chunks/9", params={"last": "true"}, content=b"x" * 64).status_code == 409
        assert src.get(f"/api/v1/agents/relay/{uuid.uuid4().hex[:16]}").status_code == 404
        assert src.get("/api/v1/agents/relay/%2E%2E").status_code == 404  # ids, never paths
    with net.http_as(_token(net, "tianjin")) as dst:
        assert dst.get(base).json()["role"] == "dest"
        assert dst.put(f"{base}/chunks/0", content=b"x" * 64).status_code == 404  # the destination never pushes
        assert dst.get(f"{base}/chunks/next", params={"wait_s": 0}).status_code == 404  # say what it holds first
        assert dst.put(f"{base}/have", json={"have": []}).status_code == 204
        assert dst.get(f"{base}/chunks/next", params={"wait_s": 0}).status_code == 204
    with net.control.db.session() as s:
        t = s.get(DataTransfer, tid)
        assert t is not None
        t.state = TransferState.DONE
    with net.http_as(_token(net, "beijing")) as src:
        assert src.get(base).status_code == 404  # a transfer not running has no relay
