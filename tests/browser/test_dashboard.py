"""The dashboard in a real browser (Debian's Chromium) against a live ``suanli up --demo``:
sign in, see the network, submit from the page and watch the job run with its logs streaming,
cancel another, switch language, the operators' nodes page, usage and bills, and that a member
of another tenant sees none of it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect as pw_expect

from tests.browser.conftest import Session
from tests.e2e.conftest import Network, clean_env

pytestmark = pytest.mark.browser

TICKER = """\
name: web-ticker
resources: {cpus: 1}
run: |
  for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.5; done
"""
SLEEPER = "name: web-sleeper\nresources: {cpus: 1}\nrun: sleep 300\ntime_limit: 10m\n"
BAD = "name: web-bad\nresources:\n  cpus: 1\n  accelerators: H100:lots\nrun: echo\n"


def expect(page: object, test_id: str) -> object:
    return pw_expect(page.get_by_test_id(test_id))  # type: ignore[attr-defined]


def test_sign_in_and_see_the_network(session: Session) -> None:
    session.goto("/jobs")
    assert "/login" in session.page.url
    session.shot("01-sign-in")
    session.sign_in()
    cards = session.page.get_by_test_id("site-card")
    assert sorted(cards.evaluate_all("els => els.map(e => e.dataset.site)")) == ["beijing", "ningxia", "tianjin-gaocun"]
    graph = session.page.get_by_test_id("region-graph")
    assert "ms" in (graph.text_content() or "")
    session.page.wait_for_selector("#util-chart[data-ready=true] canvas")
    session.shot("02-network")


def test_submit_from_the_page_and_watch_it_run(session: Session, demo: Network) -> None:
    session.sign_in()
    session.goto("/jobs/new")
    session.page.get_by_test_id("spec-text").fill(TICKER)
    session.page.get_by_test_id("submit").click()
    session.page.wait_for_url(re.compile(r".*/jobs/[a-z0-9]{8}$"))
    job_id = session.page.url.rsplit("/", 1)[1]
    # The state badge follows the job without a reload (htmx), and the logs stream in.
    session.page.wait_for_selector("[data-testid=job-state][data-state=RUNNING]", timeout=20_000)
    expect(session.page, "logs").to_contain_text("tick 2", timeout=20_000)  # type: ignore[attr-defined]
    session.shot("03-job-running")
    expect(session.page, "logs").to_contain_text("tick 6", timeout=20_000)  # type: ignore[attr-defined]
    session.page.wait_for_selector("[data-testid=job-state][data-state=SUCCEEDED]", timeout=20_000)
    assert demo.job(job_id)["state"] == "SUCCEEDED"
    logs = session.page.get_by_test_id("logs").inner_text()
    assert logs.count("tick 1") == 1, logs  # streamed once, not repeated
    session.shot("04-job-succeeded")


def test_upload_a_yaml_and_see_the_cli_messages(session: Session, tmp_path: Path, demo: Network) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD, encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "suanli", "submit", "bad.yaml"],
        cwd=tmp_path,
        env=clean_env(SUANLI_SERVER=demo.url),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert cli.returncode != 0
    cli_lines = [line.strip() for line in cli.stderr.splitlines() if "bad.yaml:" in line]
    assert cli_lines, cli.stderr
    session.sign_in()
    session.expected_errors.append("status of 422")
    session.goto("/jobs/new")
    session.page.get_by_test_id("spec-file").set_input_files(str(spec))
    expect(session.page, "spec-text").to_have_value(BAD)  # type: ignore[attr-defined]
    session.page.get_by_test_id("submit").click()
    problems = session.page.get_by_test_id("submit-problems").inner_text()
    for line in cli_lines:
        assert line.removeprefix("error: ") in problems, (line, problems)
    session.shot("05-submit-invalid")


def test_cancel_another_job(session: Session, demo: Network) -> None:
    session.sign_in()
    session.goto("/jobs/new")
    session.page.get_by_test_id("spec-text").fill(SLEEPER)
    session.page.get_by_test_id("submit").click()
    session.page.wait_for_url(re.compile(r".*/jobs/[a-z0-9]{8}$"))
    job_id = session.page.url.rsplit("/", 1)[1]
    session.page.wait_for_selector("[data-testid=job-state][data-state=RUNNING]", timeout=20_000)
    session.page.get_by_test_id("cancel").click()
    session.page.wait_for_selector("[data-testid=job-state][data-state=CANCELLED]", timeout=30_000)
    assert demo.job(job_id)["state"] == "CANCELLED"
    session.shot("06-job-cancelled")
    # The table finds it by state.
    session.goto("/jobs?state=CANCELLED")
    assert session.page.locator(f'tr[data-job="{job_id}"]').count() == 1
    session.goto("/jobs")
    session.shot("07-jobs")


def test_language_follows_the_browser_and_the_switch(zh_session: Session) -> None:
    s = zh_session
    s.sign_in()
    assert s.page.locator("h1").inner_text() == "网络概览"
    assert s.page.locator("html").get_attribute("lang") == "zh-CN"
    s.shot("08-network-zh")
    pages = (("/jobs", "09-jobs-zh"), ("/nodes", "10-nodes-zh"), ("/usage", "11-usage-zh"), ("/data", "11-data-zh"))
    for path, name in pages:
        s.goto(path)
        s.shot(name)
    s.goto("/jobs")
    assert "作业" in s.page.locator("h1").inner_text()
    s.page.get_by_test_id("lang-switch").get_by_text("English").click()
    s.page.wait_for_url(s.net.url + "/jobs")
    assert s.page.locator("h1").inner_text().startswith("Jobs")
    s.page.get_by_test_id("lang-switch").get_by_text("中文").click()
    assert s.page.locator("h1").inner_text().startswith("作业")


def test_drain_and_undrain_a_node_as_operator(session: Session, demo: Network) -> None:
    session.sign_in()
    session.goto("/nodes")
    rows = session.page.get_by_test_id("nodes-table").locator("tbody tr")
    assert rows.count() == 6  # bj-01, tj-01, nx-01..04
    row = session.page.locator('tr[data-node="nx-04"]')
    row.get_by_role("textbox").fill("GPU 3 ECC errors")
    session.page.get_by_test_id("drain-nx-04").click()
    session.page.wait_for_url(demo.url + "/nodes")
    assert "GPU 3 ECC errors" in row.inner_text()
    nodes = {n["name"]: n for n in demo.api.get("/api/v1/nodes").json()["items"]}
    assert nodes["nx-04"]["state"] == "drained", nodes["nx-04"]
    session.shot("12-nodes-drained")
    session.page.get_by_test_id("drain-nx-04").click()  # now "Undrain"
    session.page.wait_for_url(demo.url + "/nodes")
    nodes = {n["name"]: n for n in demo.api.get("/api/v1/nodes").json()["items"]}
    assert nodes["nx-04"]["state"] != "drained", nodes["nx-04"]


def test_usage_and_bills(session: Session) -> None:
    session.sign_in()
    session.goto("/usage?tenant=bj-ai")
    assert session.page.get_by_test_id("usage-table").is_visible()
    assert re.search(r"CN¥[\d,]+\.\d\d", session.page.get_by_test_id("bill-total").inner_text())
    session.shot("13-usage")
    session.goto("/data")
    assert session.page.get_by_test_id("datasets-table").is_visible()
    session.shot("14-data")


def test_a_member_of_another_tenant_sees_none_of_it(session: Session, demo: Network) -> None:
    """Signed in as a member of another tenant: no job, usage or bill of bj-ai on any page,
    and bj-ai's job page answers 404 as if it did not exist."""
    admin = {"Authorization": f"Bearer {session.admin_token}"}
    with httpx.Client(base_url=demo.url, headers=admin, timeout=10) as api:
        job = api.post(
            "/api/v1/jobs", json={"spec": {"name": "bj-private", "run": "sleep 1", "resources": {"cpus": 1}}}
        )
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        api.post("/api/v1/tenants", json={"name": "rival"})
        made = api.post("/api/v1/users", json={"name": "eve-web", "tenant": "rival"})
        assert made.status_code in (201, 409), made.text
        eve = api.post("/api/v1/tokens", json={"user": "eve-web", "name": "browser"}).json()["token"]
    session.sign_in(eve)
    for path, shot in (("/", "15-rival-network"), ("/jobs", "16-rival-jobs"), ("/usage", "17-rival-usage")):
        session.goto(path)
        text = session.page.content()
        assert job_id not in text, path
        assert "bj-private" not in text, path
        session.shot(shot)
    session.goto("/jobs?tenant=bj-ai")
    assert "bj-private" not in session.page.content()
    response = session.goto(f"/jobs/{job_id}")
    assert response.status == 404
    session.expected_errors.append("404")
    session.shot("18-rival-job-404")


