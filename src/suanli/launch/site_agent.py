"""One site's agent as a process of its own, as ``suanli up`` starts it:
``python -m suanli.launch.site_agent AGENT_HOME``.

``AGENT_HOME`` (``$SUANLI_HOME/agents/<site>``) is the agent's home, apart from the server's: it
holds ``agent.json`` (what :class:`~suanli.launch.network.LocalNetwork` wrote: the site, the
server's URL, the backend, the engines' settings, the virtual nodes, the heartbeat), ``site.token``
(mode 0600) and everything the agent keeps (attempts, checkpoints, fetched inputs), with the
site's data store (``store/``, its keys in ``keys/``; ``agent/sitedata.py``). The process
talks to the server over HTTP only, like an agent at a remote site. SIGTERM or SIGINT stops it:
it cancels its attempts, reports them and leaves. It also leaves when the process that started
it is gone, so a killed ``suanli up`` leaves no agent behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

from pydantic import Field

from suanli.agent.agent import Agent
from suanli.agent.backends.config import AgentConfig, make_backend
from suanli.agent.service_link import ServiceLink
from suanli.agent.sitedata import SiteData
from suanli.core.network import NodeDecl
from suanli.core.spec import StrictModel
from suanli.sdk.agent import SiteClient

log = logging.getLogger("suanli.agent")

CONFIG_FILE = "agent.json"
TOKEN_FILE = "site.token"  # noqa: S105  # a file name, not a secret


class SiteAgentConfig(StrictModel):
    """What a site agent started by ``suanli up`` runs with (``agent.json`` in its home)."""

    site: str
    server: str
    backend: str = "local"
    engines: AgentConfig = Field(default_factory=AgentConfig)
    nodes: list[NodeDecl] = Field(default_factory=list)
    heartbeat_s: float = 5.0


def _watch_parent(stop: threading.Event, parent: int) -> None:
    """Set ``stop`` once the process that started this one is gone (re-parented)."""
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("the process that started this agent is gone; stopping")
            stop.set()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m suanli.launch.site_agent AGENT_HOME", file=sys.stderr)
        return 2
    home = Path(argv[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = SiteAgentConfig.model_validate_json((home / CONFIG_FILE).read_text(encoding="utf-8"))
    token = (home / TOKEN_FILE).read_text(encoding="utf-8").strip()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    threading.Thread(target=_watch_parent, args=(stop, os.getppid()), name="parent-watch", daemon=True).start()
    backend = make_backend(config.backend, home, config.engines, config.nodes or None)
    with SiteClient(config.server, token=token) as client:
        agent = Agent(client, config.site, backend, home, heartbeat_s=config.heartbeat_s)
        agent.site_data = SiteData(home, config.server, token)
        agent.outputs.store = agent.site_data.store  # outputs stay at the site
        agent.service_link = ServiceLink(config.server, token, site=config.site)
        log.info("agent for site %s (home %s, pid %d) → %s", config.site, home, os.getpid(), config.server)
        agent.run_forever(stop)
        agent.shutdown(cancel_running=True)
        agent.site_data.close()
    log.info("agent for site %s stopped", config.site)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
