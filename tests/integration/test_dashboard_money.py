"""The dashboard's money and files through the real server: the invoice, CSV and filing-package
links open with the signed-in cookie (and only for who may see them), the usage table names the
tenant of each line, budgets show on the usage page and the overview, the CSV has no scientific
notation, and a bill for a tenant that does not exist is an error."""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from typer.testing import CliRunner, Result

from suanli.cli import app
from suanli.core.metering import month_of
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.core.states import AttemptState
from suanli.sdk import ApiError, Client
from suanli.web.files import DOCUMENT_CSP
from tests.integration.conftest import NETWORK, Net, dashboard, start_net
from tests.integration.test_metering import report, running

H100_HOUR = "name: ft\nrun: train\nresources: {accelerators: H100:1}\n"


def _href(html: str, testid: str) -> str:
    match = re.search(rf'<a href="([^"]+)"[^>]*data-testid="{testid}"', html)
    assert match, f"no {testid} link on the page"
    return match.group(1)


def _bill_one_hour(net: Net) -> str:
    agent, _ = net.fake_agent("tianjin-gaocun")
    _, attempt_id = running(net, H100_HOUR)
    report(agent, "tianjin-gaocun", attempt_id, 3600)  # 28 CNY
    return month_of(net.clock.now())


def test_invoice_and_csv_links_open_with_the_dashboard_cookie(net: Net) -> None:
    month = _bill_one_hour(net)
    with dashboard(net) as web:
        page = web.get("/usage", params={"tenant": "bj-ai", "month": month}).text
        printable, csv_link = _href(page, "invoice-html"), _href(page, "invoice-csv")
        assert not printable.startswith("/api/"), "the page must not link the Bearer-only API"
        html = web.get(printable)
        assert html.status_code == 200, html.text
        assert "bj-ai" in html.text
        assert "28.000000" in html.text
        assert html.headers["content-security-policy"] == DOCUMENT_CSP  # no scripts in a served document
        csv_file = web.get(csv_link)
        assert csv_file.status_code == 200
        assert csv_file.headers["content-type"].startswith("text/csv")
        assert "attachment" in csv_file.headers["content-disposition"]
        assert csv_file.text.splitlines()[-1].split(",")[-2] == "28.000000"
    # Without a session the links send the reader to sign in; another tenant's member gets 404.
    with httpx.Client(base_url=net.url) as anonymous:
        assert anonymous.get(printable).status_code == 303
    rival = net.user("eve", tenant="rival")
    with httpx.Client(base_url=net.url, cookies={"suanli_token": rival}) as eve:
        assert eve.get(printable).status_code == 404
        assert eve.get(csv_link).status_code == 404


def test_usage_for_all_tenants_has_a_tenant_column(net: Net) -> None:
    month = _bill_one_hour(net)
    rival = net.user("eve", tenant="rival")
    agent = net.agents["tianjin-gaocun"]
    with Client(net.url, token=rival) as eve:
        job = eve.submit(parse_job_spec(H100_HOUR))
    net.cycle()
    net.cycle()
    report(agent, "tianjin-gaocun", net.client.job(job.id).attempts[0].id, 1800)
    with dashboard(net) as web:
        page = web.get("/usage", params={"month": month, "by": "site"}).text
    table = page[page.index('data-testid="usage-table"') :]
    assert table.index("<th>Tenant</th>") < table.index("<th>Site</th>")
    tenants = re.findall(r'<td data-testid="usage-tenant">([^<]+)</td>', table)
    assert tenants == ["bj-ai", "rival"]  # two tianjin-gaocun H100 lines, told apart


def test_budgets_show_on_the_usage_page_and_the_overview(net: Net) -> None:
    net.control.apply_network(
        parse_network(NETWORK.replace("home_region: beijing}", "home_region: beijing, monthly_budget_cny: 30}"))
    )
    month = _bill_one_hour(net)  # 28 of 30: a warning
    with dashboard(net) as web:
        usage = web.get("/usage", params={"tenant": "bj-ai", "month": month}).text
        overview = web.get("/").text
        web.cookies.set("suanli_lang", "zh")
        overview_zh = web.get("/").text
    assert 'data-testid="budgets-table"' in usage
    row = usage[usage.index('data-budget="bj-ai"') :]
    assert "CN¥28.00" in row
    assert "CN¥30.00" in row
    assert "93%" in row
    assert 'data-testid="budget-alert" data-budget="bj-ai"' in overview
    assert "Tenant bj-ai has used 93% of its monthly budget" in overview
    assert "租户 bj-ai 已使用月度预算的 93%" in overview_zh


