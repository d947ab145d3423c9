"""The witnessed ledger over HTTP: a witness polls, checks and cosigns; ``suanli ledger verify``
passes only once the whole log is signed and cosigned, online and offline from an export; an
unlisted witness is refused; a row put into the database raises the alarm."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner, Result

import suanli.__main__  # noqa: F401  (registers `suanli witness` on the CLI)
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.cli import app
from suanli.core.clock import ManualClock
from suanli.core.ledger import entry_bytes, leaf_hash, sign_checkpoint
from suanli.core.network import parse_network
from suanli.core.signednote import Verifier
from suanli.sdk import ApiError, Client
from suanli.server.app import create_app
from suanli.store.models import LedgerEntry
from suanli.witness.run import poll_once
from suanli.witness.state import Witness, init

NETWORK = """\
regions: [beijing]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 8, memory: 32}]}
witnesses: [WITNESS]
"""


@dataclass
class Net:
    control: ControlPlane
    url: str
    admin: str
    client: Client
    witness: Witness
    log_key: Verifier

    def act(self, n: int) -> None:
        """Ordinary actions: entries recorded in their transaction, then sealed."""
        chain = self.control.chain
        for i in range(n):
            with chain.db.session() as s:
                chain.ledger.record(s, "decision", {"dataset": f"ds-{i}", "route": "exempt"}, datetime.now(UTC))
            chain.seal()

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--server", self.url, "--token", self.admin, *args])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    vkey = init(tmp_path / "witness", "regulator.example/w1")
    control = ControlPlane(Settings(home=tmp_path / "home"), clock=ManualClock())
    control.migrate()
    control.apply_network(parse_network(NETWORK.replace("WITNESS", json.dumps(vkey.vkey()))))
    server = uvicorn.Server(uvicorn.Config(create_app(control), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    admin = control.admin_token_path.read_text().strip()
    client = Client(url, token=admin)
    try:
        yield Net(control, url, admin, client, Witness(tmp_path / "witness"), control.chain.ledger.verifier)
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
        control.close()


def test_verify_needs_the_witness_and_works_offline(net: Net, tmp_path: Path) -> None:
    keys = net.client.ledger_keys()
    assert keys["witnesses"] == [net.witness.vkey.vkey()]
    assert keys["vkey"] == net.log_key.vkey()

    r = net.cli("ledger", "verify")
    assert r.exit_code == 0, r.output  # an empty log: nothing to vouch for

    net.act(5)
    r = net.cli("ledger", "verify")
    assert r.exit_code == 1
    assert "no checkpoint is cosigned by 1 witness(es): entries 0..4" in r.output

    assert (
        poll_once(net.client, net.witness, net.log_key)
        == "cosigned size 5 (root " + (net.client.ledger_latest_checkpoint() or {})["root"][:16] + "…)"
    )
    assert poll_once(net.client, net.witness, net.log_key) == "up to date: size 5 already cosigned"
    assert "suanli_ledger_unwitnessed_entries 0.0" in httpx.get(f"{net.url}/metrics").text
    r = net.cli("ledger", "verify", "--key", net.log_key.vkey(), "--witness-key", net.witness.vkey.vkey())
    assert r.exit_code == 0, r.output
    assert "cosigned by regulator.example/w1" in r.output

    net.act(3)  # a tail the witness has not seen yet
    assert "suanli_ledger_unwitnessed_entries 3.0" in httpx.get(f"{net.url}/metrics").text
    r = net.cli("ledger", "verify", "--json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["witnessed"] == 5
    assert net.cli("ledger", "verify", "--witnesses", "0").exit_code == 0
    rounds: list[str] = []
    later = threading.Timer(0.8, lambda: rounds.append(poll_once(net.client, net.witness, net.log_key)))
    later.start()
    r = net.cli("ledger", "verify", "--wait", "10")  # waits for the witness's next round
    later.join()
    assert r.exit_code == 0, r.output
    assert rounds[0].endswith("consistent with size 5")
    assert net.witness.seen.size == 8

    export = tmp_path / "ledger.json"
    assert net.cli("ledger", "export", str(export)).exit_code == 0
    doc = json.loads(export.read_text())
    assert doc["format"] == "suanli-ledger-export/v1"
    assert doc["checkpoints"][-1]["note"].count("\u2014 ") == 2
    offline = CliRunner().invoke(
        app,
        [
            *("--server", "http://127.0.0.1:9", "ledger", "verify", "--file", str(export)),
            *("--key", net.log_key.vkey(), "--witness-key", net.witness.vkey.vkey()),
        ],
    )
    assert offline.exit_code == 0, offline.output
    doc["checkpoints"] = doc["checkpoints"][:-1]
    export.write_text(json.dumps(doc))
    offline = CliRunner().invoke(app, ["ledger", "verify", "--file", str(export), "--key", net.log_key.vkey()])
    assert offline.exit_code == 1
    assert "entries 7..7 are an unsigned tail" in offline.output


def test_unlisted_witness_is_refused(net: Net, tmp_path: Path) -> None:
    net.act(2)
    init(tmp_path / "stranger", "regulator.example/w1")  # same name, another key
    stranger = Witness(tmp_path / "stranger")
    with pytest.raises(ApiError) as err:
        poll_once(net.client, stranger, net.log_key)
    assert err.value.status == 403
    assert "is listed in the network file; its cosignature is refused" in str(err.value)


def test_witness_cli_once_and_status(net: Net, tmp_path: Path) -> None:
    net.act(2)
    home = str(tmp_path / "witness")
    r = net.cli(
        "witness",
        "run",
        "--once",
        "--home",
        home,
        "--log-key",
        net.log_key.vkey(),
        "--server",
        net.url,
        "--token",
        net.admin,
    )
    assert r.exit_code == 0, r.output
    assert "cosigned size 2" in r.output
    r = net.cli("witness", "status", "--home", home, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["size"] == 2


def test_a_row_put_in_the_database_raises_the_alarm(net: Net, caplog: pytest.LogCaptureFixture) -> None:
    net.act(3)
    assert httpx.get(f"{net.url}/healthz").status_code == 200
    chain = net.control.chain
    with chain.db.session() as s:
        data = entry_bytes(3, "filing.state", datetime.now(UTC).isoformat(), {"filing": "f1", "state": "accepted"})
        s.add(
            LedgerEntry(
                index=3,
                kind="filing.state",
                data=data.decode(),
                leaf_hash=leaf_hash(data).hex(),
                created_at=datetime.now(UTC),
            )
        )
    with caplog.at_level(logging.ERROR, logger="suanli.app.ledger"):
        net.act(1)
    assert "LEDGER ALARM: entry 3 was not written by the ledger service" in caplog.text
    health = httpx.get(f"{net.url}/healthz")
    assert health.status_code == 503
    assert "entry 3" in health.json()["ledger"]
    metrics = httpx.get(f"{net.url}/metrics").text
    assert "suanli_ledger_alarm 1.0" in metrics
    r = net.cli("ledger", "verify", "--witnesses", "0")
    assert r.exit_code == 1
    assert "entries 3..4 are an unsigned tail" in r.output


def test_consistency_joins_signed_roots_not_the_servers_word(net: Net, tmp_path: Path) -> None:
    net.act(4)
    saved = tmp_path / "cp.json"
    assert net.cli("ledger", "verify", "--witnesses", "0", "--save-checkpoint", str(saved)).exit_code == 0
    net.act(3)
    r = net.cli("ledger", "consistency", "--from", str(saved))
    assert r.exit_code == 0, r.output
    assert "size 4 → 7: consistent" in r.output
    # A checkpoint of size 4 signed by the log key over another tree (a fork the regulator kept):
    key = (net.control.settings.home / "datachain" / "keys" / "ledger-ed25519.key").read_bytes()
    fork = sign_checkpoint(key, 4, leaf_hash(b"another history"), "t")
    saved.write_text(json.dumps(fork.to_dict()))
    r = net.cli("ledger", "consistency", "--from", str(saved))
    assert r.exit_code == 1
    assert "does not extend the signed tree of size 4" in r.output
    forged = sign_checkpoint(bytes(32), 4, leaf_hash(b"x"), "t")
    saved.write_text(json.dumps(forged.to_dict()))
    r = net.cli("ledger", "consistency", "--from", str(saved))
    assert r.exit_code == 1
    assert "not signed by the log key" in r.output
