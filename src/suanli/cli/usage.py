"""Commands for the utility side: usage, invoices, tariffs, site revenue."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
import yaml

from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, out_console, print_json, say
from suanli.cli.render import table
from suanli.core.api import UsageLineOut
from suanli.core.errors import SuanliError

#: Bills are by month in Asia/Shanghai.
_BILLING_ZONE = ZoneInfo("Asia/Shanghai")
_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")

ByOption = Annotated[str, typer.Option("--by", help="Group by: site (with GPU type), job, gpu-type, tenant, service.")]
MonthOption = Annotated[
    str | None, typer.Option("--month", help="A billing month, e.g. 2026-03 (Asia/Shanghai).", show_default=False)
]


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SuanliError(f"'{text}' is not a date; write 2026-03-01 or 2026-03-01T08:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a date without a zone is in the user's local time
    return moment


def usage(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant.", show_default=False)] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.", show_default=False)] = None,
    start: Annotated[str | None, typer.Option("--from", help="From this date/time (local time unless zoned).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Up to this date/time (exclusive).")] = None,
    month: MonthOption = None,
    by: ByOption = "site",
    json_out: JsonOption = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print CSV on stdout.")] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Metered usage and what it cost (CNY), like a utility bill: GPU-seconds by type, CPU-seconds,
    memory GiB-hours. Waived usage (attempts the platform lost) is shown apart."""
    with open_client(ctx, server, token) as client:
        lines = client.usage(tenant=tenant, site=site, start=_when(start), end=_when(end), month=month, by=by)
    if json_out:
        print_json(lines)
        return
    if csv_out:
        say(_csv(lines))
        return
    if not lines:
        note("No usage recorded for that selection yet.")
        return
    keys = [
        k
        for k in ("tenant", "job_id", "job_name", "site", "gpu_type", "service", "requests", "prompt_tokens")
        if any(getattr(line, k) is not None and getattr(line, k) != "" for line in lines)
    ]
    if "service" in keys:
        keys.append("completion_tokens")
    headers = (*[k.upper().replace("_", " ") for k in keys], "GPU-HOURS", "CPU-HOURS", "COST CNY", "WAIVED CNY")
    rows = [
        (
            *[str(getattr(line, k) if getattr(line, k) is not None else "-") for k in keys],
            f"{line.gpu_seconds / 3600:.3f}",
            f"{line.cpu_seconds / 3600:.3f}",
            line.cost_cny,
            line.waived_cny,
        )
        for line in lines
    ]
    console = out_console()
    console.print(table(headers, rows, width=console.width))


def _csv(lines: list[UsageLineOut]) -> str:
    out = io.StringIO()
    fields = list(UsageLineOut.model_fields)
    writer = csv.DictWriter(out, fields)
    writer.writeheader()
    for line in lines:
        writer.writerow(line.model_dump())
    return out.getvalue().rstrip("\n")


