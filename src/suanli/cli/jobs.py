"""Commands that act on jobs: submit, logs, cancel (and following a job to its end)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn
from rich.text import Text

from suanli.cli.arrays import tasks_words, with_array
from suanli.cli.context import (
    JsonOption,
    ServerOption,
    TokenOption,
    err_console,
    note,
    open_client,
    out_console,
    print_json,
    say,
)
from suanli.cli.overrides import (
    EnvOption,
    GpusOption,
    PriorityOption,
    RegionOption,
    TimeOption,
    WorkdirOption,
    overrides_from,
    with_overrides,
    workdir_dir,
)
from suanli.cli.render import state_text
from suanli.cli.views import show_dry_run
from suanli.core.api import JobOut
from suanli.core.dependencies import parse_dependencies
from suanli.core.errors import SpecError
from suanli.core.spec import After, JobSpec, job_spec_from_data, parse_job_spec
from suanli.core.states import QUEUED_REASON, JobState
from suanli.sdk import Client

#: Seconds between polls when the log stream ends before the job's final state is recorded.
POLL_S = 1.0
#: The pause between polls; tests may replace it.
sleep: Callable[[float], None] = time.sleep

JobArg = Annotated[str, typer.Argument(metavar="JOB", help="Job id.", show_default=False)]


def submit(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Job spec (YAML).", show_default=False)],
    *,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the logs until the job ends.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Job name (overrides the spec's).")] = None,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            metavar="NAME[=VALUE]",
            help="A secret for the job's environment, added to the spec's secrets: NAME takes the value of "
            "$NAME in this shell (keeps it out of your shell history), NAME=VALUE gives it. Repeatable.",
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="ID[:WHEN][,ID…]",
            help="Start only after these jobs ended (like sbatch --dependency), added to the spec's after: "
            "ID waits for it to succeed (afterok), ID:any for it to end (afterany), ID:notok for it to "
            "fail or be cancelled (afternotok).",
        ),
    ] = None,
    array: Annotated[
        str | None,
        typer.Option(
            "--array",
            metavar="INDICES",
            help="Submit a job array (like sbatch --array): one task per index, e.g. 0-999, 0-999:4, "
            "1,3,5-7, with %N for at most N at once; each task sees SUANLI_ARRAY_INDEX.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Submit nothing: print the site it would run at now, its estimated start, the price per "
            "GPU-hour, the cost of its time_limit, the budget left after it and every other site's reason.",
        ),
    ] = False,
    gpus: GpusOption = None,
    env: EnvOption = None,
    time: TimeOption = None,
    priority: PriorityOption = None,
    workdir_flag: WorkdirOption = None,
    region: RegionOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a job spec; its workdir (relative to the spec file) is uploaded with it.

    --gpus, --env, --time, --priority, --workdir and --region override the file (flag over
    file); --env adds to the file's envs.

    With --follow the job's output goes to stdout and the exit code is 0 only if it
    SUCCEEDED. With --json (and --follow) the logs go to stderr and the final job is printed.
    With --dry-run nothing is submitted or uploaded (like sbatch --test-only).
    """
    spec = with_array(with_after(with_secrets(load_spec(file, name), secret or []), after), array)
    spec = with_overrides(spec, overrides_from(gpus=gpus, env=env, time=time, priority=priority, region=region))
    if follow and spec.array is not None:
        raise typer.BadParameter(
            "an array has many tasks; follow one with 'suanli logs -f ID_INDEX'", param_hint="--follow"
        )
    if dry_run:
        with open_client(ctx, server, token) as client:
            plan = client.dry_run(spec)
        if json_out:
            print_json(plan)
        else:
            show_dry_run(out_console(), plan)
        return
    workdir = workdir_dir(workdir_flag) or ((file.parent / spec.workdir).resolve() if spec.workdir else None)
    with open_client(ctx, server, token) as client:
        job = _submit(client, spec, workdir)
        show_or_follow(client, job, follow=follow, json_out=json_out)


