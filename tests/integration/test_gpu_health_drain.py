"""GPU faults from NVML (a fake one) at real agents: the node is drained with the reason, its
attempt is stopped and runs again elsewhere, nothing new goes there; a hot GPU only keeps new
work off while it is hot."""

from __future__ import annotations

from pathlib import Path

from suanli.agent.fake_nvml import FakeNvml
from suanli.agent.nvml_health import NvmlHealth
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [tianjin]
sites:
  - name: site-a
    region: tianjin
    latency_ms: {tianjin: 0.2}
    nodes: [{name: node-a, gpus: H100:4, cpus: 8, memory: 32}]
  - name: site-b
    region: tianjin
    latency_ms: {tianjin: 0.2}
    nodes: [{name: node-b, gpus: H100:4, cpus: 8, memory: 32}]
tenants:
  - {name: tj-ai, home_region: tianjin}
"""

XID79 = "GPU 1: XID 79 (GPU has fallen off the bus)"


def ticking(net: Net, step_s: float = 2.0) -> bool:
    """Move the server's clock on a little (for ``pump``): retries wait out a back-off."""
    net.clock.advance(step_s)
    return True


def node_state(net: Net, name: str) -> tuple[str, str]:
    node = next(n for n in net.client.nodes() if n.name == name)
    return node.state, node.reason


def test_an_xid_79_under_load_drains_the_node_and_its_attempt_runs_elsewhere(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        fakes = {site: FakeNvml(4) for site in ("site-a", "site-b")}
        for site, fake in fakes.items():
            agent, _ = net.local_agent(site)
            agent.health = NvmlHealth(fake, interval_s=0)
        job = net.client.submit(parse_job_spec("run: sleep 60\nresources: {accelerators: H100:4}\n")).id
        net.pump(lambda: net.state(job) == "RUNNING")
        first = net.client.job(job).attempts[0]
        faulty = first.nodes[0].node
        healthy = "node-b" if faulty == "node-a" else "node-a"
        fakes[f"site-{faulty[-1]}"].xid(1, 79)

        net.pump(lambda: node_state(net, faulty)[0] == "drained")
        assert node_state(net, faulty) == ("drained", f"drained: {XID79} (drained automatically)")
        # the attempt on the failed node is stopped, recorded LOST, and (after the retry back-off,
        # on the server's clock) the job runs on the other node
        net.pump(lambda: ticking(net) and len(net.client.job(job).attempts) == 2 and net.state(job) == "RUNNING")
        out = net.client.job(job)
        assert out.attempts[0].state.value == "LOST"
        assert out.attempts[0].message == f"node {faulty} failed: {XID79}"
        assert out.attempts[1].nodes[0].node == healthy

        # nothing new goes to the drained node, though it has every GPU free
        later = net.client.submit(parse_job_spec("run: sleep 60\nresources: {accelerators: H100:1}\n")).id
        for _ in range(5):
            net.cycle()
        assert net.state(later) == "PENDING"
        assert not net.client.job(later).attempts
        assert node_state(net, faulty)[0] == "drained"

        # recovery: the GPU is reset and the agent restarted (it forgets the fault), then an
        # operator undrains the node
        net.client.undrain(faulty)
        net.cycle()
        assert node_state(net, faulty) == ("down", f"unhealthy: {XID79}")  # the agent still reports it
        net.agents[f"site-{faulty[-1]}"].health = NvmlHealth(FakeNvml(4), interval_s=0)
        net.pump(lambda: net.state(later) == "RUNNING")
        assert net.client.job(later).attempts[0].nodes[0].node == faulty


def test_a_hot_gpu_keeps_new_work_off_the_node_until_it_cools(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK) as net:
        fake = FakeNvml(4)
        agent, backend = net.fake_agent("site-a")
        agent.health = NvmlHealth(fake, interval_s=0)
        job = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:2}\n")).id
        net.cycle()
        net.cycle()
        assert net.state(job) == "RUNNING"

        fake.gpus[2].temperature = 94
        net.cycle()
        hot = "GPU 2 is hot: reached 94 °C (limit 90 °C)"
        assert node_state(net, "node-a") == ("down", f"unhealthy: {hot}")
        assert not backend.cancels  # what runs there keeps running
        later = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: H100:2}\n")).id
        net.cycle()
        net.cycle()
        assert net.state(later) == "PENDING"
        assert net.state(job) == "RUNNING"

        fake.gpus[2].temperature = 80  # cooled: back without an operator
        net.pump(lambda: net.state(later) == "RUNNING")
        assert node_state(net, "node-a") == ("allocated", "")
        assert net.client.job(later).attempts[0].nodes[0].node == "node-a"
