"""The API survives hostile input: every refusal is a 4xx RFC 9457 problem document that says
what was wrong, never a 500 and never a stack trace. Against the real server on loopback."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Iterator
from typing import Any

import httpx

from tests.integration.conftest import Net

PROBLEM = "application/problem+json"
JSON = {"content-type": "application/json"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    assert "Traceback" not in response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


def chunked(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body without Content-Length: httpx sends it with Transfer-Encoding: chunked."""
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


def tar_gz(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else info.size
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    return info


def test_malformed_bodies_wrong_types_and_bad_requests(net: Net) -> None:
    http = net.http
    for raw in (b"{not json", b'{"spec": {"run": "x"}', b"\xff\xfe\x00", b""):
        body = assert_problem(http.post("/api/v1/jobs", content=raw, headers=JSON), 422)
        assert "JSON" in body["detail"], body
    for raw, field in ((b"[]", ""), (b'{"spec": 5}', "spec"), (b'{"tenant": "bj-ai"}', "spec")):
        body = assert_problem(http.post("/api/v1/jobs", content=raw, headers=JSON), 422)
        assert body["detail"].startswith(f"{field}: " if field else "Input should be"), body
    body = assert_problem(http.post("/api/v1/jobs", json={"spec": {"name": "x"}}), 422)
    assert "run" in body["detail"]
    body = assert_problem(http.post("/api/v1/jobs", json={"spec": {"run": "x", "envs": {"A": "a\0b"}}}), 422)
    assert "NUL" in body["detail"]
    # Nesting deeper than any parser should follow: refused, not a recursion error.
    assert_problem(http.post("/api/v1/jobs", content=b'{"spec": ' + b"[" * 100_000, headers=JSON), 422)
    deep = http.post("/api/v1/tariffs", content=b"[" * 100_000, headers=JSON)
    assert 400 <= deep.status_code < 500
    assert deep.headers["content-type"] == PROBLEM
    # FastAPI-parsed bodies too.
    assert "JSON" in assert_problem(http.post("/api/v1/tariffs", content=b"{oops", headers=JSON), 422)["detail"]

    # A body that is not JSON at all.
    for kind in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; b=1"):
        response = http.post("/api/v1/jobs", content=b'{"spec": {"run": "x"}}', headers={"content-type": kind})
        body = assert_problem(response, 415)
        assert "application/json" in body["detail"]

    assert_problem(http.get("/api/v1/jobs", params={"limit": "lots"}), 422)
    assert_problem(http.get("/api/v1/jobs", params={"cursor": "\x00' OR 1=1 --"}), 422)
    assert_problem(http.delete("/api/v1/jobs"), 405)
    assert_problem(http.get("/api/v1/no-such-thing"), 404)
    # A NUL is refused at the door on every database (PostgreSQL cannot compare one in text).
    assert_problem(http.get("/api/v1/jobs/%00%ff..%2f..%2fetc%2fpasswd"), 422)
    assert_problem(http.get("/api/v1/jobs", params={"site": "bei\x00jing"}), 422)
    assert_problem(http.get("/api/v1/jobs/%ff..%2f..%2fetc%2fpasswd"), 404)
    nul_name = http.post("/api/v1/jobs", json={"spec": {"name": "a\x00b", "run": "true"}})
    assert_problem(nul_name, 422)
    assert_problem(http.get("/api/v1/workdirs/../../etc/passwd"), 404)


def test_huge_bodies_headers_and_paths(net: Net) -> None:
    http = net.http
    five_mib = b"{" + b" " * (5 * 2**20) + b"}"
    body = assert_problem(http.post("/api/v1/jobs", content=five_mib, headers=JSON), 413)
    assert body["detail"] == "the request body is 5 MiB, over the 4 MiB limit"
    body = assert_problem(http.post("/api/v1/jobs", content=chunked(5 * 2**20), headers=JSON), 413)
    assert body["detail"] == "the request body goes over the 4 MiB limit"
    # The connection is still good for the next request.
    assert http.get("/api/v1/jobs").status_code == 200

    body = assert_problem(http.get("/api/v1/jobs", headers={"x-junk": "a" * 100_000}), 431)
    assert "64 KiB" in body["detail"]
    assert_problem(http.get("/healthz", headers={f"x-h{i}": "v" * 100 for i in range(800)}), 431)
    assert_problem(http.get("/api/v1/jobs/" + "a" * 60_000), 404)
    listed = http.get("/api/v1/jobs", params={"name": "n" * 30_000})
    assert listed.status_code == 200
    assert listed.json()["items"] == []


def test_workdir_upload_has_its_own_limits(net: Net) -> None:
    http = net.http
    settings = net.control.settings
    settings.max_body_bytes = 64 * 1024  # the generic limit does not apply to the upload route
    settings.max_workdir_bytes = 256 * 1024
    settings.max_workdir_unpacked_bytes = 2**20
    gz = {"content-type": "application/gzip"}

    incompressible = random.Random(7).randbytes(150 * 1024)  # gzip cannot shrink it
    fine = tar_gz((entry("src", tarfile.DIRTYPE), None), (entry("src/blob.bin"), incompressible))
    assert len(fine) > settings.max_body_bytes
    created = http.post("/api/v1/workdirs", content=fine, headers=gz)
    assert created.status_code == 201, created.text
    assert created.json()["size"] == len(fine)

    body = assert_problem(http.post("/api/v1/workdirs", content=b"x" * 300 * 1024, headers=gz), 413)
    assert body["detail"].startswith("the workdir archive is 0.3 MiB, over the")
    body = assert_problem(http.post("/api/v1/workdirs", content=chunked(300 * 1024, 16 * 1024), headers=gz), 413)
    assert "workdir archive is over" in body["detail"]

    bomb = tar_gz((entry("zeros.bin"), bytes(4 * 2**20)))
    assert len(bomb) < settings.max_workdir_bytes
    body = assert_problem(http.post("/api/v1/workdirs", content=bomb, headers=gz), 422)
    assert body["detail"] == (
        "the workdir archive unpacks to more than 1 MiB (at zeros.bin); leave data out of the workdir"
    )
    cases = {
        "../escape.sh": "climbs out of its folder ('..'): ../escape.sh",
        "/etc/cron.d/evil": "an absolute one: /etc/cron.d/evil",
    }
    for name, expected in cases.items():
        archive = tar_gz((entry(name), b"echo hi"))
        assert expected in assert_problem(http.post("/api/v1/workdirs", content=archive, headers=gz), 422)["detail"]
    link = tar_gz((entry("passwd", tarfile.SYMTYPE, linkname="/etc/passwd"), None))
    body = assert_problem(http.post("/api/v1/workdirs", content=link, headers=gz), 422)
    assert body["detail"] == "the workdir archive may not hold links; passwd is a symbolic link to /etc/passwd"
    assert_problem(http.post("/api/v1/workdirs", content=b"\x1f\x8b garbage", headers=gz), 422)
    # Nothing of the refused uploads is left behind.
    assert [p.name for p in settings.blob_dir.iterdir() if p.name.startswith(".upload-")] == []


def test_rate_limit_per_token(net: Net) -> None:
    bob = net.user("bob", tenant="bj-ai")
    settings = net.control.settings
    settings.rate_limit_per_s = 0.01
    settings.rate_limit_burst = 5
    with net.http_as(bob) as as_bob, net.http_as(None) as anonymous:
        assert [as_bob.get("/api/v1/jobs").status_code for _ in range(5)] == [200] * 5
        refused = as_bob.get("/api/v1/jobs")
        body = assert_problem(refused, 429)
        assert refused.headers["retry-after"].isdigit()
        assert int(refused.headers["retry-after"]) >= 1
        assert body["detail"].startswith("this API token sent more than 0.01 requests per second")
        # The admin's token has its own bucket; agents have a limit of their own (test_rate_limits.py);
        # health checks and scrapers are never held back.
        assert net.http.get("/api/v1/jobs").status_code == 200
        for _ in range(10):
            heartbeat = anonymous.post("/api/v1/agents/heartbeat", json={})
            assert heartbeat.status_code in (401, 422), heartbeat.text
            assert heartbeat.headers["content-type"] == PROBLEM
            assert anonymous.get("/healthz").status_code == 200
        settings.rate_limit_per_s = 0  # off, at once
        assert as_bob.get("/api/v1/jobs").status_code == 200
