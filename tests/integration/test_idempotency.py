"""Retried submissions make one job (issue 16, item 8): ``Idempotency-Key`` on POST /api/v1/jobs,
and the SDK's retries on connection errors."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from suanli.core.spec import parse_job_spec
from suanli.sdk import Client
from suanli.sdk.errors import ServerUnreachable
from tests.integration.conftest import Net, start_net


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with start_net(tmp_path_factory.mktemp("idempotency")) as network:
        yield network


def _body(name: str) -> dict[str, object]:
    return {"spec": {"name": name, "run": "true", "resources": {"cpus": 1}}}


def _count(net: Net, name: str) -> int:
    return len(net.client.jobs(name=name, limit=1000).items)


def test_a_retry_with_the_same_key_answers_the_first_job(net: Net) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = net.http.post("/api/v1/jobs", json=_body("once"), headers=key)
    again = net.http.post("/api/v1/jobs", json=_body("once"), headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert _count(net, "once") == 1
    # The IETF draft's structured-field form ("...") names the same key.
    quoted = net.http.post(
        "/api/v1/jobs", json=_body("once"), headers={"Idempotency-Key": f'"{key["Idempotency-Key"]}"'}
    )
    assert quoted.json()["id"] == first.json()["id"]
    # Without a key every submission is a new job, as before.
    net.http.post("/api/v1/jobs", json=_body("once"))
    assert _count(net, "once") == 2


def test_the_key_with_another_body_or_from_another_user_is_refused(net: Net) -> None:
    key = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    first = net.http.post("/api/v1/jobs", json=_body("first"), headers=key)
    other = net.http.post("/api/v1/jobs", json=_body("second"), headers=key)
    assert other.status_code == 422
    problem = other.json()
    assert "different request" in problem["detail"]
    assert first.json()["id"] in problem["detail"]
    assert _count(net, "second") == 0
    carol = net.user("carol", tenant="bj-ai")
    with net.http_as(carol) as c:
        # The admin's first job went to the default tenant (bj-ai): the key is taken there.
        taken = c.post("/api/v1/jobs", json=_body("first"), headers=key)
        assert taken.status_code == 422
        assert "another user" in taken.json()["detail"]
    for bad in (b"", b"has space", "é".encode("latin-1") * 3, b"x" * 256):
        answer = net.http.post("/api/v1/jobs", json=_body("bad-key"), headers={"Idempotency-Key": bad})
        assert answer.status_code == 422, bad
    assert _count(net, "bad-key") == 0


def test_keys_are_per_tenant(net: Net) -> None:
    key = {"Idempotency-Key": "shared-" + uuid.uuid4().hex}
    dave = net.user("dave", tenant="rival-a")
    erin = net.user("erin", tenant="rival-b")
    with net.http_as(dave) as d, net.http_as(erin) as e:
        one = d.post("/api/v1/jobs", json=_body("per-tenant"), headers=key)
        two = e.post("/api/v1/jobs", json=_body("per-tenant"), headers=key)
    assert one.status_code == two.status_code == 201
    assert one.json()["id"] != two.json()["id"]


def test_concurrent_duplicates_make_one_job(net: Net) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    ids: list[str] = []
    go = threading.Barrier(8)

    def send() -> None:
        with httpx.Client(base_url=net.url, headers=net.http.headers) as c:
            go.wait()
            answer = c.post("/api/v1/jobs", json=_body("racing"), headers=key)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == 8
    assert len(set(ids)) == 1
    assert _count(net, "racing") == 1


def test_keys_expire_after_24_hours(net: Net) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = net.http.post("/api/v1/jobs", json=_body("expiring"), headers=key).json()["id"]
    net.clock.advance(timedelta(hours=23).total_seconds())
    assert net.http.post("/api/v1/jobs", json=_body("expiring"), headers=key).json()["id"] == first
    assert net.control.sweep_idempotency_keys() == 0
    net.clock.advance(timedelta(hours=1, seconds=1).total_seconds())
    assert net.control.sweep_idempotency_keys() >= 1
    later = net.http.post("/api/v1/jobs", json=_body("expiring"), headers=key)
    assert later.status_code == 201
    assert later.json()["id"] != first
    # An expired key the sweep has not reached yet is free too.
    net.clock.advance(timedelta(hours=24, seconds=1).total_seconds())
    again = net.http.post("/api/v1/jobs", json=_body("expiring"), headers=key)
    assert again.status_code == 201
    assert again.json()["id"] not in (first, later.json()["id"])
    assert _count(net, "expiring") == 3


class LosesFirstReplies(httpx.BaseTransport):
    """The real server handles the request, then the connection drops before the reply (the
    retried-submit failure the issue saw); after ``losses`` replies it passes them on."""

    def __init__(self, losses: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.losses = losses
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path == "/api/v1/jobs":
            self.keys.append(request.headers.get("Idempotency-Key"))
            if self.losses:
                self.losses -= 1
                response.read()
                response.close()
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_the_sdk_retries_a_lost_reply_with_its_key_and_makes_one_job(net: Net) -> None:
    transport = LosesFirstReplies(losses=2)
    pauses: list[float] = []
    http = httpx.Client(base_url=net.url, transport=transport)
    with Client(net.url, token=net.admin_token, http=http, sleep=pauses.append) as client:
        job = client.submit(parse_job_spec("name: sdk-retry\nrun: 'true'\nresources: {cpus: 1}\n"))
    assert _count(net, "sdk-retry") == 1
    assert net.client.job(job.id).name == "sdk-retry"
    assert len(transport.keys) == 3
    assert len(set(transport.keys)) == 1
    assert transport.keys[0]
    assert pauses == [0.5, 1.0]


def test_the_sdk_gives_up_after_its_retries(net: Net) -> None:
    tries: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    pauses: list[float] = []
    http = httpx.Client(base_url=net.url, transport=httpx.MockTransport(refuse))
    client = Client(net.url, token="x", http=http, submit_retries=2, sleep=pauses.append)
    with client, pytest.raises(ServerUnreachable, match="cannot reach"):
        client.submit(parse_job_spec("run: 'true'\n"))
    assert len(tries) == 3
    assert pauses == [0.5, 1.0]
