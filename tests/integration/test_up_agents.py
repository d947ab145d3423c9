"""`suanli up` starts each site's agent as a process of its own, with its own home
(``$SUANLI_HOME/agents/<site>``), apart from the server's state; stopping the network stops them."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from suanli.app.settings import Settings
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.launch.network import LocalNetwork, agent_home
from suanli.sdk import Client

NETWORK = parse_network(
    "regions: [e, w]\nsites:\n"
    "  - {name: east, region: e, nodes: [{name: e1, cpus: 4, memory: 8}]}\n"
    "  - {name: west, region: w, nodes: [{name: w1, cpus: 4, memory: 8}]}\n"
)


def test_each_site_agent_is_its_own_process_with_its_own_home(tmp_path: Path) -> None:
    net = LocalNetwork(Settings(home=tmp_path, port=0, heartbeat_s=0.5), NETWORK)
    net.start()
    try:
        net.wait_online()
        assert sorted(a.site for a in net.agents) == ["east", "west"]
        pids = {a.proc.pid for a in net.agents}
        assert os.getpid() not in pids
        assert len(pids) == 2
        for a in net.agents:
            assert a.proc.poll() is None
            assert a.home == agent_home(tmp_path, a.site) == tmp_path / "agents" / a.site
            assert stat.S_IMODE((a.home / "site.token").stat().st_mode) == 0o600
            assert stat.S_IMODE(a.home.stat().st_mode) == 0o700
        with Client(net.url, token=net.admin_token) as client:
            job = client.submit(parse_job_spec("run: 'echo pid=$PPID dir=$PWD'\nplacement: {regions: [w]}\n"))
            deadline = time.monotonic() + 60
            while client.job(job.id).state.value != "SUCCEEDED":
                assert time.monotonic() < deadline, client.job(job.id)
                time.sleep(0.1)
            out = "".join(client.logs(job.id))
        assert f"dir={tmp_path / 'agents' / 'west'}/" in out
        assert not (tmp_path / "sites").exists()  # the old in-server layout is gone
    finally:
        net.stop()
    for a in net.agents:
        assert a.proc.returncode == 0, a.log_path.read_text()
        assert "stopped" in a.log_path.read_text()
