"""``suanli explain JOB``: why a job runs where it does, or why it waits, site by site."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from suanli.cli.context import JsonOption, ServerOption, TokenOption, open_client, out_console, print_json
from suanli.cli.render import local_time, state_text
from suanli.core.api import ExplainOut
from suanli.core.states import JobState


def explain(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="Job id.", show_default=False)],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Explain a job's placement: its state and reason, then per site why it was or was not
    chosen (GPU type, regions, latency, price, when capacity frees)."""
    with open_client(ctx, server, token) as client:
        out = client.explain(job_id)
    if json_out:
        print_json(out)
        return
    for line in render_explain(out):
        out_console().print(line)


def render_explain(out: ExplainOut) -> list[Text]:
    lines = [Text.assemble(("Job ", "bold"), (out.job_id, "bold"), f" ({out.name}) ", state_text(out.state))]
    if out.reason:
        label = "Waiting: " if out.state == JobState.PENDING else "Reason: "
        lines.append(Text.assemble((label, "bold yellow" if out.state == JobState.PENDING else "bold"), out.reason))
    lines.append(Text.assemble(("  Optimize  ", "dim"), out.optimize))
    for dependency in out.after:
        lines.append(Text.assemble(("  After     ", "dim"), dependency))
    if out.reserved_site and out.reserved_start_at:
        lines.append(
            Text.assemble(("  Reserved  ", "dim"), f"{out.reserved_site} from {local_time(out.reserved_start_at)}")
        )
    lines.append(Text("Sites", style="bold"))
    for s in out.sites:
        mark, style = ("✓", "green") if s.allowed else ("✗", "red")
        if s.chosen:
            mark, style = ("→", "bold green")
        elif s.allowed and not s.fits_now:
            mark, style = ("…", "yellow")
        lines.append(Text.assemble(f"  {mark} ", (s.text, style)))
    return lines