def rerun(
    ctx: typer.Context,
    job_id: JobArg,
    *,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream the logs until the job ends.")] = False,
    name: Annotated[str | None, typer.Option("--name", help="Name of the new job.", show_default=False)] = None,
    gpus: GpusOption = None,
    env: EnvOption = None,
    time: TimeOption = None,
    priority: PriorityOption = None,
    workdir_flag: WorkdirOption = None,
    region: RegionOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Submit a job again as a new job: its stored spec, secrets and workdir, with any of
    --gpus, --env, --time, --priority, --workdir, --region, --name over them.

    A task of a job array (ID_INDEX) runs again as one job. Exit codes as for submit."""
    given = overrides_from(name=name, gpus=gpus, env=env, time=time, priority=priority, region=region)
    workdir = workdir_dir(workdir_flag)
    with open_client(ctx, server, token) as client:
        if workdir is None:
            job = client.rerun(job_id, given)
        else:
            job = client.rerun(job_id, given, workdir=workdir)
            note(f"Uploaded workdir {workdir}")
        show_or_follow(client, job, follow=follow, json_out=json_out)


def logs(
    ctx: typer.Context,
    job_id: JobArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    tail: Annotated[
        int | None,
        typer.Option(
            "--tail", "-n", min=1, metavar="N", help="Only the last N lines (then follow, with -f).", show_default=False
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only output received since WHEN: a duration back (10m, 2h, 1d) or a time "
            "(2026-12-03T06:40:00, UTC unless it gives an offset such as +08:00).",
            show_default=False,
        ),
    ] = None,
    rank: Annotated[
        int | None,
        typer.Option(
            "--rank", min=0, metavar="R", help="Only node rank R's output (multi-node jobs).", show_default=False
        ),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Prefix each line with when the server received it (UTC).")
    ] = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print a job's output.

    A job that has not started says why it waits (on stderr). --since, --rank and --tail
    combine: the last N lines of that rank since then."""
    with open_client(ctx, server, token) as client:
        job = client.job(job_id)
        if job.state == JobState.PENDING:
            waiting = f"{job.id} is pending: {job.reason or QUEUED_REASON}"
            note(waiting + ("; its output follows once it starts" if follow else "; no output yet"))
        for text in client.logs(job_id, follow=follow, tail=tail, since=since, rank=rank, timestamps=timestamps):
            typer.echo(text, nl=False)


def cancel(
    ctx: typer.Context,
    job_id: JobArg,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a job. A running job is stopped at its site; its state shows when it is gone."""
    with open_client(ctx, server, token) as client:
        before = client.job(job_id)
        if before.state.is_terminal():
            if json_out:
                print_json(before)
            else:
                line = Text.assemble(f"Job {before.id} ({before.name}) already ended: ", state_text(before.state))
                say(line.append("; nothing to cancel"))
            return
        job = client.cancel(job_id)
    if json_out:
        print_json(job)
    elif job.state.is_terminal():
        say(Text.assemble(f"Job {job.id} ({job.name}): ", state_text(job.state)))
    else:
        say(
            Text.assemble(f"Job {job.id} ({job.name}): ", state_text(job.state), ", cancel requested; it stops shortly")
        )


def show_or_follow(client: Client, job: JobOut, *, follow: bool, json_out: bool) -> None:
    """Print a submitted job; with ``follow`` stream its logs and exit 0 only if it SUCCEEDED."""
    if not follow:
        if json_out:
            print_json(job)
        else:
            _print_submitted(job, to_stderr=False)
        return
    if not json_out:
        _print_submitted(job, to_stderr=True)
    final = follow_job(client, job, logs_to_stderr=json_out)
    if json_out:
        print_json(final)
    _print_final(final)
    raise typer.Exit(0 if final.state == JobState.SUCCEEDED else 1)


def load_spec(file: Path, name: str | None = None) -> JobSpec:
    """Read and validate a spec file; ``--name`` is checked by the same rules as the file."""
    spec = parse_job_spec(file.read_text(encoding="utf-8"), str(file))
    if name is None:
        return spec
    try:
        return job_spec_from_data({**spec.model_dump(), "name": name})
    except SpecError as exc:
        raise typer.BadParameter("; ".join(p.message for p in exc.problems), param_hint="--name") from None


def with_after(spec: JobSpec, given: str | None) -> JobSpec:
    """The spec with ``--after`` dependencies added to its ``after``."""
    if not given:
        return spec
    try:
        added = [After(job=d.job, when=d.when) for d in parse_dependencies(given)]
    except ValueError as exc:  # pydantic's ValidationError is one
        raise typer.BadParameter(str(exc).splitlines()[0], param_hint="--after") from None
    return spec.model_copy(update={"after": [*spec.after, *added]})


def with_secrets(spec: JobSpec, given: list[str]) -> JobSpec:
    """The spec with ``--secret`` options merged into its ``secrets`` (they win over the file's)."""
    if not given:
        return spec
    secrets = dict(spec.secrets)
    for item in given:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                raise typer.BadParameter(
                    f"${key} is not set in this shell; export it, or give the value as {key}=VALUE",
                    param_hint="--secret",
                )
            value = os.environ[key]
        secrets[key] = value
    try:
        return job_spec_from_data({**spec.model_dump(), "secrets": secrets})
    except SpecError as exc:
        raise typer.BadParameter("; ".join(p.message for p in exc.problems), param_hint="--secret") from None


def follow_job(client: Client, job: JobOut, *, logs_to_stderr: bool = False) -> JobOut:
    """Stream the logs, then wait for the final state. Ctrl-C stops following, not the job."""
    try:
        for text in client.logs(job.id, follow=True):
            typer.echo(text, nl=False, err=logs_to_stderr)
        current = client.job(job.id)
        while not current.state.is_terminal():
            sleep(POLL_S)
            current = client.job(job.id)
    except KeyboardInterrupt:
        note(f"Stopped following; job {job.id} keeps running. Cancel it with: suanli cancel {job.id}")
        raise typer.Exit(130) from None
    return current


def _submit(client: Client, spec: JobSpec, workdir: Path | None) -> JobOut:
    if workdir is None:
        return client.submit(spec)
    sent = 0
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=err_console(), transient=True) as bar:
        task = bar.add_task("Packing workdir", total=None)

        def progress(done: int, total: int) -> None:
            nonlocal sent
            sent = total
            bar.update(task, description="Uploading workdir", completed=done, total=total)

        job = client.submit(spec, workdir=workdir, progress=progress)
    note(f"Uploaded workdir {workdir} ({_size(sent)} compressed)")
    return job


def _print_submitted(job: JobOut, *, to_stderr: bool) -> None:
    show = note if to_stderr else say
    if job.array is not None:
        show(Text.assemble(f"Submitted job array {job.id} ({job.name}): ", tasks_words(job)))
        return
    show(Text.assemble(f"Submitted job {job.id} ({job.name}): ", state_text(job.state)))
    if job.state == JobState.PENDING and job.reason and job.reason != QUEUED_REASON:
        show(f"  Waiting: {job.reason}", style="yellow")


def _print_final(job: JobOut) -> None:
    line = Text.assemble(f"Job {job.id} ({job.name}) ", state_text(job.state))
    if job.exit_code is not None and job.state != JobState.SUCCEEDED:
        line.append(f", exit code {job.exit_code}")
    why = job.reason or (job.attempts[-1].message if job.attempts else "")
    if why and job.state != JobState.SUCCEEDED:
        line.append(f": {why}")
    note(line)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 2**20:.1f} MiB"
