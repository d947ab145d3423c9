"""The dashboard's pages over plain HTTP (no browser, no JavaScript): every page reads, in both
languages, for a signed-in caller; nothing shows to one who is not signed in."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvicorn

from suanli.app import identities
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.api import TenantIn, TokenIn, UserIn
from suanli.core.clock import ManualClock
from suanli.core.identity import SYSTEM
from suanli.launch.network import demo_network
from suanli.server.app import create_app
from suanli.web import mount_dashboard
from suanli.web.i18n import Locale, negotiate

HELLO = "name: hello-web\nresources: {cpus: 1}\nrun: echo hi\n"


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(Settings(home=tmp_path), clock=ManualClock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC)))
    plane.migrate()
    plane.apply_network(demo_network())
    yield plane
    plane.close()


@pytest.fixture
def browser(control: ControlPlane) -> Iterator[httpx.Client]:
    """The app on a loopback port (as the server runs it), and a client that keeps cookies."""
    config = uvicorn.Config(mount_dashboard(create_app(control)), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server exited while starting"
        assert time.monotonic() < deadline, "the server did not start within 10 s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=10) as client:
        _TOKENS[client] = control.admin_token_path.read_text().strip()
        yield client
        del _TOKENS[client]
    server.should_exit = True
    thread.join(timeout=10)


#: The admin token of each test's network, by its client.
_TOKENS: dict[httpx.Client, str] = {}


def sign_in(client: httpx.Client, lang: str = "en", token: str | None = None) -> None:
    client.cookies.set("suanli_lang", lang)
    response = client.post("/login", data={"token": token or _TOKENS[client], "next": "/jobs"})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/jobs"
    assert "httponly" in response.headers["set-cookie"].lower()


def form_key(html: str) -> str:
    match = re.search(r'name="form_key" value="([0-9a-f]+)"', html)
    assert match, "no form key on the page"
    return match.group(1)


def submit(client: httpx.Client, text: str) -> tuple[int, str]:
    key = form_key(client.get("/jobs/new").text)
    response = client.post("/jobs/new", data={"form_key": key, "spec_text": text})
    return response.status_code, response.headers.get("location", "") or response.text


@pytest.mark.parametrize("path", ["/", "/jobs", "/jobs/new", "/nodes", "/usage", "/data", "/evals"])
def test_pages_need_sign_in(browser: httpx.Client, path: str) -> None:
    response = browser.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_page_reads_without_javascript(browser: httpx.Client, lang: str) -> None:
    sign_in(browser, lang)
    status, where = submit(browser, HELLO)
    assert status == 303, where
    job_id = where.rsplit("/", 1)[1]
    pages = {
        "/": ["beijing", "tianjin-gaocun", "ningxia", "ms"],
        "/jobs": [job_id, "hello-web"],
        f"/jobs/{job_id}": ["hello-web", "echo hi"],
        "/jobs/new": ["spec_text"],
        "/nodes": ["tj-01", "nx-04"],
        "/usage?tenant=bj-ai": ["bj-ai"],
        "/data": ["datasets-table", "transfers-table", "filings-table"],
        "/evals": ["leaderboard"],
    }
    for path, expected in pages.items():
        response = browser.get(path)
        assert response.status_code == 200, (path, response.text[:2000])
        for text in expected:
            assert text in response.text, (path, text)
    overview = browser.get("/").text
    assert ("网络概览" if lang == "zh" else "The network at a glance") in overview


def test_language_follows_the_browser_then_the_switch(browser: httpx.Client) -> None:
    browser.post("/login", data={"token": _TOKENS[browser], "next": "/"})
    assert "网络概览" in browser.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}).text
    assert "The network at a glance" in browser.get("/", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    switched = browser.get("/lang/zh", params={"next": "/jobs"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/jobs"
    assert "作业" in browser.get("/jobs", headers={"Accept-Language": "en"}).text
    assert browser.get("/lang/en", params={"next": "https://evil.example/"}).headers["location"] == "/"


def test_submit_shows_the_cli_messages(browser: httpx.Client) -> None:
    sign_in(browser)
    status, body = submit(browser, "name: bad\nresources: {cpus: 1, accelerators: H100:x}\nrun: echo\n")
    assert status == 422
    assert "pasted spec:2: resources.accelerators" in body
    status, body = submit(browser, "name: huge\nresources: {accelerators: H100:64}\nrun: echo\n")
    assert status == 422
    assert "no site can ever hold 64 × H100" in body


def test_forms_need_the_form_key(browser: httpx.Client) -> None:
    sign_in(browser)
    response = browser.post("/jobs/new", data={"form_key": "forged", "spec_text": HELLO})
    assert response.status_code == 403


def test_cancel_from_the_page(browser: httpx.Client, control: ControlPlane) -> None:
    sign_in(browser)
    _, where = submit(browser, HELLO)
    page = browser.get(where).text
    response = browser.post(f"{where}/cancel", data={"form_key": form_key(page)})
    assert response.status_code == 303
    assert 'data-state="CANCELLED"' in browser.get(where).text


def test_jobs_table_filters_and_pages(browser: httpx.Client) -> None:
    sign_in(browser)
    for i in range(3):
        submit(browser, HELLO.replace("hello-web", f"job-{i}"))
    assert browser.get("/jobs", params={"name": "job-1"}).text.count('data-job="') == 1
    assert browser.get("/jobs", params={"state": "RUNNING"}).text.count('data-job="') == 0
    assert browser.get("/jobs", params={"state": "pending"}).text.count('data-job="') == 3
    unknown = browser.get("/jobs/nosuchjob")
    assert unknown.status_code == 404
    assert "nosuchjob" in unknown.text


def test_static_files_are_served_with_their_licences(browser: httpx.Client) -> None:
    for path in (
        "vendor/htmx/htmx.min.js",
        "vendor/htmx/LICENSE",
        "vendor/echarts/echarts.common.min.js",
        "vendor/echarts/LICENSE",
        "vendor/echarts/NOTICE",
        "app.css",
        "app.js",
    ):
        assert browser.get(f"/static/{path}").status_code == 200, path


def test_drain_needs_a_reason_then_undrain(browser: httpx.Client) -> None:
    sign_in(browser)
    key = form_key(browser.get("/nodes").text)
    refused = browser.post("/nodes/nx-02/drain", data={"form_key": key, "reason": " "})
    assert refused.status_code == 422
    assert "say why the node is drained" in refused.text
    done = browser.post("/nodes/nx-02/drain", data={"form_key": key, "reason": "fan replacement"})
    assert done.status_code == 303
    page = browser.get("/nodes").text
    assert "drained: fan replacement" in page
    assert browser.post("/nodes/nx-02/undrain", data={"form_key": key}).status_code == 303
    assert "fan replacement" not in browser.get("/nodes").text


def test_locale_formats() -> None:

    assert negotiate(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert negotiate(None, "en-GB,en;q=0.9,zh;q=0.8") == "en"
    assert negotiate(None, "fr-FR,zh;q=0.5,en;q=0.7") == "en"
    assert negotiate(None, "de") == "en"
    assert negotiate("zh", "en") == "zh"
    zh, en = Locale("zh"), Locale("en")
    assert zh.cny(Decimal("1234.505")) == "¥1,234.50"  # half-even, as bills round
    assert en.cny("1234.515") == "CN¥1,234.52"
    assert en.cny(None) == "–"
    when = datetime(2026, 11, 27, 16, 22, 5, tzinfo=UTC)  # 00:22 the next day in Beijing
    assert zh.datetime(when) == "2026年11月28日 00:22:05"
    assert en.datetime(when) == "28 Nov 2026, 00:22:05"
    assert zh.duration(200) == "3分20秒"
    assert en.duration(3700) == "1h 1m"
    assert en.number(12345.678, 1) == "12,345.7"
    assert zh.gettext("nav.jobs") == "作业"
    assert en.gettext("no.such.key") == "no.such.key"


def test_a_member_of_another_tenant_sees_none_of_it(browser: httpx.Client, control: ControlPlane) -> None:
    """bj-ai's job, its usage and its bill are invisible, page by page, to a member of another
    tenant; its job page answers 404 as if it did not exist; an operator sees no jobs at all.
    (Signing in with an unknown token is refused: test_pages_need_sign_in.)"""
    sign_in(browser)
    _, where = submit(browser, HELLO.replace("hello-web", "bj-secret"))
    job_id = where.rsplit("/", 1)[-1]
    now = control.clock.now()
    with control.db.session() as s:
        identities.create_tenant(s, SYSTEM, TenantIn(name="rival"), now)
        identities.create_user(s, SYSTEM, UserIn(name="eve", role="member", tenant="rival"), now)
        identities.create_user(s, SYSTEM, UserIn(name="ops", role="operator", sites=["beijing"]), now)
        eve = identities.create_token(s, SYSTEM, TokenIn(user="eve"), now).token
        ops = identities.create_token(s, SYSTEM, TokenIn(user="ops"), now).token
    browser.cookies.clear()
    sign_in(browser, token=eve)
    for path in ("/", "/jobs", "/jobs?tenant=bj-ai", "/usage", "/usage?tenant=bj-ai", "/data"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "bj-secret" not in page.text, path
        assert job_id not in page.text, path
    assert "bj-ai" not in browser.get("/jobs").text
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs"):
        assert browser.get(path).status_code == 404, path
    response = browser.post(f"/jobs/{job_id}/cancel", data={"form_key": form_key(browser.get("/jobs/new").text)})
    assert response.status_code == 404
    browser.cookies.clear()
    sign_in(browser, token=ops)
    assert "bj-secret" not in browser.get("/jobs").text
    # An operator's role has no jobs:read at all: 403, which says nothing about this job.
    assert browser.get(f"/jobs/{job_id}").status_code == 403
    assert browser.get("/nodes").status_code == 200
