"""``image:`` through the real server and a real agent: the job runs in the locally built test
image, a missing image fails the job once (no retry storm), and sites that run no containers
are refused at placement with a reason ``suanli explain`` shows."""

from __future__ import annotations

from pathlib import Path

from suanli.core.spec import parse_job_spec
from tests.container_support import TEST_IMAGE_NAME, require_test_image
from tests.integration.conftest import Net, start_net


def test_job_runs_in_its_image_and_prints_the_images_os_release(net: Net) -> None:
    image = require_test_image()
    net.local_agent("beijing")
    job = net.client.submit(parse_job_spec(f"name: in-image\nimage: {image}\nrun: cat /etc/os-release; pwd\n"))
    net.pump(lambda: net.state(job.id) in ("SUCCEEDED", "FAILED"))
    done = net.client.job(job.id)
    logs = "".join(net.client.logs(job.id))
    assert done.state.value == "SUCCEEDED", (done.reason, logs)
    assert TEST_IMAGE_NAME in logs  # the image's /etc/os-release, not the host's
    assert "/workdir" in logs


def test_missing_image_fails_the_job_once_without_retries(net: Net) -> None:
    require_test_image()
    net.local_agent("beijing")
    job = net.client.submit(parse_job_spec("image: localhost/suanli-missing:9\nrun: echo never\nmax_retries: 5\n"))
    net.pump(lambda: net.state(job.id) in ("SUCCEEDED", "FAILED"))
    for _ in range(3):  # more passes place nothing new: no retry storm
        net.cycle()
    done = net.client.job(job.id)
    assert done.state.value == "FAILED"
    assert len(done.attempts) == 1
    assert "image localhost/suanli-missing:9 not found at site beijing" in done.reason
    assert "image localhost/suanli-missing:9 not found at site beijing" in "".join(net.client.logs(job.id))


NO_CONTAINERS = """\
regions: [tianjin]
sites:
  - name: tianjin-gaocun
    region: tianjin
    containers: false
    nodes: [{name: tj-01, cpus: 8, memory: 32}]
  - name: wuqing
    region: tianjin
    nodes: [{name: wq-01, cpus: 8, memory: 32}]
"""


def test_sites_that_run_no_containers_are_refused_and_explained(tmp_path: Path) -> None:
    """tianjin-gaocun declares `containers: false`; wuqing's agent (a fake backend, which has
    no container support) reports it runs none: an image job waits with both reasons."""
    with start_net(tmp_path, NO_CONTAINERS) as net:
        net.local_agent("tianjin-gaocun")
        net.fake_agent("wuqing")
        job = net.client.submit(parse_job_spec("image: localhost/suanli-test:1\nrun: echo hi\n"))
        plain = net.client.submit(parse_job_spec("run: echo plain\n"))
        for _ in range(3):
            net.cycle()
        waiting = net.client.job(job.id)
        assert waiting.state.value == "PENDING"
        assert "tianjin-gaocun runs no containers" in waiting.reason
        assert "wuqing runs no containers" in waiting.reason
        explained = {s.site: s for s in net.client.explain(job.id).sites}
        assert not explained["tianjin-gaocun"].allowed
        assert explained["tianjin-gaocun"].text.startswith("tianjin-gaocun runs no containers")
        assert net.state(plain.id) != "PENDING"  # jobs without an image still run there


def test_a_garbage_image_is_refused_at_submit(net: Net) -> None:
    response = net.http.post("/api/v1/jobs", json={"spec": {"run": "echo hi", "image": "UPPER/Case:1 --privileged"}})
    assert response.status_code == 422, response.text
    assert "is not an image reference" in response.json()["detail"]


def test_sites_listing_shows_who_runs_containers(tmp_path: Path) -> None:
    with start_net(tmp_path, NO_CONTAINERS) as net:
        shown = {s.name: s.containers for s in net.client.sites()}
        assert shown == {"tianjin-gaocun": False, "wuqing": True}  # declared; no agent has said otherwise
        net.fake_agent("wuqing")  # its agent registers saying it runs none
        assert {s.name: s.containers for s in net.client.sites()}["wuqing"] is False
