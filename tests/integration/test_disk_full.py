"""A full disk answers 507 with a problem document and loses nothing it acknowledged; every 5xx
closes the connection (issue 16, item 7). The failures are real: SQLite refusing to grow past
``PRAGMA max_page_count`` (SQLITE_FULL), and a 1 MiB tmpfs under the blob store (ENOSPC).

The tmpfs needs root (mount); elsewhere that test is skipped, saying why, except under CI=true,
where it must run.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text

from suanli.app import jobrequests
from tests.db_support import backend
from tests.integration.conftest import Net, start_net
from tests.integration.test_hostile_http import assert_problem

#: Each job carries this much spec, so a few fill the few pages the database may still grow by.
BIG_ENV = {"NOTE": "x" * 3000}


def submit(http: httpx.Client, i: int) -> httpx.Response:
    spec = {"name": f"fill-{i}", "run": "true", "resources": {"cpus": 1}, "envs": BIG_ENV}
    return http.post("/api/v1/jobs", json={"spec": spec})


@pytest.mark.skipif(
    backend() == "postgres",
    reason="fills SQLite's file past max_page_count; PostgreSQL's disk_full (SQLSTATE 53100) is the same 507 path",
)
def test_a_full_database_answers_507_and_keeps_every_acknowledged_job(net: Net) -> None:
    engine = net.control.db.engine
    with engine.connect() as conn:
        pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
    limit = pages + 4

    def cap(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {limit}")

    event.listen(engine, "connect", cap)
    engine.dispose()  # every write connection from now on is capped
    acknowledged: list[str] = []
    try:
        with httpx.Client(base_url=net.url, headers={"Authorization": f"Bearer {net.admin_token}"}) as http:
            for i in range(200):
                answer = submit(http, i)
                if answer.status_code != 201:
                    break
                acknowledged.append(answer.json()["id"])
            body = assert_problem(answer, 507)
            assert body["title"] == "Insufficient storage"
            assert body["detail"].startswith("the server's disk is full, so nothing of this request was kept")
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.headers["connection"] == "close"
            # Reads still work; the next request opens a fresh connection and is answered.
            assert http.get("/healthz").status_code == 200
    finally:
        event.remove(engine, "connect", cap)
        engine.dispose()
    assert acknowledged  # some fitted before the disk filled
    listed = [j.id for j in net.client.iter_jobs()]
    assert sorted(listed) == sorted(acknowledged)  # every 201 is there, and nothing else
    assert submit(net.http, 999).status_code == 201  # space again: back to normal


def test_a_server_error_closes_the_connection(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("an unexpected fault")

    monkeypatch.setattr(jobrequests, "explain_job", broken)
    answer = net.http.get("/api/v1/jobs/nothing/explain")
    assert_problem(answer, 500)
    assert answer.headers["connection"] == "close"
    assert "an unexpected fault" not in answer.text
    assert net.http.get("/healthz").status_code == 200  # on a new connection


def _need_mount(where: Path) -> None:
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        why = exc.stderr.decode().strip() if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the disk-full test as root (it mounts a 1 MiB tmpfs): {why}")
        pytest.skip(f"mounting a 1 MiB tmpfs needs root; this test runs as uid {os.geteuid()}: {why}")


@pytest.fixture
def full_blobs(tmp_path: Path) -> Iterator[Net]:
    """A network whose blob store is a 1 MiB tmpfs."""
    blobs = tmp_path / "home" / "blobs"
    blobs.mkdir(parents=True)
    _need_mount(blobs)
    try:
        with start_net(tmp_path) as net:
            yield net
    finally:
        subprocess.run(["umount", str(blobs)], check=True)


def workdir(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))  # random: the archive is as large
    return buf.getvalue()


def test_an_upload_to_a_full_disk_answers_507_and_leaves_nothing(full_blobs: Net) -> None:
    net = full_blobs
    gz = {"content-type": "application/gzip"}
    answer = net.http.post("/api/v1/workdirs", content=workdir(2 * 2**20), headers=gz)
    body = assert_problem(answer, 507)
    assert "nothing of this request was kept" in body["detail"]
    assert answer.headers["connection"] == "close"
    assert list(net.control.settings.blob_dir.iterdir()) == []  # the partial upload is gone
    small = net.http.post("/api/v1/workdirs", content=workdir(1024), headers=gz)
    assert small.status_code == 201, small.text
