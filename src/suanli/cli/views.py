"""Commands that show jobs: the list (``jobs``) and the detail view (``status``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from suanli.cli import jobcolumns, render
from suanli.cli.arrays import tasks_words
from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, out_console, print_json
from suanli.cli.render import DASH, compact_duration, local_time, state_text, table, when
from suanli.core.api import AttemptOut, JobOut
from suanli.core.api_dryrun import DryRunOut
from suanli.core.errors import SuanliError
from suanli.core.spec import Placement, Resources
from suanli.core.states import JobState
from suanli.sdk import Client

#: Finished jobs younger than this are listed by default.
RECENT = timedelta(hours=24)
#: The pause between listings with --watch; tests may replace it.
sleep: Callable[[float], None] = time.sleep


def jobs(
    ctx: typer.Context,
    *,
    state: Annotated[
        str | None,
        typer.Option(
            "--state", metavar="STATE", help="Only jobs in this state (e.g. pending, running).", show_default=False
        ),
    ] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only jobs at this site.", show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only jobs with this name.", show_default=False)] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant's jobs (the admin sees every tenant's).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only jobs this user submitted.", show_default=False)
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", "-n", min=1, metavar="N", help="Only the newest N of the jobs listed.", show_default=False
        ),
    ] = None,
    all_jobs: Annotated[bool, typer.Option("--all", "-a", help="Include jobs that finished long ago.")] = False,
    expand: Annotated[
        bool, typer.Option("--expand", help="List each task of a job array (ID_INDEX), not one line per array.")
    ] = False,
    columns: Annotated[
        str, typer.Option("--format", "-o", metavar="COLUMNS", help=jobcolumns.FORMAT_HELP, show_default=False)
    ] = jobcolumns.DEFAULT_FORMAT,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="List again every --interval seconds until Ctrl-C (like watch).")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, metavar="S", help="Seconds between listings with --watch.")
    ] = 2.0,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List jobs: by default those pending or running plus those that finished in the last
    24 hours, oldest first. --all lists every job; --state lists every job in that state.

    A job array is one line, its tasks counted by state (--expand lists every task)."""
    wanted = _state(state)
    names = jobcolumns.parse_format(columns)
    if watch and json_out:
        raise typer.BadParameter("--watch redraws a table; drop --json (or loop yourself)", param_hint="'--watch'")
    filters: dict[str, Any] = {"state": wanted.value if wanted else None, "site": site, "name": name}
    filters.update(tenant=tenant, user=user, fold=not expand)
    with open_client(ctx, server, token) as client:
        while True:
            found = _listed(client, filters, everything=all_jobs or wanted is not None, limit=limit)
            if json_out:
                print_json(found)
                return
            console = out_console()
            if watch:
                console.clear()
                console.print(f"Every {interval:g}s: suanli jobs    {render.local_time(render.now())}", style="dim")
            if found:
                headers, rows, flex = jobcolumns.rows(names, found)
                console.print(table(headers, rows, width=console.width, flex=flex))
            else:
                note(_nothing_found(all_jobs or bool(wanted)))
            if not watch:
                return
            try:
                sleep(interval)
            except KeyboardInterrupt:
                return


def _listed(client: Client, filters: dict[str, Any], *, everything: bool, limit: int | None) -> list[JobOut]:
    found = list(client.iter_jobs(**filters))
    site = filters["site"]
    if not found and site and site not in {s.name for s in client.sites()}:
        known = ", ".join(sorted(s.name for s in client.sites()))
        raise SuanliError(f"no site '{site}'; known sites: {known}")
    if not everything:
        cutoff = render.now() - RECENT
        found = [j for j in found if not j.state.is_terminal() or (j.finished_at or j.updated_at) >= cutoff]
    found.sort(key=lambda j: (j.submitted_at, j.id))
    return found[-limit:] if limit is not None else found


def _state(text: str | None) -> JobState | None:
    if text is None:
        return None
    try:
        return JobState(text.strip().upper())
    except ValueError:
        states = ", ".join(s.value.lower() for s in JobState)
        raise typer.BadParameter(f"'{text}' is not a job state; states are {states}", param_hint="'--state'") from None