CHATTY = {
    "name": "web-chatty",
    "resources": {"cpus": 1},
    "run": 'for i in $(seq 1 300); do echo "early $i"; done; for i in $(seq 1 40); do echo "late $i"; sleep 0.5; done',
}


def _api_submit(demo: Network, spec: dict[str, object]) -> str:
    response = demo.api.post("/api/v1/jobs", json={"spec": spec})
    assert response.status_code in (200, 201, 202), response.text
    job_id: str = response.json()["id"]
    return job_id


def _logs(demo: Network, job_id: str) -> str:
    return demo.api.get(f"/api/v1/jobs/{job_id}/logs").text


def test_log_pane_opens_at_the_tail_and_follows_it(session: Session, demo: Network) -> None:
    """A running job's page opened after 300 lines were printed: the pane shows the newest
    lines and keeps showing them as more stream in (it was stuck at the top)."""
    job_id = _api_submit(demo, CHATTY)
    deadline = time.monotonic() + 30
    while "late 2\n" not in _logs(demo, job_id):
        assert time.monotonic() < deadline, "the job printed nothing in 30 s"
        time.sleep(0.3)
    session.sign_in()
    session.goto(f"/jobs/{job_id}")
    pane = session.page.get_by_test_id("logs")
    gap = "p => p.scrollHeight - p.scrollTop - p.clientHeight"
    assert pane.evaluate("p => p.scrollHeight > p.clientHeight"), "the pane should overflow"
    assert pane.evaluate(gap) < 40, "the pane did not open at its tail"
    expect(session.page, "logs").to_contain_text("late 8", timeout=20_000)  # type: ignore[attr-defined]
    assert pane.evaluate(gap) < 40, "the pane did not follow the new lines"
    session.shot("15-log-tail")
    assert session.page.get_by_test_id("logs-download").get_attribute("href") == f"/jobs/{job_id}/logs"
    demo.api.post(f"/api/v1/jobs/{job_id}/cancel")


