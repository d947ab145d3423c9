"""What the CLI adds for job arrays: ``submit --array`` and how an array is shown."""

from __future__ import annotations

import typer

from suanli.core.api import JobOut
from suanli.core.arrays import parse_array
from suanli.core.spec import JobSpec


def with_array(spec: JobSpec, given: str | None) -> JobSpec:
    """The spec with ``--array`` as its ``array`` (it wins over the file's)."""
    if given is None:
        return spec
    try:
        array = parse_array(given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--array") from None
    if spec.output is not None:
        raise typer.BadParameter(
            "an array's tasks cannot all become one output dataset; drop output from the spec", param_hint="--array"
        )
    return spec.model_copy(update={"array": array})


def tasks_words(job: JobOut) -> str:
    """``4 tasks (0-9:3), ID_0 … ID_9: 3 PENDING, 1 CANCELLED`` for an array; "" for a job."""
    if job.array is None:
        return ""
    ids = f"{job.id}_INDEX"
    limit = f", at most {job.array.max_running} at once" if job.array.max_running else ""
    return f"{job.array.tasks:,} tasks ({job.array.expression}{limit}) named {ids}: {job.reason}"
