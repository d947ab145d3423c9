"""The dashboard in Chinese: the services' sentences (reasons, site verdicts, error pages, data
states) in Chinese and Beijing time, never "UTC"; every message key the templates use exists in
both languages; the sign-in note says what a token shows; the job page shows the last lines of a
long log with a download of the whole."""

from __future__ import annotations

import json
import re
from html import unescape
from importlib import resources
from pathlib import Path

import httpx

from suanli.core.datasets import Level
from suanli.core.holds import FilingState
from suanli.core.network import Zone
from suanli.core.spec import Priority, parse_job_spec
from suanli.core.states import JobState, TransferState
from suanli.web import reasons
from suanli.web.i18n import catalog
from tests.integration.conftest import Net, dashboard

#: English of the services' sentences that must not reach a Chinese page.
ENGLISH = [
    "no site",
    " free",
    "in use",
    "offline",
    "does not match",
    "CNY/GPU-h",
    "ms from",
    "cancelled",
    "exited with code",
    "UTC",
    "Not found",
    "Forbidden",
    "the jobs page",
    "nodes page",
    "estimate",
]


def _zh(net: Net, token: str | None = None) -> httpx.Client:
    client = dashboard(net) if token is None else httpx.Client(base_url=net.url, cookies={"suanli_token": token})
    client.cookies.set("suanli_lang", "zh")
    return client


def _text(html: str) -> str:
    main = html[html.index("<main>") : html.index("</main>")]
    return unescape(re.sub(r"<[^>]+>", " ", main))


def _no_english(page: str, where: str) -> None:
    text = _text(page)
    for phrase in ENGLISH:
        assert phrase not in text, f"{where}: English '{phrase}' on a Chinese page:\n{text}"


