"""The columns ``suanli jobs`` can show, and ``--format`` (a column list, like ``squeue -o``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import typer
from rich.text import Text

from suanli.cli.render import DASH, Cell, age, local_time, state_text
from suanli.core.api import JobOut
from suanli.core.states import JobState


def _reason(job: JobOut) -> str:
    if not job.reason and job.state == JobState.FAILED and job.attempts:
        return job.attempts[-1].message
    return job.reason


def _elapsed(job: JobOut) -> str:
    starts = [a.started_at for a in job.attempts if a.started_at is not None]
    if not starts:
        return DASH
    return age(starts[-1], job.finished_at if job.state.is_terminal() else None)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[JobOut], Cell]
    help: str


COLUMNS: dict[str, Column] = {
    "id": Column("ID", lambda j: j.id, "job id (an array's ID; its tasks ID_INDEX)"),
    "name": Column("NAME", lambda j: j.name, "job name"),
    "state": Column("STATE", lambda j: state_text(j.state), "state"),
    "user": Column("USER", lambda j: j.user or DASH, "who submitted it"),
    "tenant": Column("TENANT", lambda j: j.tenant, "its tenant"),
    "site": Column("SITE", lambda j: j.site or DASH, "site of its current or last attempt"),
    "gpus": Column("GPUS", lambda j: j.gpus or DASH, "the GPUs it asks for"),
    "priority": Column("PRIORITY", lambda j: j.priority, "priority"),
    "age": Column("AGE", lambda j: age(j.submitted_at), "time since it was submitted"),
    "submitted": Column("SUBMITTED", lambda j: local_time(j.submitted_at), "when it was submitted (local time)"),
    "elapsed": Column("ELAPSED", _elapsed, "how long its last attempt ran (or runs)"),
    "exit": Column("EXIT", lambda j: DASH if j.exit_code is None else str(j.exit_code), "exit code"),
    "cost": Column("COST", lambda j: j.cost_cny or DASH, "metered cost so far, CNY"),
    "reason": Column("REASON", lambda j: Text(_reason(j)), "why it waits, or why it failed"),
}

#: What ``suanli jobs`` shows without ``--format``.
DEFAULT_FORMAT = "id,name,state,site,gpus,age,reason"

FORMAT_HELP = "Columns to show, comma-separated, like squeue -o: " + ",".join(COLUMNS) + f" (default {DEFAULT_FORMAT})."


def parse_format(text: str) -> list[str]:
    """The column names ``--format`` lists, checked (a sentence naming the known ones if not)."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown or not names:
        what = f"unknown column {', '.join(repr(n) for n in unknown)}" if unknown else "no columns given"
        raise typer.BadParameter(f"{what}; columns are {', '.join(COLUMNS)}", param_hint="'--format'")
    return names


def rows(names: list[str], jobs: list[JobOut]) -> tuple[list[str], list[list[Cell]], int]:
    """Headers, rows, and the column that wraps (REASON when shown, else the last)."""
    headers = [COLUMNS[n].header for n in names]
    cells = [[COLUMNS[n].cell(j) for n in names] for j in jobs]
    flex = names.index("reason") if "reason" in names else len(names) - 1
    return headers, cells, flex
