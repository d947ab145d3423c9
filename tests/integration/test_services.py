"""Service lifecycle: replicas are jobs the scheduler places, replaced when they end, scaled
and stopped through the API; a bad service: section is a 422 that names the field."""

from __future__ import annotations

import pytest

from suanli.core.spec import parse_job_spec
from suanli.sdk import ApiError
from tests.integration.conftest import Net

SPEC = """\
name: chat
run: python llm_server.py
service:
  port: 8000
  readiness_probe: {path: /health, timeout: 60}
  replicas: {min: 2, max: 4}
  target_queue_per_replica: 4
"""


def test_replicas_follow_the_count_and_are_replaced(net: Net) -> None:
    _, backend = net.fake_agent("beijing")
    out = net.client.serve(parse_job_spec(SPEC))
    assert (out.name, out.desired, out.endpoint, out.models) == ("chat", 2, "/serve/bj-ai/chat/", ["chat"])
    net.pump(lambda: [r.state for r in net.client.service("chat").replicas] == ["RUNNING", "RUNNING"])
    first, _ = net.client.service("chat").replicas
    assert first.site == "beijing"
    assert first.attempt_id is not None

    backend.finish(first.attempt_id, 1)  # the replica's process died: a new replica replaces it
    net.pump(lambda: first.job_id not in {r.job_id for r in net.client.service("chat").replicas})
    net.pump(lambda: [r.state for r in net.client.service("chat").replicas] == ["RUNNING", "RUNNING"])
    assert net.state(first.job_id) == "FAILED"

    scaled = net.client.scale_service("chat", 3)
    assert scaled.desired == 3
    with pytest.raises(ApiError, match="may have 2 to 4 replicas, not 5"):
        net.client.scale_service("chat", 5)
    # No request comes: the autoscaler (target_queue_per_replica) brings it back to min.
    net.pump(lambda: net.client.service("chat").desired == 2)
    net.pump(lambda: len(net.client.service("chat").replicas) == 2)
    with_json = net.http.get("/api/v1/services").json()["items"]
    assert [s["name"] for s in with_json] == ["chat"]

    stopped = net.client.stop_service("chat")
    assert stopped.state == "stopped"
    net.pump(lambda: net.client.service("chat").replicas == [])
    net.cycle()
    assert net.client.service("chat").replicas == []  # a stopped service makes no new replica


def test_a_bad_service_section_is_a_422_naming_it(net: Net) -> None:
    bad = {"name": "chat", "run": "x", "service": {"port": 8000, "replicas": {"min": 3, "max": 2}}}
    r = net.http.post("/api/v1/services", json={"spec": bad})
    assert r.status_code == 422
    assert "replicas.min (3) is more than replicas.max (2)" in r.text
    r = net.http.post("/api/v1/services", json={"spec": {"run": "x", "service": {"port": 8000}}})
    assert r.status_code == 422
    assert "a service needs a name" in r.text
    idle = {"name": "c", "run": "x", "service": {"port": 1, "replicas": 1, "idle_stop": "5m"}}
    r = net.http.post("/api/v1/services", json={"spec": idle})
    assert r.status_code == 422
    assert "idle_stop scales a service to zero" in r.text
    r = net.http.post("/api/v1/jobs", json={"spec": {"name": "c", "run": "x", "service": {"port": 8000}}})
    assert r.status_code == 422
    assert "suanli serve" in r.text
    r = net.http.post("/api/v1/services", json={"spec": {"name": "c", "run": "x"}})
    assert r.status_code == 422
    assert "no service: section" in r.text


def test_a_running_service_of_that_name_is_a_conflict(net: Net) -> None:
    net.client.serve(parse_job_spec(SPEC))
    with pytest.raises(ApiError, match="already runs") as caught:
        net.client.serve(parse_job_spec(SPEC))
    assert caught.value.status == 409
