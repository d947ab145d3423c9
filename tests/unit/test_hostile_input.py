"""Hostile input, refused early and in words: request limits (body size, headers, content type,
rate per token), workdir archives (paths, links, devices, bombs), job spec bounds, YAML bombs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import re
import tarfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from suanli.app.errors import TooLarge, Unprocessable
from suanli.app.settings import Settings
from suanli.app.workdirs import Receiver, check_archive
from suanli.core import yamldoc
from suanli.core.errors import SpecError
from suanli.core.spec import job_spec_from_data, parse_job_spec
from suanli.core.yamldoc import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, load_yaml
from suanli.server.limits import MAX_HEADER_BYTES, LimitsMiddleware, RateLimiter, install_limits, rate_key

# --- the rate limiter -------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_sustained_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    assert [limiter.take("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("k", 2.0, 3)
    assert wait == pytest.approx(0.5)  # one token refills in 1/rate seconds
    clock.now += 0.5
    assert limiter.take("k", 2.0, 3) == 0.0
    assert limiter.take("k", 2.0, 3) > 0
    clock.now += 100  # refills up to the burst, no further
    assert [limiter.take("k", 2.0, 3) for _ in range(4)].count(0.0) == 3


def test_buckets_are_per_key() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert limiter.take("a", 1.0, 1) == 0.0
    assert limiter.take("a", 1.0, 1) > 0
    assert limiter.take("b", 1.0, 1) == 0.0


def test_bucket_table_is_bounded_and_forgets_the_least_recently_used() -> None:
    limiter = RateLimiter(max_keys=100, clock=FakeClock())
    limiter.take("hot", 1.0, 1)
    for i in range(1000):
        limiter.take(f"k{i}", 1.0, 1)
        limiter.take("hot", 1.0, 1)  # kept fresh: never evicted, never refilled
    assert len(limiter) == 100
    assert limiter.take("hot", 1.0, 1) > 0
    assert limiter.take("k0", 1.0, 1) == 0.0  # evicted long ago: a fresh (full) bucket


def test_limiter_is_exact_under_threads() -> None:
    limiter = RateLimiter(clock=FakeClock())  # frozen clock: exactly the burst gets through
    allowed = [0] * 8

    def hammer(i: int) -> None:
        for _ in range(1000):
            if limiter.take("shared", 10.0, 500) == 0.0:
                allowed[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 500


def test_rate_key_hashes_the_token_and_falls_back_to_the_address() -> None:
    scope: dict[str, Any] = {"client": ("10.1.2.3", 5555)}
    key = rate_key(scope, b"Bearer s3cret-token")
    assert key == "token:" + hashlib.sha256(b"s3cret-token").hexdigest()
    assert "s3cret" not in key
    assert rate_key(scope, b"bearer s3cret-token") == key
    assert rate_key(scope, None) == "addr:10.1.2.3"
    assert rate_key(scope, b"Basic dXNlcjpwYXNz") == "addr:10.1.2.3"
    assert rate_key(scope, b"Bearer   ") == "addr:10.1.2.3"
    assert rate_key({"client": None}, None) == "addr:unknown"


# --- the middleware, on a small app -----------------------------------------------------------


class Thing(BaseModel):
    name: str


def small_app(settings: Settings, clock: FakeClock | None = None) -> FastAPI:
    app = FastAPI()

    @app.post("/api/v1/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/api/v1/things")
    def things(thing: Thing) -> dict[str, str]:
        return {"name": thing.name}

    @app.post("/api/v1/workdirs")
    async def upload(request: Request) -> dict[str, int]:
        size = 0
        async for data in request.stream():
            size += len(data)
        return {"size": size}

    @app.get("/api/v1/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/api/v1/agents/heartbeat")
    def heartbeat() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if clock is None:
        install_limits(app, settings)
    else:
        app.add_middleware(LimitsMiddleware, settings=settings, limiter=RateLimiter(clock=clock))
    return app


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"max_body_bytes": 1024, "rate_limit_per_s": 0.0, "rate_limit_burst": 1}
    return Settings(home=tmp_path, **{**base, **kw})


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= {"type", "title", "status", "detail"}
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    """A body without Content-Length (sent chunked)."""
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


class Caller:
    """Requests straight into the ASGI app (no sockets), one event loop per request, in a thread
    of its own (the browser tests' Playwright keeps a loop running in the main thread)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, path, **kw)

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


def test_body_over_the_limit_is_refused_by_content_length(tmp_path: Path) -> None:
    client = Caller(small_app(settings(tmp_path)))
    ok = client.post("/api/v1/echo", content=b"{" + b" " * 1000 + b"}", headers={"content-type": "application/json"})
    assert ok.json() == {"size": 1002}
    big = client.post("/api/v1/echo", content=b"x" * 2000, headers={"content-type": "application/json"})
    body = assert_problem(big, 413)
    assert body["detail"] == "the request body is 2 KiB, over the 1 KiB limit"


def test_streamed_body_over_the_limit_is_refused_as_it_arrives(tmp_path: Path) -> None:
    client = Caller(small_app(settings(tmp_path)))
    under = client.post("/api/v1/echo", content=chunks(1000))
    assert under.json() == {"size": 1000}
    for path in ("/api/v1/echo", "/api/v1/things"):  # a hand-read body, a FastAPI model body
        response = client.post(path, content=chunks(5000), headers={"content-type": "application/json"})
        body = assert_problem(response, 413)
        assert body["detail"] == "the request body goes over the 1 KiB limit"


def test_the_workdir_upload_is_left_to_its_own_limit(tmp_path: Path) -> None:
    client = Caller(small_app(settings(tmp_path)))
    sized = client.post("/api/v1/workdirs", content=b"x" * 5000, headers={"content-type": "application/gzip"})
    assert sized.json() == {"size": 5000}
    streamed = client.post("/api/v1/workdirs", content=chunks(5000))
    assert streamed.json() == {"size": 5000}


def test_limits_are_read_from_the_settings_on_each_request(tmp_path: Path) -> None:
    s = settings(tmp_path)
    client = Caller(small_app(s))
    assert client.post("/api/v1/echo", content=b"x" * 2000).status_code == 413
    s.max_body_bytes = 4096
    assert client.post("/api/v1/echo", content=b"x" * 2000).json() == {"size": 2000}


def test_non_json_bodies_to_the_api_are_refused(tmp_path: Path) -> None:
    client = Caller(small_app(settings(tmp_path)))
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        response = client.post("/api/v1/echo", content=b'{"name": "a"}', headers={"content-type": kind})
        body = assert_problem(response, 415)
        assert "Content-Type: application/json" in body["detail"]
    for kind in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        ok = client.post("/api/v1/things", content=b'{"name": "a"}', headers={"content-type": kind})
        assert ok.json() == {"name": "a"}
    assert client.post("/api/v1/echo").json() == {"size": 0}  # no body: no type needed


def test_huge_headers_are_refused(tmp_path: Path) -> None:
    client = Caller(small_app(settings(tmp_path)))
    body = assert_problem(client.get("/api/v1/ping", headers={"x-big": "a" * (MAX_HEADER_BYTES + 1)}), 431)
    assert "64 KiB" in body["detail"]
    many = {f"x-h{i}": "v" * 100 for i in range(1000)}
    assert_problem(client.get("/healthz", headers=many), 431)


def test_over_the_rate_429_with_retry_after(tmp_path: Path) -> None:
    clock = FakeClock()
    s = settings(tmp_path, rate_limit_per_s=0.5, rate_limit_burst=3)
    client = Caller(small_app(s, clock))
    alice = {"Authorization": "Bearer alice-token"}
    assert [client.get("/api/v1/ping", headers=alice).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/api/v1/ping", headers=alice)
    body = assert_problem(refused, 429)
    assert refused.headers["retry-after"] == "2"  # one token per 2 s
    assert body["detail"] == ("this API token sent more than 0.5 requests per second (bursts up to 3); retry after 2 s")
    # Another token, the anonymous client, the agent protocol and the health check are not held back.
    assert client.get("/api/v1/ping", headers={"Authorization": "Bearer bob-token"}).status_code == 200
    assert client.get("/api/v1/ping").status_code == 200
    for _ in range(10):
        assert client.get("/api/v1/agents/heartbeat", headers=alice).status_code == 200
        assert client.get("/healthz", headers=alice).status_code == 200
    clock.now += 2.0
    assert client.get("/api/v1/ping", headers=alice).status_code == 200


def test_anonymous_clients_share_their_address_bucket(tmp_path: Path) -> None:
    s = settings(tmp_path, rate_limit_per_s=0.001, rate_limit_burst=2)
    client = Caller(small_app(s, FakeClock()))
    assert [client.get("/api/v1/ping").status_code for _ in range(3)] == [200, 200, 429]
    refused = client.get("/api/v1/ping")
    assert "this client address" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1


def test_rate_zero_turns_the_limit_off(tmp_path: Path) -> None:
    s = settings(tmp_path, rate_limit_per_s=0.0, rate_limit_burst=1)
    client = Caller(small_app(s, FakeClock()))
    assert {client.get("/api/v1/ping").status_code for _ in range(50)} == {200}


def test_settings_read_rate_limits_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANLI_RATE_LIMIT", raising=False)
    monkeypatch.delenv("SUANLI_RATE_BURST", raising=False)
    s = Settings(home=tmp_path)
    assert (s.rate_limit_per_s, s.rate_limit_burst, s.max_body_bytes) == (100.0, 1000, 4 * 2**20)
    assert s.max_workdir_unpacked_bytes == 2**30
    monkeypatch.setenv("SUANLI_RATE_LIMIT", "0")
    monkeypatch.setenv("SUANLI_RATE_BURST", "20")
    monkeypatch.setenv("SUANLI_MAX_WORKDIR_UNPACKED_MB", "10")
    s = Settings(home=tmp_path)
    assert (s.rate_limit_per_s, s.rate_limit_burst, s.max_workdir_unpacked_bytes) == (0.0, 20, 10 * 2**20)


# --- workdir archives -------------------------------------------------------------------------


class Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        k = min(len(buffer), self.n)
        buffer[:k] = bytes(k)
        self.n -= k
        return k


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **attrs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def archive(tmp_path: Path, *members: tuple[tarfile.TarInfo, Any]) -> Path:
    path = tmp_path / f"a{time.monotonic_ns()}.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return path


def refusal(path: Path, **limits: int) -> str:
    with pytest.raises(Unprocessable) as info:
        check_archive(path, **limits)
    assert info.value.status == 422
    return info.value.detail


def test_a_plain_tree_of_files_and_folders_passes(tmp_path: Path) -> None:
    check_archive(
        archive(
            tmp_path,
            (member(".", tarfile.DIRTYPE), None),
            (member("./src", tarfile.DIRTYPE), None),
            (member("./src/train.py", size=5), io.BytesIO(b"print")),
            (member("./odd name\\with backslash.txt"), None),
        )
    )


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (member("/etc/cron.d/x"), "an absolute one: /etc/cron.d/x"),
        (member("C:\\Windows\\x.dll"), "an absolute one: C:\\Windows\\x.dll"),
        (member("\\\\server\\share\\x"), "an absolute one: \\\\server\\share\\x"),
        (member("a/../../etc/x"), "climbs out of its folder ('..'): a/../../etc/x"),
        (member("..\\..\\x"), "climbs out of its folder ('..'): ..\\..\\x"),
        (member("x", pax_headers={"path": "ok\x00/../../etc/x"}), "a NUL character: 'ok\\x00/../../etc/x'"),
        (member("link", tarfile.SYMTYPE, linkname="/etc/passwd"), "link is a symbolic link to /etc/passwd"),
        (member("hard", tarfile.LNKTYPE, linkname="src/a"), "hard is a hard link to src/a"),
        (member("tty", tarfile.CHRTYPE), "may not hold device files; tty is one"),
        (member("sda", tarfile.BLKTYPE), "may not hold device files; sda is one"),
        (member("pipe", tarfile.FIFOTYPE), "may not hold named pipes (FIFOs); pipe is one"),
        (member("vol", b"V"), "may hold only files and folders; vol is neither"),
    ],
)
def test_unsafe_members_are_refused_by_name(tmp_path: Path, info: tarfile.TarInfo, expected: str) -> None:
    assert expected in refusal(archive(tmp_path, (member("fine.txt"), None), (info, None)))


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    sparse = member("holes", size=0, pax_headers={"GNU.sparse.map": "0,0", "GNU.sparse.size": "1000000000000"})
    assert "may not hold sparse files; holes is one" in refusal(archive(tmp_path, (sparse, None)))