def test_zh_pages_show_reasons_verdicts_and_errors_in_chinese(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    net.fake_agent("beijing")
    big = net.client.submit(parse_job_spec("name: big\nrun: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"))
    net.cycle()
    net.cycle()
    assert net.state(big.id) == "RUNNING"
    waiting = net.client.submit(parse_job_spec("name: wait\nrun: x\nresources: {accelerators: H100:8}\n"))
    gone = net.client.submit(parse_job_spec("name: gone\nrun: x\nresources: {accelerators: H100:8}\n"))
    net.cycle()
    net.client.cancel(gone.id)
    net.cycle()
    reason = net.client.job(waiting.id).reason
    assert "UTC" in reason
    assert reason.startswith("no site has 8 × H100 free")
    member = net.user("alice", tenant="bj-ai")
    with _zh(net) as web:
        jobs = web.get("/jobs").text
        job = web.get(f"/jobs/{waiting.id}").text
        cancelled = web.get(f"/jobs/{gone.id}").text
        missing = web.get("/jobs/nosuch")
    with _zh(net, member) as web:
        forbidden = web.get("/nodes")
    assert "没有站点有空闲的 8 × H100" in _text(jobs)
    assert "北京时间" in _text(job)
    assert "tianjin-gaocun：8 × H100 预计于北京时间" in _text(job)  # the verdict of the busy site
    assert "beijing：A800 与 H100 不符" in _text(job)
    assert "ningxia：910B 与 H100 不符" in _text(job)
    assert "已被用户取消" in _text(cancelled)
    assert missing.status_code == 404
    assert "未找到" in missing.text
    assert "没有作业 “nosuch”" in missing.text
    assert forbidden.status_code == 403
    assert "无权访问" in forbidden.text
    for where, page in (("jobs", jobs), ("job", job), ("cancelled", cancelled)):
        _no_english(page, where)
    _no_english(missing.text, "404")
    _no_english(forbidden.text, "403")
    for page in (jobs, job, missing.text):
        assert "UTC" not in page  # the footer too: one zone, Beijing time


def test_times_in_reasons_are_beijing_time() -> None:
    assert reasons.show("beijing frees 4 × A800 at ~07:18 UTC", "en") == "beijing frees 4 × A800 at ~15:18 Beijing time"
    assert reasons.show("x frees 1 × H100 at ~20:30 UTC", "zh") == "x 预计于北京时间 04:30 空出 1 × H100"
    assert reasons.show("expired at 2026-12-03 06:43:37 UTC", "en") == "expired at 2026-12-03 14:43:37 Beijing time"
    assert reasons.show("ningxia: offline (no heartbeat from its agent)", "zh") == "ningxia：离线（其代理没有心跳）"
    assert reasons.show("run exited with code 1", "zh") == "以退出码 1 结束"
    assert (
        reasons.show("tenant bj-ai: 95.00 of 100 CNY this month; this job's estimate is 10.00 CNY", "zh")
        == "租户 bj-ai：本月已用 95.00 元（预算 100 元）；本作业预估 10.00 元"
    )
    # A sentence no pattern knows stays whole (English) rather than being lost.
    assert reasons.show("something new happened", "zh") == "something new happened"


def test_every_message_key_exists_in_both_languages() -> None:
    en, zh = catalog("en"), catalog("zh")
    assert set(en) == set(zh), f"only in en: {set(en) - set(zh)}; only in zh: {set(zh) - set(en)}"
    templates = resources.files("suanli.web").joinpath("templates")
    used: set[str] = set()
    for template in templates.iterdir():
        used |= set(re.findall(r"_\('([a-z0-9_.]+)'", template.read_text(encoding="utf-8")))
    assert used, "no message keys found in the templates"
    prefixes = {k for k in used if k.endswith((".", "_"))}  # families: _('state.' ~ job.state)
    used -= prefixes
    assert not used - set(en), f"keys the templates use that no catalogue has: {sorted(used - set(en))}"

    families = {
        "state": [s.value for s in JobState],
        "data.level": [v.value for v in Level],
        "transfer.state": [v.value for v in TransferState],
        "filing.state": [v.value for v in FilingState],
        "budget": ["ok", "warning", "exhausted"],
        "budget.alert_": ["warning", "exhausted"],
        "priority": [p.value for p in Priority],
        "zone": [z.value for z in Zone],
        "usage.by": ["site", "job", "gpu-type", "tenant"],
    }
    assert {p.rstrip("._") for p in prefixes} <= {p.rstrip("._") for p in families} | {"health", "node"}
    for prefix, values in families.items():
        for value in values:
            key = f"{prefix}{value}" if prefix.endswith("_") else f"{prefix}.{value}"
            assert key in zh, f"no Chinese for {key}"
    for lang in ("en", "zh"):
        text = json.dumps(catalog(lang), ensure_ascii=False)
        assert "no user accounts" not in text
        assert "尚未启用用户账号" not in text


def test_sign_in_page_says_what_a_token_shows(net: Net) -> None:
    with httpx.Client(base_url=net.url) as web:
        english = web.get("/login").text
        web.cookies.set("suanli_lang", "zh")
        chinese = web.get("/login").text
    for page in (english, chinese):
        assert "network administrator, who sees every tenant" not in page
        assert "任何令牌都以网络管理员身份登录" not in page
    assert "Your token decides what you see" in english
    assert "令牌决定您能看到的内容" in chinese


def test_job_page_shows_the_last_lines_and_links_the_whole_log(net: Net, tmp_path: Path) -> None:
    net.local_agent("beijing")
    run = 'for i in $(seq 1 20000); do echo "line $i of the log"; done'
    job = net.client.submit(parse_job_spec(f"name: chatty\nrun: |\n  {run}\nresources: {{cpus: 1}}\n"))
    net.pump(lambda: net.state(job.id) == "SUCCEEDED", timeout=60)
    with dashboard(net) as web:
        page = web.get(f"/jobs/{job.id}").text
        whole = web.get(f"/jobs/{job.id}/logs")
    logs = page[page.index('data-testid="logs"') :]
    logs = logs[: logs.index("</pre>")]
    assert "line 20000 of the log" in logs
    assert "line 19501 of the log" in logs
    assert "line 19500 of the log" not in logs
    assert "line 1 of the log" not in logs
    assert len(page) < 200_000
    assert 'href="/jobs/' + job.id + '/logs"' in page
    assert "this shows its last 500 lines" in page
    assert whole.status_code == 200
    assert "attachment" in whole.headers["content-disposition"]
    lines = whole.text.splitlines()
    assert lines[0] == "line 1 of the log"
    assert lines[-1] == "line 20000 of the log"
    assert len(lines) == 20000


def test_a_finished_job_says_cost_not_cost_so_far(net: Net) -> None:
    job = net.client.submit(parse_job_spec("name: short\nrun: x\nresources: {cpus: 1}\n"))
    with dashboard(net) as web:
        pending = web.get(f"/jobs/{job.id}").text
        net.client.cancel(job.id)
        ended = web.get(f"/jobs/{job.id}").text
    assert "<dt>Cost so far</dt>" in pending
    assert "<dt>Cost</dt>" in ended
    assert "Cost so far" not in ended


def test_the_network_page_lists_the_waiting_queue_with_reasons(net: Net) -> None:
    """W11: the overview lists waiting jobs, oldest first, with why each waits (in Chinese on
    zh pages), scoped to what the viewer may see; no queue, no section."""
    with dashboard(net) as web:
        assert 'data-testid="waiting-queue"' not in web.get("/").text
    net.fake_agent("tianjin-gaocun")
    big = net.client.submit(parse_job_spec("name: big\nrun: x\nresources: {accelerators: H100:16}\ntime_limit: 1h\n"))
    net.cycle()
    net.cycle()
    assert net.state(big.id) == "RUNNING"
    first = net.client.submit(parse_job_spec("name: first\nrun: x\nresources: {accelerators: H100:8}\n", "t"))
    second = net.client.submit(parse_job_spec("name: second\nrun: x\nresources: {accelerators: H100:4}\n", "t"))
    net.cycle()
    with dashboard(net) as web:
        page = web.get("/").text
    queue = page[page.index('data-testid="waiting-queue"') :]
    assert queue.index(f'data-job="{first.id}"') < queue.index(f'data-job="{second.id}"')
    assert "Waiting queue" in queue
    assert net.client.job(first.id).reason.split(";")[0] in unescape(queue)
    with _zh(net) as web:
        zh = web.get("/").text
    section = _text(zh)[_text(zh).index("排队作业") :]
    assert second.id in section
    assert "no site" not in section
    other = net.user("eve", tenant="rival")
    with httpx.Client(base_url=net.url, cookies={"suanli_token": other}) as web:
        assert first.id not in web.get("/").text  # another tenant's queue is not shown
    operator = net.user("olga", role="operator", sites=["beijing"])
    with httpx.Client(base_url=net.url, cookies={"suanli_token": operator}) as web:
        page = web.get("/")  # sees no tenant's jobs: was a 422 on PostgreSQL
        assert page.status_code == 200, page.text[:300]
        assert first.id not in page.text
