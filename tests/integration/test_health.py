"""A node that fails the operator's health check is drained automatically, with the reason."""

from __future__ import annotations

from pathlib import Path

from suanli.agent.backends.fake import FakeBackend
from suanli.agent.health import HealthChecker
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net


def test_failed_health_check_drains_the_node_until_an_operator_undrains_it(net: Net, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    program = (
        f'if [ -f {flag} ] && [ "$SUANLI_NODE_NAME" = nx-02 ]; '
        'then echo "XID 79: GPU has fallen off the bus"; exit 1; fi'
    )
    decl = net.spec.site("ningxia")
    assert decl is not None
    agent = net.agent("ningxia", FakeBackend(decl.node_decls()))
    agent.health = HealthChecker(program, interval_s=0)
    net.cycle()
    assert {n.name: n.state for n in net.client.nodes(site="ningxia")}["nx-02"] == "idle"

    flag.write_text("")
    net.cycle()
    nodes = {n.name: n for n in net.client.nodes(site="ningxia")}
    assert nodes["nx-02"].state == "drained"
    assert nodes["nx-02"].reason == "drained: health check: XID 79: GPU has fallen off the bus (drained automatically)"
    assert nodes["nx-01"].state == "idle"

    # Four 8-GPU nodes, one drained: a 4-node gang waits, and says which node is out.
    job = net.client.submit(parse_job_spec("run: x\nresources: {accelerators: 910B:8, num_nodes: 4}\n"))
    net.cycle()
    assert "nx-02 drained: health check: XID 79" in net.client.job(job.id).reason

    flag.unlink()
    net.cycle()
    assert {n.name: n.state for n in net.client.nodes(site="ningxia")}["nx-02"] == "drained"  # stays out
    net.client.undrain("nx-02")
    net.cycle()
    assert net.state(job.id) in ("SCHEDULED", "RUNNING")


def test_attempts_on_a_failed_node_are_stopped_and_requeued(net: Net, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    decl = net.spec.site("ningxia")
    assert decl is not None
    backend = FakeBackend(decl.node_decls())
    agent = net.agent("ningxia", backend)
    check = f'[ -f {flag} ] && [ "$SUANLI_NODE_NAME" = nx-02 ] && echo "XID 79" && exit 1; true'
    agent.health = HealthChecker(check, 0)
    jobs = [net.client.submit(parse_job_spec("run: x\nresources: {accelerators: 910B:8}\n")).id for _ in range(4)]
    net.cycle()
    net.cycle()
    on_node = {net.client.job(j).attempts[0].nodes[0].node: j for j in jobs}
    victim = on_node["nx-02"]
    flag.write_text("")
    net.cycle()  # the node fails its check: drained, and its attempt is ordered to stop
    first = net.client.job(victim).attempts[0]
    assert backend.cancels
    assert backend.cancels[-1][0] == first.id
    net.cycle()  # the stopped attempt is reported: LOST (the platform's fault), job requeued
    out = net.client.job(victim)
    assert out.attempts[0].state.value == "LOST"
    assert out.attempts[0].message == "node nx-02 failed: health check: XID 79"
    assert out.state.value == "PENDING"
    assert all(net.state(j) == "RUNNING" for j in jobs if j != victim)


def test_a_restarted_server_gives_agents_a_lease_to_report_back(net: Net) -> None:
    net.fake_agent("beijing")
    job = net.client.submit(parse_job_spec("run: x\n"))
    net.cycle()
    net.cycle()
    assert net.state(job.id) == "RUNNING"
    net.clock.advance(120)  # the server was down for two minutes: no report could arrive
    assert net.control.renew_leases() == 1  # what a (re)starting server does first
    net.control.tick()
    assert net.state(job.id) == "RUNNING"