def test_invoice_csv_has_no_scientific_notation(net: Net) -> None:
    agent, _ = net.fake_agent("tianjin-gaocun")
    _, attempt_id = running(net, "run: x\nresources: {accelerators: H100:1, memory: 0.02}\n")
    report(agent, "tianjin-gaocun", attempt_id, 10)  # 0.02 GiB for 10 s: 5.6e-05 GiB-hours as a float
    text = net.client.invoice_document("bj-ai", month_of(net.clock.now()), "csv")
    header, line = text.splitlines()[:2]
    names = header.split(",")
    numbers = [
        v for k, v in zip(names, line.split(","), strict=True) if k not in ("job_id", "job_name", "site", "gpu_type")
    ]
    assert not [v for v in numbers if re.search(r"[eE]", v)], text  # (a job id may hold "6e9")
    memory = line.split(",")[header.split(",").index("memory_gib_hours")]
    assert memory == "0.000056", memory


def test_an_invoice_for_an_unknown_tenant_is_an_error(net: Net) -> None:
    month = month_of(net.clock.now())
    with pytest.raises(ApiError) as info:
        net.client.invoice("nosuch", month)
    assert info.value.status == 404
    assert "no tenant 'nosuch'; known tenants: bj-ai" in info.value.detail
    assert net.client.invoice("bj-ai", month).lines == []  # a known tenant with no usage: an empty bill


