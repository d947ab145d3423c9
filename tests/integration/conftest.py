"""An in-process network: the real server (uvicorn on a loopback port, its scheduler ticked by
hand on a ManualClock) and real agents talking to it over HTTP through the SDK."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from suanli.agent.agent import Agent
from suanli.agent.backends.base import Backend
from suanli.agent.backends.fake import FakeBackend
from suanli.agent.backends.local import LocalBackend
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.clock import ManualClock
from suanli.core.network import NetworkSpec, parse_network
from suanli.sdk import Client
from suanli.sdk.agent import SiteClient
from suanli.server.app import create_app
from suanli.web import mount_dashboard
from tests.db_support import database_url_for_test, drop_database

NETWORK = """\
regions: [beijing, tianjin, ningxia]
sites:
  - name: beijing
    region: beijing
    latency_ms: {beijing: 0.3, tianjin: 1.5, ningxia: 28}
    nodes: [{name: bj-01, gpus: A800:4, cpus: 32, memory: 256}]
  - name: tianjin-gaocun
    region: tianjin
    latency_ms: {beijing: 1.5, tianjin: 0.2, ningxia: 25}
    nodes: [{name: tj-01, gpus: H100:16, cpus: 128, memory: 2048}]
    tariff: {gpu_hour: {H100: 28}}
  - name: ningxia
    region: ningxia
    latency_ms: {beijing: 28, tianjin: 25, ningxia: 0.3}
    nodes: [{name: nx-01, count: 4, gpus: 910B:8, cpus: 96, memory: 768}]
tenants:
  - {name: bj-ai, home_region: beijing}
"""


@dataclass
class Net:
    control: ControlPlane
    clock: ManualClock
    url: str
    http: httpx.Client
    client: Client
    spec: NetworkSpec
    tmp: Path
    admin_token: str
    agents: dict[str, Agent] = field(default_factory=dict)

    def user(self, name: str, role: str = "member", tenant: str | None = None, sites: list[str] | None = None) -> str:
        """Make a user (and its tenant, for a member) through the API; returns a token for it."""
        if tenant and tenant not in {t.name for t in self.client.tenants()}:
            self.client.create_tenant(tenant)
        self.client.create_user(name, role=role, tenant=tenant, sites=sites or [])
        return self.client.create_token(user=name, name="test").token

    def http_as(self, token: str | None) -> httpx.Client:
        """A raw HTTP client with ``token`` (None: no credentials). Close it (use ``with``)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers)

    def agent(self, site: str, backend: Backend) -> Agent:
        token = self.control.site_token_path(site).read_text().strip()
        work = self.tmp / "sites" / site
        agent = Agent(SiteClient(self.url, token=token), site, backend, work, agent_id=f"agent-{site}")
        agent.register()
        self.agents[site] = agent
        return agent

    def local_agent(self, site: str) -> tuple[Agent, LocalBackend]:
        decl = self.spec.site(site)
        assert decl is not None
        backend = LocalBackend(self.tmp / "sites" / site, nodes=decl.node_decls(), kill_grace_s=2.0)
        return self.agent(site, backend), backend

    def fake_agent(self, site: str) -> tuple[Agent, FakeBackend]:
        decl = self.spec.site(site)
        assert decl is not None
        backend = FakeBackend(decl.node_decls())
        return self.agent(site, backend), backend

    def cycle(self) -> None:
        """One scheduler pass and one heartbeat from every agent."""
        self.control.tick()
        for agent in self.agents.values():
            agent.step()

    def pump(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        """Cycle until ``done()`` holds. Real processes run meanwhile, so this waits on them."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            self.cycle()
            time.sleep(0.02)

    def state(self, job_id: str) -> str:
        return self.client.job(job_id).state.value


@contextlib.contextmanager
def start_net(tmp_path: Path, network: str = NETWORK, **settings: Any) -> Iterator[Net]:
    """A server on a loopback port for ``network`` (YAML), its scheduler ticked by hand.
    ``settings``: Settings fields to override."""
    clock = ManualClock()
    database = None if "database_url" in settings else database_url_for_test()
    if database is not None:
        settings["database_url"] = database
    control = ControlPlane(Settings(home=tmp_path / "home", lease_s=30, **settings), clock=clock)
    control.migrate()
    spec = parse_network(network)
    control.apply_network(spec)
    server = uvicorn.Server(
        uvicorn.Config(mount_dashboard(create_app(control)), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    admin = control.admin_token_path.read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}) as http:
        network_ = Net(control, clock, url, http, Client(url, token=admin), spec, tmp_path, admin)
        try:
            yield network_
        finally:
            for agent in network_.agents.values():
                agent.shutdown(cancel_running=True, grace_s=1.0)
                assert isinstance(agent.client, Client)
                agent.client.close()
            network_.client.close()
            server.should_exit = True
            thread.join(timeout=10)
            control.close()
            if database is not None:
                drop_database(database)


def dashboard(net: Net) -> httpx.Client:
    """The dashboard's pages (served beside the API), signed in as the admin."""
    return httpx.Client(base_url=net.url, cookies={"suanli_token": net.admin_token})


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with start_net(tmp_path) as network:
        yield network
