"""The autoscaler's rule (core.services.wanted_replicas) and the service: section's checks."""

from __future__ import annotations

import pytest

from suanli.core.errors import SpecError
from suanli.core.services import Load, ServiceSpec, wanted_replicas
from suanli.core.spec import parse_job_spec


def svc(**fields: object) -> ServiceSpec:
    return ServiceSpec.model_validate({"port": 8000, **fields})


def test_scales_out_on_queue_depth_and_in_one_replica_a_pass() -> None:
    s = svc(replicas={"min": 1, "max": 4}, target_queue_per_replica=4)
    assert wanted_replicas(s, 1, Load(ready=1, in_flight=4, waiting=6), 0) == 3
    assert wanted_replicas(s, 3, Load(ready=3, in_flight=40), 0) == 4  # never beyond max
    assert wanted_replicas(s, 4, Load(ready=4), 0) == 3
    assert wanted_replicas(s, 1, Load(ready=1), 10_000) == 1  # never below min


def test_scales_on_tokens_per_second() -> None:
    s = svc(replicas={"min": 1, "max": 8}, target_tokens_per_s=500)
    assert wanted_replicas(s, 1, Load(ready=1, in_flight=2, tokens_per_s=1600), 0) == 4


def test_from_zero_on_a_waiting_request_and_to_zero_when_idle() -> None:
    s = svc(replicas={"min": 0, "max": 2}, target_queue_per_replica=4, idle_stop="10m")
    assert wanted_replicas(s, 0, Load(waiting=1), 3600) == 1
    assert wanted_replicas(s, 1, Load(ready=1), 599) == 1
    assert wanted_replicas(s, 1, Load(ready=1), 600) == 0
    assert wanted_replicas(s, 1, Load(ready=1, in_flight=1), 600) == 1  # a request in flight keeps it


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ("{port: 0}", "port"),
        ("{port: 80, replicas: {min: 0, max: 65}}", "replicas.max"),
        ("{port: 80, replicas: {min: 1, max: 3}}", "say what to scale on"),
        ("{port: 80, replicas: 2, target_queue_per_replica: 1, target_tokens_per_s: 1}", "not both"),
        ("{port: 80, readiness_probe: health}", "readiness_probe.path must be a URL path"),
        ("{port: 80, replicas: 1, idle_stop: 5m}", "needs replicas.min: 0"),
    ],
)
def test_bad_sections_name_the_field(section: str, words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_job_spec(f"name: s\nrun: x\nservice: {section}\n")


def test_a_service_takes_no_array_and_not_network_none() -> None:
    with pytest.raises(SpecError, match="no array"):
        parse_job_spec("name: s\nrun: x\narray: 0-3\nservice: {port: 80}\n")
    with pytest.raises(SpecError, match="network: none"):
        parse_job_spec("name: s\nrun: x\nnetwork: none\nservice: {port: 80}\n")