FILINGS_NETWORK = """\
regions: [beijing, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 4, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""


def test_filing_package_link_opens_with_the_dashboard_cookie(tmp_path: Path) -> None:
    with start_net(tmp_path, FILINGS_NETWORK) as net:
        alice = net.user("alice", tenant="bj-ai")
        eve = net.user("eve", tenant="rival")
        src = tmp_path / "notes.bin"
        src.write_bytes(os.urandom(4096))
        classification = {"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]}
        net.client.register_dataset(
            name="notes", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=classification
        )
        with Client(net.url, token=alice) as client:
            filing = client.create_filing("notes", "singapore")["id"]
        with httpx.Client(base_url=net.url, cookies={"suanli_token": alice}) as web:
            link = _href(web.get("/data").text, "filing-package")
            assert not link.startswith("/api/")
            package = web.get(link)
            assert package.status_code == 200, package.text
            assert filing in package.text
            assert package.headers["content-security-policy"] == DOCUMENT_CSP
        with httpx.Client(base_url=net.url, cookies={"suanli_token": eve}) as web:
            assert web.get(link).status_code == 404


def _with_budget(net: Net, cny: int) -> None:
    net.control.apply_network(
        parse_network(NETWORK.replace("home_region: beijing}", f"home_region: beijing, monthly_budget_cny: {cny}}}"))
    )


def test_running_jobs_reserve_their_estimate_against_the_budget(net: Net) -> None:
    """Jobs started one after the other count what they are still expected to cost, so the third
    one-hour H100 job (28 CNY each) waits under a 75 CNY budget before any of them is metered."""
    _with_budget(net, 75)
    agent, _ = net.fake_agent("tianjin-gaocun")
    hour = H100_HOUR + "time_limit: 1h\n"
    first, first_attempt = running(net, hour)
    second, _ = running(net, hour)
    third = net.client.submit(parse_job_spec(hour))
    net.cycle()
    net.cycle()
    waiting = net.client.job(third.id)
    assert waiting.state.value == "PENDING"
    assert waiting.reason == "tenant bj-ai: 56.00 of 75 CNY this month; this job's estimate is 28.00 CNY"
    # Half of the first job metered: what is left of it is still held; the total does not move.
    report(agent, "tianjin-gaocun", first_attempt, 1800)
    net.cycle()
    assert net.client.job(third.id).state.value == "PENDING"
    assert net.client.job(second).state.value == "RUNNING"
    # The first ends early (half its hour, 14 CNY): its unspent estimate is freed; 14 + 28 + 28
    # fits 75, so the third starts.
    report(agent, "tianjin-gaocun", first_attempt, 1800, AttemptState.SUCCEEDED)
    net.pump(lambda: net.state(first) == "SUCCEEDED")
    net.cycle()
    net.cycle()
    assert net.client.job(third.id).state.value == "RUNNING"


def test_a_job_without_time_limit_past_the_whole_budget_is_refused(net: Net) -> None:
    _with_budget(net, 20)
    with pytest.raises(ApiError) as info:
        net.client.submit(parse_job_spec(H100_HOUR))  # no time_limit: the default 1 h, 28 CNY
    assert info.value.status == 422
    assert "it has no time_limit, so it is estimated at 1 h" in info.value.detail
    assert "give it a time_limit or raise the budget" in info.value.detail


def test_invoice_command_defaults_to_own_tenant_and_this_month(net: Net) -> None:
    _bill_one_hour(net)
    # The CLI's "this month" is the wall clock's, in Asia/Shanghai (the server's is a ManualClock).
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    alice = net.user("alice", tenant="bj-ai")
    runner = CliRunner()

    def cli(token: str, *args: str) -> Result:
        return runner.invoke(app, ["--server", net.url, "--token", token, "invoice", *args], env={"COLUMNS": "200"})

    own = cli(alice)
    assert own.exit_code == 0, own.output
    assert f"Invoice for bj-ai, {month} (Asia/Shanghai)" in own.output
    earlier = cli(alice, "2026-01")
    assert earlier.exit_code == 0, earlier.output
    assert "Invoice for bj-ai, 2026-01" in earlier.output
    unknown = cli(net.admin_token, "nosuch", month)
    assert unknown.exit_code == 1
    assert "no tenant 'nosuch'; known tenants: bj-ai" in unknown.output
    admin = cli(net.admin_token)
    assert admin.exit_code == 1
    assert "you belong to no tenant: name the tenant" in admin.output


def test_usage_by_gpu_is_by_gpu_type_and_a_bad_grouping_says_what_exists(net: Net) -> None:
    _bill_one_hour(net)
    [line] = net.client.usage(by="gpu")
    assert line.gpu_type == "H100"
    with pytest.raises(ApiError) as info:
        net.client.usage(by="user")
    assert info.value.detail == "--by must be one of site, job, gpu-type, tenant (per-user bills are not there yet)"


def test_budget_and_tariff_tables_read_as_amounts_and_dates(net: Net) -> None:
    _with_budget(net, 30)
    _bill_one_hour(net)
    runner = CliRunner()
    connection = ["--server", net.url, "--token", net.admin_token]
    budget = runner.invoke(app, [*connection, "budget"], env={"COLUMNS": "200"})
    assert budget.exit_code == 0, budget.output
    row = next(line for line in budget.stdout.splitlines() if line.startswith("bj-ai"))
    assert row.split()[:3] == ["bj-ai", "28.00", "30.00"]  # not "28.000000" beside "30"
    tariffs = runner.invoke(app, [*connection, "tariff", "ls"], env={"COLUMNS": "200"})
    assert tariffs.exit_code == 0, tariffs.output
    assert "1970" not in tariffs.stdout
    assert "from the start" in tariffs.stdout


def test_the_printable_invoice_reads_as_an_invoice(net: Net) -> None:
    """W15: a number, the issuer, the issue date, the period as Beijing dates, headings in words,
    quantities in hours; the JSON carries the number, issuer and issue time too."""
    month = _bill_one_hour(net)
    page = net.client.invoice_document("bj-ai", month, "html")
    number = f"SL-{month.replace('-', '')}-bj-ai"
    assert f'<span data-field="number">{number}</span>' in page
    assert '<dd data-field="issuer">suanli compute-power network operator</dd>' in page
    issued = net.clock.now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d")
    assert f'<dd data-field="issued">{issued}</dd>' in page
    year, mm = (int(x) for x in month.split("-"))
    last = (date(year + mm // 12, mm % 12 + 1, 1) - timedelta(days=1)).isoformat()
    assert f'<dd data-field="period">{month}-01 – {last} (month {month}, Beijing time)</dd>' in page
    assert "<th>GPU-hours</th>" in page
    assert "cost cny" not in page
    assert "+00:00" not in page
    assert not re.search(r">[0-9.]+e-?[0-9]+<", page)
    assert "<td>1.0000</td>" in page  # one GPU-hour
    bill = net.client.invoice("bj-ai", month)
    assert (bill.number, bill.issuer) == (number, "suanli compute-power network operator")
    assert bill.issued_at == net.clock.now()