def status(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.", show_default=False)],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Show one job: its state, why it waits or failed, its resources and every attempt."""
    with open_client(ctx, server, token) as client:
        job = client.job(job_id)
    if json_out:
        print_json(job)
        return
    show_job(out_console(), job)


def show_job(console: Console, job: JobOut) -> None:
    console.print(Text.assemble(("Job ", "bold"), (job.id, "bold"), f" ({job.name})"))
    reason = _reason_line(job)
    if reason is not None:
        console.print(reason)
    fields = list(_fields(job))
    width = max((len(label) for label, _ in fields), default=0) + 2  # "Cost so far" is wider than most
    for label, value in fields:
        console.print(Text.assemble((f"  {label:<{width}}", "dim"), value))
    if job.attempts:
        console.print()
        console.print(Text("Attempts", style="bold"))
        headers = ("#", "SITE", "STATE", "NODES", "STARTED", "ENDED", "EXIT", "MESSAGE")
        console.print(table(headers, (_attempt_row(a) for a in job.attempts), width=console.width))


def _reason_line(job: JobOut) -> Text | None:
    """The one line that says why the job is not running (or why it ended), up front."""
    if not job.reason or job.array is not None:
        return None
    if job.state == JobState.PENDING:
        return Text.assemble(("Waiting: ", "bold yellow"), (job.reason, "yellow"))
    style = "red" if job.state == JobState.FAILED else ""
    return Text.assemble(("Reason: ", "bold"), (job.reason, style))


def _fields(job: JobOut) -> Iterable[tuple[str, str | Text]]:
    state = state_text(job.state)
    if job.cancel_requested and not job.state.is_terminal():
        state.append(" (cancel requested)", style="magenta")
    yield "State", state
    if job.array is not None:
        yield "Tasks", tasks_words(job)
    yield "Tenant", job.tenant
    yield "Site", job.site or DASH
    yield "Priority", job.priority
    yield "Resources", _resources(job)
    placement = _placement(job.spec.get("placement"))
    if placement:
        yield "Placement", placement
    yield "Submitted", when(job.submitted_at)
    if job.finished_at is not None:
        ran = compact_duration((job.finished_at - job.submitted_at).total_seconds())
        yield "Finished", f"{when(job.finished_at)}, {ran} after submission"
    if job.exit_code is not None:
        yield "Exit code", Text(str(job.exit_code), style="green" if job.exit_code == 0 else "red")
    if job.cost_cny is not None:
        label = "Cost" if job.state.is_terminal() else "Cost so far"
        yield label, f"{job.cost_cny.rstrip('0').rstrip('.') or '0'} CNY"


def _resources(job: JobOut) -> str:
    try:
        return Resources.model_validate(job.spec.get("resources") or {}).describe()
    except ValidationError:
        return job.gpus or DASH


def _placement(data: Any) -> str:
    try:
        placement = Placement.model_validate(data or {})
    except ValidationError:
        return ""
    parts = []
    if placement.regions:
        parts.append("regions " + ", ".join(placement.regions))
    if placement.max_price_per_gpu_hour is not None:
        parts.append(f"at most {placement.max_price_per_gpu_hour:g} CNY per GPU-hour")
    if placement.max_latency_ms is not None:
        parts.append(f"at most {placement.max_latency_ms:g} ms away")
    return "; ".join(parts)


def _attempt_row(attempt: AttemptOut) -> tuple[str | Text, ...]:
    names = [n.node for n in sorted(attempt.nodes, key=lambda n: n.rank)]
    nodes = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "") if names else DASH
    return (
        str(attempt.number),
        attempt.site,
        state_text(attempt.state),
        nodes,
        local_time(attempt.started_at, zone=True),
        local_time(attempt.ended_at, zone=True),
        DASH if attempt.exit_code is None else str(attempt.exit_code),
        attempt.message,
    )


def _nothing_found(everything: bool) -> str:
    if everything:
        return "No jobs."
    return "No jobs pending, running or finished in the last 24 hours (--all shows older ones)."


def show_dry_run(console: Console, plan: DryRunOut) -> None:
    """``suanli submit --dry-run``: where and when it would run, what it would cost, and why
    not elsewhere."""
    if plan.site is None:
        console.print(
            Text.assemble(("Would wait: ", "bold yellow"), (plan.reason or "no site can take it now", "yellow"))
        )
    else:
        start = "now" if plan.start_estimate is None or not plan.reason else f"~{local_time(plan.start_estimate)}"
        gpu = f" on {plan.gpu_type}" if plan.gpu_type else ""
        console.print(Text.assemble(("Would run at ", "bold"), (plan.site, "bold"), f"{gpu}, starting {start}"))
        if plan.reason:
            console.print(Text.assemble(("  Waiting: ", "yellow"), plan.reason))
    hours = f"{plan.hours:g} h" + (
        " (time_limit)" if plan.hours_from_time_limit else " (estimated run time: no time_limit)"
    )
    rows: list[tuple[str, str]] = [("Tenant", plan.tenant)]
    if plan.price_per_gpu_hour_cny is not None:
        rows.append(("Price", f"{plan.price_per_gpu_hour_cny} CNY/GPU-hour"))
    rows.append(("Hours", hours))
    if plan.estimated_cost_cny is not None:
        rows.append(("Est. cost", f"{_money(plan.estimated_cost_cny)} CNY"))
    if plan.budget_cny is not None and plan.budget_left_cny is not None:
        rows.append(("Budget left", f"{_money(plan.budget_left_cny)} of {_money(plan.budget_cny)} CNY after it"))
    for label, value in rows:
        console.print(Text.assemble((f"  {label:<13}", "dim"), value))
    others = [s for s in plan.sites if s.site != plan.site]
    if others:
        console.print()
        console.print(Text("Other sites", style="bold"))
        for s in others:
            console.print(f"  {s.text}", soft_wrap=True)


def _money(text: str) -> str:
    return f"{Decimal(text):,.2f}"
