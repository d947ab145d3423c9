"""Plots (PNG, matplotlib imported only here and only when drawing) and a self-contained HTML
report with the plots inlined, so one file can be mailed or attached to a ticket."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from suanli import adaptors
from suanli.sim.state import SimResult

MAX_POINTS = 20000


def _thin(points: Sequence[tuple[float, int, int]]) -> list[tuple[float, int, int]]:
    step = max(1, len(points) // MAX_POINTS)
    return list(points[::step]) + ([points[-1]] if points else [])


def plot_timelines(results: Sequence[SimResult], out: Path) -> list[Path]:
    """utilization.png (busy GPUs ÷ all, over time) and queue.png (waiting jobs over time)."""
    plt = adaptors.pyplot()
    if plt is None:
        return []
    paths = []
    for name, column, label in (("utilization.png", 1, "GPU utilisation"), ("queue.png", 2, "jobs waiting")):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        dated = all(r.dated for r in results)
        for r in results:
            pts = _thin(r.timeline)
            xs: list[Any] = (
                [r.epoch + timedelta(seconds=t) for t, _, _ in pts] if dated else [t / 3600 for t, _, _ in pts]
            )
            ys = [p[column] / r.total_gpus if column == 1 and r.total_gpus else p[column] for p in pts]
            ax.step(xs, ys, where="post", label=r.policy, linewidth=0.9)
        ax.set_xlabel("date (UTC)" if dated else "hours since the first submission")
        if dated:
            fig.autofmt_xdate()
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


def plot_jct_cdf(results: Sequence[SimResult], out: Path) -> list[Path]:
    plt = adaptors.pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        jcts = sorted(((j.finish or 0.0) - j.trace.submit_s) / 3600 for j in r.jobs)
        if jcts:
            ys = [(i + 1) / len(jcts) for i in range(len(jcts))]
            ax.plot(jcts, ys, label=r.policy)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (hours, log scale)")
    ax.set_ylabel("fraction of jobs")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "jct_cdf.png", dpi=110)
    plt.close(fig)
    return [out / "jct_cdf.png"]


#: The sweep's plots: file, summary key, axis label, factor.
SWEEP_PLOTS = (
    ("jct_vs_scale.png", ("median_jct_s", "p99_jct_s"), "JCT (hours): p50, p99", 1 / 3600),
    ("queue_vs_scale.png", ("avg_queue_s",), "average queueing delay (hours)", 1 / 3600),
    ("utilization_vs_scale.png", ("gpu_utilization",), "GPU utilisation", 1.0),
    ("cost_vs_scale.png", ("total_cost_cny",), "total cost of the GPUs owned (CNY)", 1.0),
)


def plot_sweep(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """JCT (p50 and p99), queueing, utilisation and total cost against GPUs, one line per
    policy (and percentile); the knee (``knee`` in a row) marked with a dotted line."""
    plt = adaptors.pyplot()
    if plt is None:
        return []
    paths = []
    policies = sorted({r["policy"] for r in rows})
    for name, keys, label, factor in SWEEP_PLOTS:
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in policies:
            mine = sorted((r for r in rows if r["policy"] == p), key=lambda r: r["total_gpus"])
            for key in keys:
                tag = f"{p} {key.split('_')[0].replace('median', 'p50')}" if len(keys) > 1 else p
                ax.plot([r["total_gpus"] for r in mine], [r[key] * factor for r in mine], marker="o", label=tag)
            for r in mine:
                if r.get("knee"):
                    ax.axvline(r["total_gpus"], linestyle=":", color="grey")
                    ax.annotate(f"knee ({p})", (r["total_gpus"], r[keys[0]] * factor), fontsize=8)
        ax.set_xlabel("GPUs in the network")
        ax.set_ylabel(label)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        paths.append(out / name)
    return paths


_ROWS = (
    ("jobs", "jobs", "{:.0f}"),
    ("refused (never fit)", "refused_jobs", "{:.0f}"),
    ("failed (no retries left)", "failed_jobs", "{:.0f}"),
    ("average JCT (h)", "avg_jct_s", "h"),
    ("median JCT (h)", "median_jct_s", "h"),
    ("p99 JCT (h)", "p99_jct_s", "h"),
    ("average queueing delay (h)", "avg_queue_s", "h"),
    ("makespan (h)", "makespan_s", "h"),
    ("GPU utilisation", "gpu_utilization", "{:.1%}"),
    ("Jain's fairness", "jain_fairness", "{:.3f}"),
    ("revenue at the tariffs (CNY)", "revenue_cny", "{:,.0f}"),
    ("total cost of the GPUs owned (CNY)", "total_cost_cny", "{:,.0f}"),
    ("… of them busy (CNY)", "busy_cost_cny", "{:,.0f}"),
    ("… of them idle (CNY)", "idle_cost_cny", "{:,.0f}"),
    ("GPU-hours", "gpu_hours", "{:,.0f}"),
    ("preemptions", "preemptions", "{:.0f}"),
    ("GPUs", "total_gpus", "{:.0f}"),
)


def _fmt(value: Any, fmt: str) -> str:
    if fmt == "h":
        return f"{float(value) / 3600:.3f}"
    return fmt.format(value)


_TENANT_COLUMNS = (
    ("jobs", "jobs", "{:.0f}"),
    ("failed", "failed_jobs", "{:.0f}"),
    ("avg JCT (h)", "avg_jct_s", "h"),
    ("p50 JCT (h)", "median_jct_s", "h"),
    ("p99 JCT (h)", "p99_jct_s", "h"),
    ("avg queue (h)", "avg_queue_s", "h"),
    ("GPU-hours", "gpu_hours", "{:,.0f}"),
    ("paid (CNY)", "revenue_cny", "{:,.0f}"),
)


def _tenant_tables(summaries: dict[str, dict[str, Any]]) -> str:
    """Per tenant, one table per run (the first 50 tenants by GPU-hours)."""
    parts = []
    for run, s in summaries.items():
        tenants = s.get("tenants") or {}
        if len(tenants) < 2:
            continue
        top = sorted(tenants.items(), key=lambda kv: -kv[1]["gpu_hours"])[:50]
        head = "".join(f"<th>{html.escape(label)}</th>" for label, _, _ in _TENANT_COLUMNS)
        body = "".join(
            f"<tr><td>{html.escape(t)}</td>" + "".join(f"<td>{_fmt(v[k], f)}</td>" for _, k, f in _TENANT_COLUMNS)
            for t, v in top
        )
        parts.append(
            f'<h3>{html.escape(run)}</h3><div class="wide"><table><tr><th>tenant</th>{head}</tr>{body}</table></div>'
        )
    return "<h2>Per tenant</h2>" + "".join(parts) if parts else ""


def write_html(
    out: Path,
    title: str,
    facts: dict[str, str],
    summaries: dict[str, dict[str, Any]],
    images: Sequence[Path],
    notes: Sequence[str] = (),
) -> Path:
    """report.html: the facts of the run, the metrics side by side, the plots inlined."""
    head = "".join(f"<th>{html.escape(p)}</th>" for p in summaries)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{_fmt(s.get(key, 0), fmt)}</td>" for s in summaries.values())
        + "</tr>"
        for label, key, fmt in _ROWS
    )
    facts_html = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    imgs = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in images
        if p.exists()
    )
    if not imgs:
        imgs = "<p>No plots: install matplotlib (<code>pip install 'suanli[sim]'</code>) to draw them.</p>"
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    tenants = _tenant_tables(summaries)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}
td:first-child{{text-align:left}} .wide{{overflow-x:auto;max-width:100%}} figure{{margin:1em 0}} img{{max-width:100%}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts_html}</table>
<h2>Metrics</h2>
<div class="wide"><table><tr><th></th>{head}</tr>{body}</table></div>
{tenants}
<h2>Plots</h2>{imgs}
{"<h2>Notes</h2><ul>" + notes_html + "</ul>" if notes_html else ""}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
