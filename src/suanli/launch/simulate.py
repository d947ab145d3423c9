"""`suanli simulate`: replay a real trace on a network, under one or several policies.

It lives beside the commands that start processes, not in ``suanli.cli``: the CLI is built on
the SDK only, and the simulator (``suanli.sim``) is imported inside the command, so `suanli
jobs` and friends start as fast as before.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from suanli.core.errors import SuanliError

err = Console(stderr=True, soft_wrap=True)
PANEL = "Plan"


def simulate(
    trace: Annotated[
        str,
        typer.Option(
            "--trace",
            "-t",
            help="KIND:PATH; KIND is philly, gavel, pollux, tiresias, alibaba-openb or csv.",
        ),
    ],
    network: Annotated[
        list[str],
        typer.Option(
            "--network",
            "-n",
            help="Network file (the server's format), philly-vc:PHILLY_VC.CSV or openb-nodes:NODE_LIST.CSV; "
            "repeat it to compare networks.",
        ),
    ],
    policy: Annotated[str, typer.Option("--policy", "-p", help="default, fifo, sjf or tiresias.")] = "default",
    compare: Annotated[
        str | None, typer.Option("--compare", help="Several policies side by side, e.g. default,tiresias.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for summary.json, jobs.csv, plots, report.")] = Path(
        "sim-out"
    ),
    scale_gpus: Annotated[
        str | None, typer.Option("--scale-gpus", help="Sweep cluster size: node counts × each factor, e.g. 0.5,1,2.")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Scheduling interval, seconds (0: every event).")
    ] = 60.0,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Skip malformed trace rows and count them.")] = False,
    column: Annotated[
        list[str] | None, typer.Option("--column", help="For csv traces: KEY=NAME, e.g. submit=start_time.")
    ] = None,
    profiles: Annotated[
        Path | None, typer.Option("--profiles", help="Pollux profile folder (default: next to the workloads).")
    ] = None,
    tiresias_threshold: Annotated[
        float, typer.Option("--tiresias-threshold", help="Tiresias demotion threshold, GPU-hours.")
    ] = 16.0,
    restart_s: Annotated[
        float | None, typer.Option("--restart-s", help="Restart cost per (re)allocation, seconds.")
    ] = None,
    throughputs: Annotated[
        Path | None,
        typer.Option(
            "--throughputs", help="Gavel traces: simulation_throughputs.json (default: beside the seed=N folder)."
        ),
    ] = None,
    gavel_gpu: Annotated[
        str | None,
        typer.Option(
            "--gavel-gpu",
            help="Gavel traces: the worker type (v100, p100, k80) whose throughputs give run times "
            "(default: the network's first GPU type Gavel measured).",
        ),
    ] = None,
    capacity_cost: Annotated[
        list[str] | None,
        typer.Option(
            "--capacity-cost",
            help="SITE=CNY (or *=CNY): what a GPU-hour owned costs there, busy or idle "
            "(default: the site's tariff GPU price).",
        ),
    ] = None,
    optimize: Annotated[
        str, typer.Option("--optimize", help="Every job's placement.optimize: balanced, time, cost or latency.")
    ] = "balanced",
    no_plots: Annotated[bool, typer.Option("--no-plots", help="Skip the PNG plots.")] = False,
    open_report: Annotated[bool, typer.Option("--open", help="Open report.html in a browser when done.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Replay a real trace on a network with the same scheduler the server runs, and report."""
    from suanli.sim import networks as nets
    from suanli.sim import runner
    from suanli.sim.costs import parse_capacity_cost
    from suanli.sim.policies import POLICIES
    from suanli.sim.trace import load_trace

    policies = [p.strip() for p in (compare or policy).split(",") if p.strip()]
    for p in policies:
        if p not in POLICIES:
            raise SuanliError(f"unknown policy '{p}'; choose from {', '.join(POLICIES)}")
    if optimize not in ("balanced", "time", "cost", "latency"):
        raise SuanliError(f"--optimize '{optimize}' is not one of balanced, time, cost, latency")
    mapping = {}
    for item in column or []:
        key, sep, name = item.partition("=")
        if not sep:
            raise SuanliError(f"--column '{item}' is not KEY=NAME, e.g. submit=start_time")
        mapping[key.strip()] = name.strip()
    try:
        owned_price = parse_capacity_cost(capacity_cost or [])
    except ValueError as exc:
        raise SuanliError(f"--capacity-cost: {exc}") from None
    specs = [(name, nets.named_network(name)) for name in network]
    worker = gavel_gpu.lower() if gavel_gpu else None
    if trace.startswith("gavel:") and worker is None:
        from suanli.sim import gavel

        worker = gavel.network_worker(specs[0][1], throughputs or gavel.default_throughputs(Path(trace[6:])))
    loaded = load_trace(trace, skip_bad=skip_bad, mapping=mapping, gavel_worker=worker, throughputs=throughputs)
    if trace.startswith("pollux:") and profiles is None and not (loaded.path.parent.parent / "profiles").is_dir():
        raise SuanliError("pollux traces need the application profiles; pass --profiles DIR")
    with _progress(quiet) as bar:
        tasks: dict[str, TaskID] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if bar is None:
                return
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        opts = runner.ReplayOptions(
            policies,
            interval_s=interval,
            tiresias_threshold_gpu_h=tiresias_threshold,
            profiles=profiles,
            restart_s=restart_s,
            plots=not no_plots,
            optimize=optimize,
            on_progress=on_progress,
            capacity_cost=owned_price,
        )
        if scale_gpus or len(specs) > 1:
            try:
                factors = nets.parse_scales(scale_gpus) if scale_gpus else []
            except ValueError as exc:
                raise SuanliError(f"--scale-gpus: {exc}") from None
            sweep = runner.scaled(specs[0][1], specs[0][0], factors) if factors else specs
            rows = runner.run_sweep(loaded, sweep, opts, out)
            for r in rows:
                typer.echo(
                    f"{r['network']:<40} {r['policy']:<9} GPUs {r['total_gpus']:>6}  "
                    f"avg JCT {r['avg_jct_s'] / 3600:8.3f} h  p99 {r['p99_jct_s'] / 3600:8.2f} h  "
                    f"utilisation {r['gpu_utilization']:6.1%}  total cost {r['total_cost_cny']:>14,.0f} CNY "
                    f"(idle {r['idle_cost_cny']:,.0f})" + ("  <- knee" if r.get("knee") else "")
                )
        else:
            summaries = runner.run_compare(loaded, specs[0][1], specs[0][0], opts, out)
            for name, s in summaries.items():
                typer.echo(
                    f"{name:<9} jobs {s['jobs']:>6}  avg JCT {s['avg_jct_s'] / 3600:8.3f} h  "
                    f"p99 {s['p99_jct_s'] / 3600:8.2f} h  queue {s['avg_queue_s'] / 3600:7.3f} h  "
                    f"utilisation {s['gpu_utilization']:.1%}  cost {s['cost_cny']:,.0f} CNY"
                )
            for line in gain_lines(summaries):
                typer.echo(line)
    if loaded.skipped:
        err.print(f"skipped {loaded.skipped} malformed row(s)")
    report = out / "report.html"
    where = "each run's jobs.csv under run-N/<policy>/" if scale_gpus or len(specs) > 1 else "jobs.csv"
    err.print(f"report: {report}  (summary.json beside it; {where})")
    if open_report:
        webbrowser.open(report.resolve().as_uri())


def gain_lines(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """With ``default`` among the compared policies: what it gains over each other one."""
    base = summaries.get("default")
    if base is None:
        return []
    out = []
    for name, s in summaries.items():
        if name == "default" or not s.get("avg_jct_s") or not s.get("p99_jct_s"):
            continue
        avg = base["avg_jct_s"] / s["avg_jct_s"] - 1
        p99 = base["p99_jct_s"] / s["p99_jct_s"] - 1
        out.append(
            f"default vs {name}: avg JCT {avg:+.1%}  p99 {p99:+.1%}  "
            f"Jain {base['jain_fairness']:.2f} vs {s['jain_fairness']:.2f}"
        )
    return out


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _progress(quiet: bool) -> Progress | _NoBar:
    if quiet:
        return _NoBar()
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("jobs done"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
