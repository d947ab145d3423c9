"""One replay, a comparison of policies, or a sweep of cluster sizes → files in an out folder.

Layout of ``out``: ``summary.json`` (the first policy's metrics at the top level, every
policy's under ``policies``; under ``sweep`` for ``--scale-gpus``), ``jobs.csv`` (or
``<policy>/jobs.csv`` when comparing), PNG plots, and ``report.html`` with the plots inlined.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suanli.core.network import NetworkSpec
from suanli.sim.engine import Simulation
from suanli.sim.metrics import summarize, write_jobs_csv
from suanli.sim.networks import scale_network
from suanli.sim.policies import make_policy
from suanli.sim.report import plot_jct_cdf, plot_sweep, plot_timelines, write_html
from suanli.sim.speed import MeasuredDuration, PolluxProfiles, SpeedModel
from suanli.sim.state import SimResult
from suanli.sim.trace import Trace, TraceError

ProgressFn = Callable[[str, int, int], None]


@dataclass
class ReplayOptions:
    policies: list[str]
    interval_s: float = 60.0
    tiresias_threshold_gpu_h: float = 16.0
    #: Folder of Pollux application profiles (pollux traces only).
    profiles: Path | None = None
    #: Seconds a job needs to restart after each (re)allocation; None: the speed model's.
    restart_s: float | None = None
    plots: bool = True
    #: Every job's placement.optimize: balanced, time, cost or latency.
    optimize: str = "balanced"
    on_progress: ProgressFn | None = None
    #: Site (or ``*``) → CNY per GPU-hour owned, instead of the tariffs' GPU prices.
    capacity_cost: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def speed_model(trace: Trace, opts: ReplayOptions) -> SpeedModel:
    if trace.kind == "pollux":
        folder = opts.profiles or trace.path.parent.parent / "profiles"
        if not folder.is_dir():
            raise TraceError(f"pollux traces need the application profiles: no folder {folder}; pass --profiles DIR")
        model: SpeedModel = PolluxProfiles(folder)
    else:
        model = MeasuredDuration()
    if opts.restart_s is not None:
        model.restart_s = opts.restart_s
    return model


def replay(trace: Trace, network: NetworkSpec, policy: str, opts: ReplayOptions) -> SimResult:
    progress = opts.on_progress

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress(policy, done, total)

    sim = Simulation(
        trace,
        network,
        make_policy(policy, opts.tiresias_threshold_gpu_h),
        speed_model(trace, opts),
        opts.interval_s,
        on_progress=tick,
        optimize=opts.optimize,
    )
    result = sim.run()
    result.notes.extend(trace.notes)
    return result


def _facts(trace: Trace, network_name: str, network: NetworkSpec, opts: ReplayOptions) -> dict[str, str]:
    gpus = sum(n.gpu_count for s in network.sites for n in s.node_decls())
    return {
        "trace": f"{trace.kind}:{trace.path}",
        "jobs in trace": f"{len(trace.jobs)} (rows skipped: {trace.skipped})",
        "network": f"{network_name}: {len(network.sites)} site(s), {gpus} GPUs",
        "scheduling interval": f"{opts.interval_s:g} s",
        "policies": ", ".join(opts.policies),
    }


def _write_summary(out: Path, summaries: dict[str, dict[str, Any]], extra: dict[str, Any]) -> Path:
    first = next(iter(summaries.values()))
    doc = {**first, "policies": summaries, **extra}
    path = out / "summary.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def run_compare(
    trace: Trace, network: NetworkSpec, network_name: str, opts: ReplayOptions, out: Path
) -> dict[str, Any]:
    """Replay ``trace`` under each policy; write summary.json, jobs.csv, plots, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    results = [replay(trace, network, p, opts) for p in opts.policies]
    summaries = {r.policy: summarize(r, opts.capacity_cost) for r in results}
    for r in results:
        folder = out if len(results) == 1 else out / r.policy
        folder.mkdir(exist_ok=True)
        write_jobs_csv(r, folder / "jobs.csv")
        if len(results) > 1:
            (folder / "summary.json").write_text(json.dumps(summaries[r.policy], indent=2) + "\n", encoding="utf-8")
    images = [*plot_timelines(results, out), *plot_jct_cdf(results, out)] if opts.plots else []
    notes = [*trace.notes, *opts.notes]
    if trace.skipped:
        notes.append(f"{trace.skipped} malformed row(s) skipped (--skip-bad)")
    _write_summary(out, summaries, {"trace": f"{trace.kind}:{trace.path}", "skipped_rows": trace.skipped})
    write_html(out, "suanli simulate", _facts(trace, network_name, network, opts), summaries, images, notes)
    return summaries


def run_sweep(
    trace: Trace,
    networks: Sequence[tuple[str, NetworkSpec]],
    opts: ReplayOptions,
    out: Path,
) -> list[dict[str, Any]]:
    """Replay under each (label, network) and each policy; write each run's jobs.csv under
    ``run-N/<policy>/``; plot JCT, queueing, utilisation and cost against size, knee marked."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for n, (label, network) in enumerate(networks, start=1):
        for policy in opts.policies:
            result = replay(trace, network, policy, opts)
            folder = out / f"run-{n}" / policy
            folder.mkdir(parents=True, exist_ok=True)
            write_jobs_csv(result, folder / "jobs.csv")
            summary = summarize(result, opts.capacity_cost)
            rows.append({"network": label, "jobs_csv": str(folder.relative_to(out) / "jobs.csv"), **summary})
    mark_knees(rows)
    images = plot_sweep(rows, out) if opts.plots else []
    summaries = {f"{r['policy']} @ {r['network']}": r for r in rows}
    _write_summary(out, summaries, {"sweep": rows, "trace": f"{trace.kind}:{trace.path}"})
    facts = _facts(trace, networks[0][0], networks[0][1], opts)
    facts["network"] = "; ".join(f"{label}" for label, _ in networks)
    write_html(out, "suanli simulate: capacity sweep", facts, summaries, images, trace.notes)
    return rows


def mark_knees(rows: list[dict[str, Any]]) -> None:
    """Per policy, the sweep's knee: past it, more GPUs buy little JCT for what they cost. It is
    the point farthest from the chord between the smallest and the largest network, on
    average JCT against GPUs both scaled to 0..1 (Kneedle's rule); ``knee`` is True there."""
    for policy in {r["policy"] for r in rows}:
        pts = sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["total_gpus"])
        for r in pts:
            r["knee"] = False
        if len(pts) < 3:
            continue
        xs = [float(r["total_gpus"]) for r in pts]
        ys = [float(r["avg_jct_s"]) for r in pts]
        dx, dy = (xs[-1] - xs[0]) or 1.0, (ys[0] - ys[-1]) or 1.0
        # JCT falls as GPUs grow: the knee is where the normalised curve sags farthest below the chord.
        gaps = [((x - xs[0]) / dx) - ((ys[0] - y) / dy) for x, y in zip(xs, ys, strict=True)]
        best = min(range(len(pts)), key=lambda i: (gaps[i], xs[i]))
        if gaps[best] < 0:
            pts[best]["knee"] = True


def scaled(network: NetworkSpec, name: str, factors: Sequence[float]) -> list[tuple[str, NetworkSpec]]:
    return [(f"{name} ×{f:g}", scale_network(network, f)) for f in factors]