def test_too_many_members(tmp_path: Path) -> None:
    path = archive(tmp_path, *[(member(f"f{i}"), None) for i in range(11)])
    assert refusal(path, max_members=10) == (
        "the workdir archive has more than 10 files and folders (at f10); pack fewer"
    )
    check_archive(path, max_members=11)


def test_decompression_bomb_is_stopped_at_the_limit(tmp_path: Path) -> None:
    size = 64 * 2**20  # 64 MiB of zeros gzip to ~64 KiB
    path = archive(tmp_path, (member("zeros.bin", size=size), Zeros(size)))
    assert path.stat().st_size < 2**20
    started = time.monotonic()
    detail = refusal(path, max_unpacked=2**20)
    assert time.monotonic() - started < 0.5  # stopped before inflating the 64 MiB
    assert detail == "the workdir archive unpacks to more than 1 MiB (at zeros.bin); leave data out of the workdir"


def test_many_small_members_add_up_to_the_limit(tmp_path: Path) -> None:
    path = archive(tmp_path, *[(member(f"f{i}", size=300_000), Zeros(300_000)) for i in range(5)])
    assert "unpacks to more than 1 MiB (at f3)" in refusal(path, max_unpacked=2**20)
    check_archive(path, max_unpacked=2 * 2**20)