def invoice(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Argument(help="The tenant billed (default: your own).", show_default=False)
    ] = None,
    month: Annotated[
        str | None,
        typer.Argument(help="The month, e.g. 2026-03 (Asia/Shanghai; default: this month).", show_default=False),
    ] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print the invoice as CSV.")] = False,
    html_file: Annotated[
        Path | None, typer.Option("--html", help="Write a printable HTML invoice to this file.")
    ] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """A tenant's monthly invoice. Its lines add up exactly to the usage records.

    Without arguments: your tenant's, this month; 'suanli invoice 2026-03': your tenant's for
    that month."""
    if month is None and tenant is not None and _MONTH.match(tenant):
        tenant, month = None, tenant
    month = month or datetime.now(_BILLING_ZONE).strftime("%Y-%m")
    with open_client(ctx, server, token) as client:
        if tenant is None:
            tenant = client.whoami().tenant
            if not tenant:
                raise SuanliError("you belong to no tenant: name the tenant, e.g. 'suanli invoice bj-ai 2026-03'")
        if html_file is not None:
            html_file.write_text(client.invoice_document(tenant, month, "html"), encoding="utf-8")
            note(f"Wrote {html_file}")
            return
        if csv_out:
            say(client.invoice_document(tenant, month, "csv").rstrip("\n"))
            return
        bill = client.invoice(tenant, month)
    if json_out:
        print_json(bill)
        return
    say(f"Invoice for {bill.tenant}, {bill.month} (Asia/Shanghai)")
    if not bill.lines:
        note("No usage in that month.")
    else:
        rows = [
            (
                line.job_id or "-",
                line.job_name or "-",
                line.site or "-",
                line.gpu_type or "-",
                f"{line.gpu_seconds / 3600:.3f}",
                line.cost_cny,
            )
            for line in bill.lines
        ]
        console = out_console()
        console.print(table(("JOB", "NAME", "SITE", "GPU", "GPU-HOURS", "CNY"), rows, width=console.width))
    say(
        f"Total: {bill.total_cny} CNY" + (f"  (waived: {bill.waived_cny} CNY)" if bill.waived_cny != "0.000000" else "")
    )


tariff_app = typer.Typer(help="Site tariffs: prices per GPU-hour, CPU-hour and GiB-hour, with time-of-use periods.")


@tariff_app.command("ls")
@tariff_app.command("list", hidden=True)  # as user, token and tenant: either name works
def tariff_ls(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.", show_default=False)] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Every tariff version, oldest first: old bills stay priced by the tariff then in force."""
    with open_client(ctx, server, token) as client:
        found = client.tariffs(site)
    if json_out:
        print_json(found)
        return
    rows = []
    for v in found:
        gpu = ", ".join(f"{k} {p:g}" for k, p in sorted(v.tariff.get("gpu_hour", {}).items())) or "-"
        periods = ", ".join(f"{p['hours']}×{p['factor']:g}" for p in v.tariff.get("periods", [])) or "-"
        rows.append(
            (
                v.site,
                "from the start"
                if v.effective_from.year <= 1970
                else v.effective_from.astimezone().strftime("%Y-%m-%d %H:%M"),
                gpu,
                f"{v.tariff.get('cpu_hour', 0):g}",
                periods,
                v.created_by,
            )
        )
    console = out_console()
    console.print(table(("SITE", "FROM", "GPU-HOUR CNY", "CPU-HOUR", "PERIODS", "BY"), rows, width=console.width))


@tariff_app.command("set")
def tariff_set(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="The site whose prices change.")],
    file: Annotated[Path, typer.Argument(help="A YAML or JSON file holding the tariff (as in the network file).")],
    start: Annotated[str | None, typer.Option("--from", help="When it takes effect (default: now).")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Publish a new tariff for a site from a given time; earlier usage keeps its old prices."""
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "tariff" in data:
        data = data["tariff"]
    if not isinstance(data, dict):
        raise SuanliError(f"{file} must hold a tariff mapping (gpu_hour, cpu_hour, periods, ...)")
    with open_client(ctx, server, token) as client:
        version = client.set_tariff(site, data, _when(start))
    say(f"Tariff for {version.site} takes effect {version.effective_from.astimezone():%Y-%m-%d %H:%M %Z}")
    say(json.dumps(version.tariff, ensure_ascii=False))


def revenue(
    ctx: typer.Context,
    month: MonthOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """For operators: revenue and GPU utilisation per site."""
    with open_client(ctx, server, token) as client:
        found = client.site_revenue(month=month)
    if json_out:
        print_json(found)
        return
    rows = [
        (r.site, r.revenue_cny, r.waived_cny, f"{r.gpu_seconds / 3600:.3f}", f"{(r.gpu_utilization or 0) * 100:.2f}%")
        for r in found
    ]
    console = out_console()
    console.print(table(("SITE", "REVENUE CNY", "WAIVED CNY", "GPU-HOURS", "GPU UTIL"), rows, width=console.width))
