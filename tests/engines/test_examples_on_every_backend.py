"""The same examples run alike on all three backends: a real server, one agent per site, and the
site's engine — local processes, a real Slurm cluster, a real Ray cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.app.settings import Settings
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.launch.network import DEMO_ENGINES, LocalNetwork
from suanli.sdk import Client
from tests.engines_support import ray_problem, require_ray, require_slurm, slurm_problem

pytestmark = pytest.mark.engine

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SITES = {
    "local": "  - {name: at-local, region: r-local, backend: local,"
    " nodes: [{name: loc-01, gpus: H100:4, cpus: 8, memory: 32}]}",
    "slurm": "  - {name: at-slurm, region: r-slurm, backend: slurm}",
    "ray": "  - {name: at-ray, region: r-ray, backend: ray}",
}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalNetwork, Client]]:
    backends = ["local"] + [b for b, problem in (("slurm", slurm_problem()), ("ray", ray_problem())) if not problem]
    text = "regions: [r-local, r-slurm, r-ray]\nsites:\n" + "\n".join(SITES[b] for b in backends) + "\n"
    home = tmp_path_factory.mktemp("net")
    net = LocalNetwork(Settings(home=home, port=0, heartbeat_s=0.5), parse_network(text), engines=DEMO_ENGINES)
    net.start()
    try:
        net.wait_online(timeout=30)
        with Client(net.url, token=net.admin_token) as client:
            yield net, client
    finally:
        net.stop()


def _submit(client: Client, example: str, backend: str) -> str:
    path = EXAMPLES / example
    spec = parse_job_spec(path.read_text(encoding="utf-8"), str(path))
    spec = spec.model_copy(update={"placement": spec.placement.model_copy(update={"regions": [f"r-{backend}"]})})
    workdir = (path.parent / spec.workdir).resolve() if spec.workdir else None
    return client.submit(spec, workdir=workdir).id


def _wait_done(client: Client, job_id: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.state.value in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return job.state.value
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not end within {timeout:g}s: {client.job(job_id)}")


@pytest.mark.parametrize("backend", ["local", "slurm", "ray"])
def test_hello_and_train_run_on_each_backend(network: tuple[LocalNetwork, Client], backend: str) -> None:
    {"slurm": require_slurm, "ray": require_ray}.get(backend, lambda: None)()
    _, client = network
    hello = _submit(client, "hello.yaml", backend)
    train = _submit(client, "train.yaml", backend)
    assert _wait_done(client, hello) == "SUCCEEDED", "".join(client.logs(hello))
    job = client.job(hello)
    assert job.site == f"at-{backend}"
    out = "".join(client.logs(hello))
    assert f"hello from job {hello} (attempt 1) on node rank 0" in out
    assert "python 3." in out
    assert _wait_done(client, train) == "SUCCEEDED", "".join(client.logs(train))
    out = "".join(client.logs(train))
    assert "epoch" in out.lower(), out