def test_a_huge_header_is_not_read_into_memory(tmp_path: Path) -> None:
    path = archive(tmp_path, (member("x", pax_headers={"comment": "y" * (2 * 2**20)}), None))
    assert "tar header larger than 1 MiB" in refusal(path)


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    assert refusal(junk).startswith("the workdir is not a gzip'd tar archive")
    whole = archive(tmp_path, (member("a.txt", size=5000), io.BytesIO(b"a" * 5000))).read_bytes()
    junk.write_bytes(whole[: len(whole) // 2])
    assert refusal(junk).startswith("the workdir is not a gzip'd tar archive")


def test_receiver_counts_streamed_bytes_and_cleans_up(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path, limit=1000)
    receiver.write(b"x" * 600)
    with pytest.raises(TooLarge):
        receiver.write(b"x" * 600)
    assert list(tmp_path.iterdir()) == []


def test_receiver_refuses_a_bomb_and_keeps_nothing(tmp_path: Path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    data = archive(tmp_path, (member("zeros.bin", size=8 * 2**20), Zeros(8 * 2**20))).read_bytes()
    receiver = Receiver(blobs, limit=2**20, unpacked_limit=2**20)
    receiver.write(data)
    with pytest.raises(Unprocessable):
        receiver.finish()
    assert list(blobs.iterdir()) == []


# --- job spec bounds --------------------------------------------------------------------------


def spec_errors(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_job_spec(text, "job.yaml")
    return str(info.value)


def test_label_keys_follow_kubernetes() -> None:
    ok = parse_job_spec("run: x\nlabels: {team: a, example.com/team: b, app.kubernetes.io/name: c, A_b.9: d}\n")
    assert set(ok.labels) == {"team", "example.com/team", "app.kubernetes.io/name", "A_b.9"}
    for key in ("bad key", "-a", "a-", "Example.com/a", "example.com/", "/a", "a/b/c", "x" * 64, "é"):
        text = spec_errors(f'run: x\nlabels:\n  "{key}": v\n')
        assert text.startswith("job.yaml:2: labels: "), text
        assert "is not a valid label key" in text


def test_label_values_and_count_are_bounded() -> None:
    assert "a label's value may be at most 256 characters" in spec_errors(f"run: x\nlabels: {{a: {'v' * 257}}}\n")
    assert "may not hold control characters" in spec_errors('run: x\nlabels: {a: "x\\ny"}\n')
    many = ", ".join(f"k{i}: v" for i in range(65))
    assert "job.yaml:2: labels: at most 64 labels, not 65" in spec_errors(f"run: x\nlabels: {{{many}}}\n")
    parse_job_spec(f"run: x\nlabels: {{a: {'v' * 256}}}\n")


def test_env_names_values_and_count_are_bounded() -> None:
    assert "'1A' is not a valid environment variable name" in spec_errors("run: x\nenvs: {1A: b}\n")
    assert "'A-B' is not a valid environment variable name" in spec_errors("run: x\nenvs: {A-B: b}\n")
    assert "job.yaml:2: envs: 'A': the value has a NUL character" in spec_errors('run: x\nenvs: {A: "a\\0b"}\n')
    big = "v" * (32 * 1024 + 1)
    assert "'A': a value may be at most 32 KiB" in spec_errors(f"run: x\nenvs: {{A: {big}}}\n")
    many = {f"V{i}": "1" for i in range(257)}
    with pytest.raises(SpecError) as info:
        job_spec_from_data({"run": "x", "envs": many})
    assert "at most 256 environment variables, not 257" in str(info.value)
    assert len(job_spec_from_data({"run": "x", "envs": dict(list(many.items())[:256])}).envs) == 256


def test_run_and_setup_are_bounded() -> None:
    long = "echo " + "a" * (64 * 1024)
    assert "job.yaml:1: run: the command is 64 KiB; it may be at most 64 KiB" in spec_errors(f"run: {long}\n")
    assert "job.yaml:2: setup: the command is" in spec_errors(f"run: x\nsetup: {long}\n")
    assert "job.yaml:1: run: the command has a NUL character" in spec_errors('run: "a\\0b"\n')
    parse_job_spec(f"run: {'a' * (64 * 1024)}\n")


# --- YAML bombs -------------------------------------------------------------------------------

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
run: echo
"""


def yaml_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_yaml(text, "job.yaml")
    return str(info.value)


def test_billion_laughs_is_refused_fast() -> None:
    started = time.monotonic()
    assert yaml_error(BILLION_LAUGHS) == "job.yaml:1: YAML anchors ('&name') are not allowed"
    without_anchors = re.sub(r"&[a-z] ", "", BILLION_LAUGHS)
    assert yaml_error(without_anchors) == "job.yaml:2: YAML aliases ('*name') are not allowed"
    assert "merge keys" in yaml_error("run: x\n<<: {a: 1}\n")
    assert time.monotonic() - started < 1.0


def test_deep_nesting_is_refused_before_python_recursion() -> None:
    assert yaml_error("run: " + "[" * 5000) == f"job.yaml:1: the document nests deeper than {MAX_DEPTH} levels"
    nested = "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80))
    assert f"nests deeper than {MAX_DEPTH} levels" in yaml_error(nested)
    load_yaml("a: " + "[" * 60 + "]" * 60)


def test_too_many_nodes_and_too_many_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert MAX_NODES == 100_000
    monkeypatch.setattr(yamldoc, "MAX_NODES", 1000)  # the same check, without parsing 100k values
    assert "more than 1,000 values" in yaml_error("x: [" + ",".join(["1"] * 1000) + "]")
    load_yaml("x: [" + ",".join(["1"] * 997) + "]")  # the mapping, its key, the list and 997 items
    assert "larger than 1024 KiB" in yaml_error("run: " + "a" * MAX_DOCUMENT_BYTES)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run: x\nname: !foo x\n", "job.yaml:2: name: this value cannot be read: could not determine a constructor"),
        ("run: !!python/object:os.system x\n", "job.yaml:1: run: this value cannot be read: could not determine"),
        ("run: x\nlabels:\n  when: 2026-13-45\n", "job.yaml:3: labels.when: this value cannot be read: month must be"),
        ("run: x\nmax_retries: !!int abc\n", "job.yaml:2: max_retries: this value cannot be read: invalid literal"),
    ],
)
def test_unreadable_yaml_values_are_spec_errors(text: str, expected: str) -> None:
    assert yaml_error(text).startswith(expected)
