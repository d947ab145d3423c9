"""``suanli up --replicas N --postgres``: a private PostgreSQL and front-desk replicas on it.

The first front desk is ``suanli up``'s own (in this process, home ``$SUANLI_HOME``); each
further one is a ``suanli server`` process on the next port, with a home of its own
(``$SUANLI_HOME/replicas/<port>``), so nothing reaches it through the first one's folder: it
reads archives from the database's blob store and is given the first one's keys through
``SUANLI_LEDGER_KEY`` and ``SUANLI_SECRET_KEY``, as a replica on another machine would be
(docs/operators.md, "Several server replicas"). Agents and the CLI get every URL, comma-separated.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from suanli.app.control import ControlPlane
from suanli.core.errors import SuanliError
from suanli.filemodes import private_dir
from suanli.launch.postgres import LocalPostgres

log = logging.getLogger("suanli.up")

#: Seconds a replica is given to answer /healthz after it starts, and to stop.
REPLICA_START_S = 60.0
REPLICA_STOP_S = 20.0
#: The database ``suanli up --postgres`` keeps the network in.
DATABASE = "suanli"


def private_postgres() -> LocalPostgres:
    """A PostgreSQL cluster of its own in a fresh temporary folder (a free loopback port, a
    random password), started, with a ``suanli`` database. It lives as long as ``suanli up``:
    :func:`drop_postgres` removes it. (As root the server runs as Debian's ``postgres`` user,
    who could not pass through a private ``$SUANLI_HOME``.)"""
    pg = LocalPostgres(Path(tempfile.mkdtemp(prefix="suanli-up-pg-")))
    try:
        pg.init()
        pg.start(durable=False)
        pg.create_database(DATABASE)
    except BaseException:
        drop_postgres(pg)
        raise
    return pg


def drop_postgres(pg: LocalPostgres) -> None:
    try:
        pg.stop()
    finally:
        shutil.rmtree(pg.folder, ignore_errors=True)


def shared_keys(control: ControlPlane) -> dict[str, str]:
    """The first front desk's ledger and secrets keys, as the variables that give them to the
    others (its database check in ``migrate`` made both files)."""
    settings = control.settings
    ledger = settings.ledger_key or control.chain.keys.root.joinpath("ledger-ed25519.key").read_bytes().hex()
    secret = settings.secret_key or settings.secret_key_path.read_text(encoding="ascii").strip()
    return {"SUANLI_LEDGER_KEY": ledger, "SUANLI_SECRET_KEY": secret}


@dataclass
class Replica:
    port: int
    home: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"


@dataclass
class Replicas:
    """Front desks beyond the first, each a ``suanli server`` process."""

    running: list[Replica] = field(default_factory=list)

    def start(self, control: ControlPlane, ports: list[int], network_file: Path | None) -> None:
        env = {**os.environ, **shared_keys(control), "SUANLI_DATABASE_URL": control.settings.db_url}
        env.pop("SUANLI_BLOB_STORE", None)  # the database's store: the homes are apart
        for port in ports:
            home = private_dir(control.settings.home / "replicas" / str(port))
            argv = [sys.executable, "-m", "suanli", "server", "--home", str(home), "--port", str(port)]
            if network_file is not None:
                argv += ["--network", str(network_file)]
            with (home / "server.log").open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            self.running.append(Replica(port, home, proc))
        for replica in self.running:
            _wait_healthy(replica)

    def stop(self) -> None:
        for replica in self.running:
            if replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGTERM)
        for replica in self.running:
            try:
                replica.proc.wait(timeout=REPLICA_STOP_S)
            except subprocess.TimeoutExpired:
                log.error("the front desk on port %d did not stop in %.0f s; killing it", replica.port, REPLICA_STOP_S)
                replica.proc.kill()
                replica.proc.wait()
        self.running.clear()


def _wait_healthy(replica: Replica) -> None:
    deadline = time.monotonic() + REPLICA_START_S
    while time.monotonic() < deadline:
        if replica.proc.poll() is not None:
            tail = replica.log_path.read_text(errors="replace")[-2000:]
            raise SuanliError(
                f"the front desk on port {replica.port} exited ({replica.proc.returncode}); its log ends:\n{tail}"
            )
        try:
            if httpx.get(f"{replica.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SuanliError(f"the front desk on port {replica.port} did not answer /healthz in {REPLICA_START_S:.0f} s")
