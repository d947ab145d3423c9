"""Following logs and agents' long polls cost no thread while they wait, and a tenant may hold
only so many log streams.

Before, each ``logs?follow=true`` held a worker thread for its whole life: past anyio's 40
threads the server stopped answering /healthz, other tenants and the agents (issue 16, item 3).
Against the real server on loopback, with a fake agent running the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx

from suanli.agent.agent import Agent
from suanli.agent.backends.fake import FakeBackend
from suanli.core.states import JobState
from tests.integration.conftest import Net

#: More than anyio's default worker-thread limit (40).
STREAMS = 60
SPEC = {"spec": {"name": "chatty", "run": "true", "resources": {"cpus": 1}}}


def streaming_client(net: Net, token: str, stack: ExitStack, *, cookie: bool = False) -> httpx.Client:
    """A client with a connection per stream (``cookie``: signed in to the dashboard too)."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {token}"}
    cookies = {"suanli_token": token} if cookie else None
    client = httpx.Client(base_url=net.url, headers=headers, cookies=cookies, limits=limits, timeout=10.0)
    return stack.enter_context(client)


def open_stream(client: httpx.Client, path: str, stack: ExitStack) -> httpx.Response:
    """Sends the request and returns once the answer's headers are in (the body streams on)."""
    response = client.send(client.build_request("GET", path), stream=True)
    stack.callback(response.close)
    return response


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def running_job(net: Net, token: str) -> tuple[str, Agent, FakeBackend, int]:
    agent, backend = net.fake_agent("beijing")
    with net.http_as(token) as http:
        submitted = http.post("/api/v1/jobs", json=SPEC)
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()["id"]
    net.pump(lambda: net.state(job) == JobState.RUNNING.value)
    return job, agent, backend, backend.started[0].attempt_id


def test_follow_streams_cost_no_thread_and_are_capped_per_tenant(net: Net) -> None:
    settings = net.control.settings
    bob = net.user("bob", tenant="bj-ai")
    eve = net.user("eve", tenant="rival")
    job, agent, backend, attempt = running_job(net, bob)
    follow = f"/api/v1/jobs/{job}/logs?follow=true"
    with ExitStack() as stack:
        # 60 streams (the admin's: a user without a tenant counts on its own), all waiting.
        settings.max_follows_per_tenant = STREAMS
        admin = streaming_client(net, net.admin_token, stack)
        streams = [open_stream(admin, follow, stack) for _ in range(STREAMS)]
        assert [s.status_code for s in streams] == [200] * STREAMS
        texts: list[Iterator[str]] = [s.iter_text() for s in streams]

        # The server still answers everyone at once: probes, another tenant, the agent.
        with httpx.Client(base_url=net.url, timeout=3.0) as probe:
            started = time.monotonic()
            assert probe.get("/healthz").status_code == 200
            listed = probe.get("/api/v1/jobs", headers={"Authorization": f"Bearer {eve}"})
            assert listed.status_code == 200, listed.text
            assert time.monotonic() - started < 3.0
        backend.emit(attempt, "hello\n")
        agent.step()  # the heartbeat carries the output; it wakes every stream
        assert [next(t) for t in texts] == ["hello\n"] * STREAMS

        # A tenant may hold 16: the 17th stream, API or dashboard, gets 429 with Retry-After.
        settings.max_follows_per_tenant = 16
        as_bob = streaming_client(net, bob, stack)
        bobs = [open_stream(as_bob, follow, stack) for _ in range(16)]
        assert [s.status_code for s in bobs] == [200] * 16
        refused = as_bob.get(follow)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"].startswith("tenant 'bj-ai' already follows 16 log streams")
        page = streaming_client(net, bob, stack, cookie=True)
        assert page.get(f"/jobs/{job}/logs/stream").status_code == 429
        assert as_bob.get(f"/api/v1/jobs/{job}/logs").status_code == 200  # reading without follow is not capped
        # Another tenant is not held back by bj-ai's streams.
        with net.http_as(eve) as http:
            theirs = http.post("/api/v1/jobs", json=SPEC).json()["id"]
        as_eve = streaming_client(net, eve, stack)
        assert open_stream(as_eve, f"/api/v1/jobs/{theirs}/logs?follow=true", stack).status_code == 200
        # A stream whose client went away is given back.
        bobs.pop().close()
        wait_until(lambda: net.control.follows.open("tenant:bj-ai") == 15)
        bobs.append(open_stream(as_bob, follow, stack))
        assert bobs[-1].status_code == 200

        # The job ends: every stream ends, with all the output.
        backend.emit(attempt, "bye\n")
        backend.finish(attempt)
        net.pump(lambda: net.state(job) == JobState.SUCCEEDED.value)
        assert ["".join(t) for t in texts] == ["bye\n"] * STREAMS
        assert {s.read().decode() for s in bobs} == {"hello\nbye\n"}
        wait_until(lambda: net.control.follows.open("tenant:bj-ai") == 0)
        assert page.get(f"/jobs/{job}/logs/stream").text == "hello\nbye\n"  # the dashboard's, the same text
    wait_until(lambda: net.control.follows.open("user:admin") == 0)
    wait_until(lambda: net.control.follows.open("tenant:bj-ai") == 0)


def test_agents_long_polls_hold_no_thread(net: Net) -> None:
    """60 heartbeats held open (``wait_s``) leave the server answering everyone; stopping the
    server ends them at once."""
    net.fake_agent("beijing")
    token = net.control.site_token_path("beijing").read_text().strip()
    beat = {"site": "beijing", "agent_id": "agent-beijing", "wait_s": 30}
    with ExitStack() as stack:
        agent = streaming_client(net, token, stack)
        pool = stack.enter_context(ThreadPoolExecutor(STREAMS))
        polls = [pool.submit(agent.post, "/api/v1/agents/heartbeat", json=beat) for _ in range(STREAMS)]
        wait_until(lambda: net.control.signals.waiting("site:beijing") == STREAMS)
        with httpx.Client(base_url=net.url, timeout=3.0) as probe:
            assert probe.get("/healthz").status_code == 200
            listed = probe.get("/api/v1/jobs", headers={"Authorization": f"Bearer {net.admin_token}"})
            assert listed.status_code == 200, listed.text
        net.control.stop()
        assert [p.result(timeout=10).status_code for p in polls] == [200] * STREAMS