def test_bill_links_open_in_the_browser(session: Session) -> None:
    session.sign_in()
    session.goto("/usage?tenant=bj-ai")
    href = session.page.get_by_test_id("invoice-html").get_attribute("href")
    assert href
    assert not href.startswith("/api/")
    response = session.goto(href)
    assert response.status == 200
    assert "bj-ai" in session.page.content()
    session.shot("16-invoice")


def test_zh_job_page_has_no_english_reason(zh_session: Session, demo: Network) -> None:
    s = zh_session
    holder = _api_submit(demo, {"name": "web-holder", "resources": {"accelerators": "H100:16"}, "run": "sleep 120"})
    waiter = _api_submit(demo, {"name": "web-waiter", "resources": {"accelerators": "H100:16"}, "run": "echo"})
    deadline = time.monotonic() + 30
    while not demo.job(waiter).get("reason", "").startswith("no site has"):
        assert time.monotonic() < deadline, demo.job(waiter)
        time.sleep(0.3)
    s.sign_in()
    for path, name in ((f"/jobs/{waiter}", "17-job-waiting-zh"), ("/jobs", "18-jobs-waiting-zh")):
        s.goto(path)
        text = s.page.locator("main").inner_text()
        assert "没有站点有空闲的 16 × H100" in text
        for english in ("no site has", "UTC", " free", "frees", "CNY/GPU-h", "does not match"):
            assert english not in text, (path, english, text)
        s.shot(name)
    for job_id in (waiter, holder):
        demo.api.post(f"/api/v1/jobs/{job_id}/cancel")
