"""Requests through the front desk's relay to real replicas (the shipped test model, run by a
real agent with the local backend): the OpenAI routes and /serve/, streaming, a replica killed
under load, and who may call what."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from suanli.agent.service_link import ServiceLink
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net

SERVER = Path(__file__).resolve().parents[2] / "examples" / "serve" / "llm_server.py"


def spec(replicas: str, delay_ms: float = 0.0, extra: str = "") -> str:
    return f"""\
name: tiny-chat
run: exec {sys.executable} llm_server.py --model tiny-chat --token-delay-ms {delay_ms}
service:
  port: 8000
  readiness_probe: {{path: /health, timeout: 60}}
  replicas: {replicas}
{extra}"""


@pytest.fixture
def linked(net: Net, tmp_path: Path) -> Iterator[tuple[Net, Path]]:
    """``net`` with a local agent at beijing whose link to the front desk runs."""
    agent, _ = net.local_agent("beijing")
    token = net.control.site_token_path("beijing").read_text().strip()
    agent.service_link = ServiceLink(net.url, token, site="beijing")
    stop = threading.Event()
    thread = threading.Thread(target=agent.service_link.run, args=(stop,), daemon=True)
    thread.start()
    workdir = tmp_path / "model"
    workdir.mkdir()
    shutil.copy(SERVER, workdir / "llm_server.py")
    try:
        yield net, workdir
    finally:
        stop.set()
        agent.service_link.close()
        thread.join(timeout=5)


def _ready(net: Net, count: int) -> None:
    net.pump(lambda: net.client.service("tiny-chat").ready == count, timeout=30)


def chat(content: str, **extra: object) -> dict[str, object]:
    return {"model": "tiny-chat", "messages": [{"role": "user", "content": content}], "max_tokens": 6, **extra}


def test_openai_routes_and_serve_answer_through_the_relay(linked: tuple[Net, Path]) -> None:
    net, workdir = linked
    net.client.serve(parse_job_spec(spec("1")), workdir=workdir)
    _ready(net, 1)
    models = net.http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny-chat"]
    whole = net.http.post("/v1/chat/completions", json=chat("where is the gpu")).json()
    assert whole["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    direct = net.http.post("/serve/bj-ai/tiny-chat/v1/chat/completions", json=chat("where is the gpu")).json()
    assert direct["choices"] == whole["choices"]
    assert net.http.get("/serve/bj-ai/tiny-chat/health").status_code == 200
    with net.http.stream("POST", "/v1/chat/completions", json=chat("where is the gpu", stream=True)) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert len(events) >= 7  # a role chunk, six words, the end: one event each, passed through
    missing = net.http.post("/v1/chat/completions", json={**chat("x"), "model": "nope"})
    assert missing.status_code == 404
    assert "no running service of this tenant answers to model 'nope'" in missing.json()["error"]["message"]
    # Metered: four answered (two with usage: 5 prompt and 6 completion tokens each; the health
    # check has none, the stream did not ask for it), written by the next scheduling pass.
    net.cycle()
    shown = net.client.service("tiny-chat")
    assert (shown.requests, shown.prompt_tokens, shown.completion_tokens) == (4, 10, 12)
    [line] = net.http.get("/api/v1/usage", params={"by": "service"}).json()["items"]
    assert (line["service"], line["requests"], line["completion_tokens"]) == ("tiny-chat", 4, 12)


def test_killing_one_of_two_replicas_under_load_fails_no_request(linked: tuple[Net, Path]) -> None:
    net, workdir = linked
    net.client.serve(parse_job_spec(spec("2", delay_ms=2)), workdir=workdir)
    _ready(net, 2)
    first = net.client.service("tiny-chat").replicas[0]
    victim = first.job_id
    link = net.agents["beijing"].service_link
    assert link is not None
    assert first.attempt_id is not None
    port = link.port_of(first.attempt_id)
    assert port is not None
    pid = _server_pid(port)
    seen: set[str] = set()
    stop = threading.Event()
    pumper = threading.Thread(target=_keep_cycling, args=(net, stop), daemon=True)
    pumper.start()  # the agent heartbeats meanwhile, as its threads would

    def one(i: int) -> int:
        with httpx.Client(base_url=net.url, headers=net.http.headers, timeout=30) as http:
            r = http.post("/v1/chat/completions", json=chat(f"question {i}"))
            seen.add(r.headers.get("x-replica", ""))
            return r.status_code

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(one, i) for i in range(80)]
        while sum(f.done() for f in futures) < 20:
            threading.Event().wait(0.01)
        os.kill(pid, signal.SIGKILL)  # one replica dies in the middle of the load
        results = [f.result() for f in futures]
    stop.set()
    pumper.join()
    assert results == [200] * 80
    assert len(seen) >= 2  # both answered (and the replacement too, if it was ready in time)
    net.pump(lambda: net.state(victim) == "FAILED")
    _ready(net, 2)  # a new replica replaced it


def _server_pid(port: int) -> int:
    """The host pid of the test model listening on ``port`` (the job sees another, in its own
    PID namespace): the process whose command runs llm_server.py with ``PORT=port``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"llm_server.py" in cmdline and f"\0PORT={port}\0".encode() in b"\0" + environ:
            return int(entry.name)
    raise AssertionError(f"no test model listens on port {port}")


