"""A whole network on one machine, for `suanli up`: the server in this process, and one agent per
local site, each a process of its own with its own home (``$SUANLI_HOME/agents/<site>``), apart
from the server's state, talking to the server over HTTP only, as a remote site's agent would."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import uvicorn
import yaml

import suanli
from suanli.agent.backends import probe
from suanli.agent.backends.config import AgentConfig, RayConfig, SlurmConfig
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.errors import SuanliError
from suanli.core.network import Backend, NetworkSpec, SiteDecl, parse_network
from suanli.filemodes import private_dir
from suanli.launch.postgres import LocalPostgres
from suanli.launch.replicas import Replica, Replicas, drop_postgres
from suanli.launch.site_agent import CONFIG_FILE, TOKEN_FILE, SiteAgentConfig
from suanli.sdk import Client
from suanli.server.app import create_app
from suanli.web import mount_dashboard
from suanli.witness.run import run_forever as witness_forever
from suanli.witness.state import Witness
from suanli.witness.state import init as witness_init

log = logging.getLogger("suanli.up")

#: The key name of the witness `suanli up --demo` runs (its home: <demo home>/witness).
DEMO_WITNESS = "demo.suanli.local/witness"
#: Seconds between the demo witness's rounds.
DEMO_WITNESS_INTERVAL = 0.5

#: How the demo's engine sites drive the engines that scripts/engines/*.sh start.
DEMO_ENGINES = AgentConfig(
    slurm=SlurmConfig(gpu_type="H100"),
    ray=RayConfig(
        address=os.environ.get("SUANLI_RAY_ADDRESS", "http://127.0.0.1:8265"), gpu_resource="GPU_fake", gpu_type="H100"
    ),
)


def demo_network(engines: Sequence[str] = ()) -> NetworkSpec:
    """The demo network; ``engines`` (``slurm``, ``ray``) adds the demo-engines.yaml site of each."""
    text = resources.files("suanli.launch").joinpath("demo.yaml").read_text(encoding="utf-8")
    if not engines:
        return parse_network(text, "demo.yaml")
    data = yaml.safe_load(text)
    extra = yaml.safe_load(resources.files("suanli.launch").joinpath("demo-engines.yaml").read_text(encoding="utf-8"))
    data["sites"] += [site for site in extra["sites"] if site["backend"] in engines]
    return parse_network(yaml.safe_dump(data, sort_keys=False), "demo.yaml + demo-engines.yaml")


def running_engines(ray_address: str = DEMO_ENGINES.ray.address) -> dict[str, str | None]:
    """Each engine a demo site can use, and why it cannot be used here (None: it is running)."""
    return {"slurm": probe.slurm_problem(), "ray": probe.ray_problem(ray_address)}


def single_site_network(name: str = "local", region: str = "local") -> NetworkSpec:
    """`suanli up` without a network file: one site whose nodes are this machine as the agent
    sees it (real GPUs through NVML when present)."""
    return NetworkSpec(regions=[region], sites=[SiteDecl(name=name, region=region)])


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of a previous run lingering in TIME-WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


#: Seconds a stopping agent has to cancel its attempts and report them before it is killed.
AGENT_STOP_S = 30.0


@dataclass
class RunningAgent:
    """A site's agent process: ``home`` is its own (``$SUANLI_HOME/agents/<site>``), its log
    ``home/agent.log``."""

    site: str
    home: Path
    proc: subprocess.Popen[bytes]

    @property
    def log_path(self) -> Path:
        return self.home / "agent.log"


def agent_home(home: Path, site: str) -> Path:
    """Where a local site's agent keeps its state: ``<home>/agents/<site>``, never the server's."""
    return home / "agents" / site


@dataclass
class LocalNetwork:
    """The server as threads of this process; each site's agent a process of its own; jobs are
    processes of their agents."""

    settings: Settings
    network: NetworkSpec
    #: How agents of Slurm and Ray sites drive their engine.
    engines: AgentConfig = field(default_factory=lambda: DEMO_ENGINES)
    agents: list[RunningAgent] = field(default_factory=list)
    control: ControlPlane | None = None
    #: Where a witness of this network keeps its key and state (None: no witness runs here).
    witness_home: Path | None = None
    #: Front desks in all (``--replicas``): the others run on the next ports (``launch/replicas.py``).
    replicas: int = 1
    #: The private PostgreSQL cluster of ``--postgres`` (stopped with the network).
    postgres: LocalPostgres | None = None
    _replicas: Replicas = field(default_factory=Replicas)
    _witness: tuple[threading.Thread, Client] | None = None
    _server: uvicorn.Server | None = None
    _server_thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def running_replicas(self) -> list[Replica]:
        """The front desks beyond this process's own."""
        return list(self._replicas.running)

    @property
    def servers(self) -> str:
        """Every front desk's URL, comma-separated (``SUANLI_SERVER``'s form): the first is this one."""
        return ",".join([self.url, *(r.url for r in self._replicas.running)])

    def start(self, timeout: float = 20.0) -> None:
        if self.settings.port and not port_is_free(self.settings.host, self.settings.port):
            raise SuanliError(
                f"port {self.settings.port} on {self.settings.host} is in use (another 'suanli up'?); "
                "stop it or pass --port"
            )
        if self.witness_home is not None:
            vkey = witness_init(self.witness_home, DEMO_WITNESS).vkey()
            if vkey not in self.network.witnesses:
                self.network = self.network.model_copy(update={"witnesses": [*self.network.witnesses, vkey]})
        control = ControlPlane(self.settings)
        control.migrate()
        control.apply_network(self.network)
        self.control = control
        app = mount_dashboard(create_app(control, background=True))
        config = uvicorn.Config(
            app, host=self.settings.host, port=self.settings.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="suanli-http", daemon=True)
        self._server_thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._server_thread.is_alive() or time.monotonic() > deadline:
                raise SuanliError(f"the server did not start on {self.settings.host}:{self.settings.port}")
            time.sleep(0.02)
        if self.settings.port == 0:
            self.settings.port = self._server.servers[0].sockets[0].getsockname()[1]
        if self.replicas > 1:
            ports = [self.settings.port + i for i in range(1, self.replicas)]
            busy = [p for p in ports if not port_is_free(self.settings.host, p)]
            if busy:
                raise SuanliError(f"port {busy[0]} is in use; --replicas {self.replicas} needs the ports after --port")
            spec = private_dir(self.settings.home / "replicas") / "network.json"
            spec.write_text(self.network.model_dump_json(exclude_none=True), encoding="utf-8")
            self._replicas.start(control, ports, spec)
        for site in self.network.sites:
            problem = self._engine_problem(site.backend)
            if problem:
                log.warning("not starting an agent for site %s: %s", site.name, problem)
            elif site.backend in (Backend.LOCAL, Backend.SLURM, Backend.RAY):
                self._start_agent(site)
        if self.witness_home is not None:
            self._start_witness(self.witness_home)

    def _start_witness(self, home: Path) -> None:
        """The demo's witness: its own key and state, polling the front desk over HTTP, as
        ``suanli witness run`` does (a thread here, as the agents are)."""
        assert self.control is not None
        client = Client(self.url, token=self.admin_token)
        args = (client, Witness(home), self.control.chain.ledger.verifier, DEMO_WITNESS_INTERVAL, self._stop)
        thread = threading.Thread(target=witness_forever, args=args, name="witness", daemon=True)
        thread.start()
        self._witness = (thread, client)

    @property
    def admin_token(self) -> str:
        """The network's admin token (``$SUANLI_HOME/admin.token``, written on first start)."""
        assert self.control is not None
        return self.control.admin_token_path.read_text().strip()

    def _engine_problem(self, backend: Backend) -> str | None:
        """Why a Slurm or Ray site cannot get an agent here (its engine is not running)."""
        if backend == Backend.SLURM:
            return probe.slurm_problem()
        if backend == Backend.RAY:
            return probe.ray_problem(self.engines.ray.address)
        return None

    def _start_agent(self, site: SiteDecl) -> None:
        """Start ``site``'s agent as its own process (``python -m suanli.launch.site_agent``)."""
        assert self.control is not None
        home = private_dir(agent_home(self.settings.home, site.name), traverse_ok=True)
        engines = self.engines
        if site.sandbox == "none":  # the network file's word for this site
            engines = engines.model_copy(update={"local": engines.local.model_copy(update={"sandbox": "none"})})
        config = SiteAgentConfig(
            site=site.name,
            server=self.servers,
            backend=site.backend.value,
            engines=engines,
            nodes=site.node_decls(),
            heartbeat_s=self.settings.heartbeat_s,
        )
        (home / CONFIG_FILE).write_text(config.model_dump_json(indent=2), encoding="utf-8")
        token = home / TOKEN_FILE
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.control.site_token_path(site.name).read_text())
        # The agent imports this very suanli, however this process found it.
        src = str(Path(suanli.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
        with (home / "agent.log").open("ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "suanli.launch.site_agent", str(home)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: Ctrl-C reaches `suanli up` alone, which stops placing first
                # and then stops each agent.
                start_new_session=True,
            )
        self.agents.append(RunningAgent(site.name, home, proc))

    def wait_online(self, timeout: float = 15.0) -> None:
        """Block until every local site's agent has registered."""
        assert self.control is not None
        names = {a.site for a in self.agents}
        deadline = time.monotonic() + timeout
        with Client(self.url, token=self.admin_token) as client:
            while time.monotonic() < deadline:
                online = {s.name for s in client.sites() if s.online}
                if names <= online:
                    return
                for a in self.agents:
                    if a.proc.poll() is not None:
                        tail = a.log_path.read_text(errors="replace")[-2000:]
                        raise SuanliError(f"the agent of {a.site} exited ({a.proc.returncode}); its log ends:\n{tail}")
                time.sleep(0.05)
        raise SuanliError(f"agents did not come online: {', '.join(sorted(names - online))}")

    def stop(self) -> None:
        """Stop every process this network started: jobs, agents, then the server. Placing stops
        first, so jobs the agents give back wait (PENDING) for the next start instead of bouncing
        between sites that are shutting down."""
        self._replicas.stop()  # first: none of them may take the lead and place while we stop
        if self.control is not None:
            self.control.stop()
        for running in self.agents:
            if running.proc.poll() is None:
                running.proc.send_signal(signal.SIGTERM)  # it cancels its attempts and reports them
        for running in self.agents:
            try:
                running.proc.wait(timeout=AGENT_STOP_S)
            except subprocess.TimeoutExpired:
                log.error("agent %s did not stop in %.0f s; killing it", running.site, AGENT_STOP_S)
                running.proc.kill()
                running.proc.wait()
        self._stop.set()
        if self._witness is not None:
            self._witness[0].join(timeout=15)
            self._witness[1].close()
        if self._server is not None:
            self._server.should_exit = True
        if self._server_thread is not None:
            self._server_thread.join(timeout=15)
        if self.control is not None:
            self.control.close()
        if self.postgres is not None:
            drop_postgres(self.postgres)


def read_network_file(path: Path) -> NetworkSpec:
    return parse_network(path.read_text(encoding="utf-8"), str(path))