def _keep_cycling(net: Net, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        net.cycle()


def test_tenant_b_gets_404_and_an_invoke_token_cannot_submit(linked: tuple[Net, Path]) -> None:
    net, workdir = linked
    net.client.serve(parse_job_spec(spec("1")), workdir=workdir)
    _ready(net, 1)
    eve = net.user("eve", tenant="rival")
    alice = net.user("alice", tenant="bj-ai")
    with net.http_as(eve) as http:
        assert http.post("/serve/bj-ai/tiny-chat/v1/chat/completions", json=chat("hi")).status_code == 404
        assert http.post("/v1/chat/completions", json=chat("hi")).status_code == 404
        assert http.get("/v1/models").json()["data"] == []
    with net.http_as(alice) as http:
        app_token = http.post("/api/v1/tokens", json={"name": "app", "scopes": ["serve:invoke"]}).json()["token"]
    with net.http_as(app_token) as http:
        assert http.post("/v1/chat/completions", json=chat("hi")).status_code == 200
        refused = http.post("/api/v1/jobs", json={"spec": {"run": "true"}})
        assert refused.status_code == 403
        assert "jobs:write" in refused.text
    with net.http_as(net.admin_token) as http:
        reader = http.post("/api/v1/tokens", json={"name": "reader", "scopes": ["jobs:read"]}).json()["token"]
    with net.http_as(reader) as http:
        assert http.post("/v1/chat/completions", json=chat("hi")).status_code == 403


def test_scale_from_zero_on_the_first_request_and_back_after_idle_stop(linked: tuple[Net, Path]) -> None:
    net, workdir = linked
    out = net.client.serve(parse_job_spec(spec("{min: 0, max: 1}", extra="  idle_stop: 2\n")), workdir=workdir)
    assert out.desired == 0
    net.cycle()
    assert net.client.service("tiny-chat").replicas == []  # nothing runs until a request comes
    answers: list[int] = []

    def first_request() -> None:
        with httpx.Client(base_url=net.url, headers=net.http.headers, timeout=60) as http:
            answers.append(http.post("/v1/chat/completions", json=chat("wake up")).status_code)

    caller = threading.Thread(target=first_request)
    caller.start()
    net.pump(lambda: bool(answers), timeout=45)  # the request waits while a replica starts
    caller.join()
    assert answers == [200]
    assert net.client.service("tiny-chat").desired == 1
    net.cycle()  # the request is metered: its time is when the service was last used
    net.cycle()
    assert net.client.service("tiny-chat").desired == 1  # not idle yet
    net.clock.advance(3)
    net.pump(lambda: net.client.service("tiny-chat").replicas == [])
    assert net.client.service("tiny-chat").desired == 0
