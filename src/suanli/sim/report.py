"""Plots (PNG, matplotlib imported only here and only when drawing) and a self-contained HTML
report with the plots inlined, so one file can be mailed or attached to a ticket."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from suanli import adaptors
from suanli.sim.engine import SimResult

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
        for r in results:
            pts = _thin(r.timeline)
            xs = [t / 3600 for t, _, _ in pts]
            ys = [p[column] / r.total_gpus if column == 1 and r.total_gpus else p[column] for p in pts]
            ax.step(xs, ys, where="post", label=r.policy, linewidth=0.9)
        ax.set_xlabel("hours since the first submission")
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


def plot_sweep(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """jct_vs_scale.png and utilization_vs_scale.png: one line per policy."""
    plt = adaptors.pyplot()
    if plt is None:
        return []
    paths = []
    policies = sorted({r["policy"] for r in rows})
    for name, key, label, factor in (
        ("jct_vs_scale.png", "avg_jct_s", "average JCT (hours)", 1 / 3600),
        ("utilization_vs_scale.png", "gpu_utilization", "GPU utilisation", 1.0),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in policies:
            pts = sorted((r["total_gpus"], r[key] * factor) for r in rows if r["policy"] == p)
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p)
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
    ("cost (CNY)", "cost_cny", "{:,.0f}"),
    ("GPU-hours", "gpu_hours", "{:,.0f}"),
    ("preemptions", "preemptions", "{:.0f}"),
    ("GPUs", "total_gpus", "{:.0f}"),
)


def _fmt(value: Any, fmt: str) -> str:
    if fmt == "h":
        return f"{float(value) / 3600:.3f}"
    return fmt.format(value)


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
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}} td,th{{border:1px solid #ccc;padding:.3em .7em;text-align:right}}
td:first-child{{text-align:left}} figure{{margin:1em 0}} img{{max-width:100%}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts_html}</table>
<h2>Metrics</h2>
<table><tr><th></th>{head}</tr>{body}</table>
<h2>Plots</h2>{imgs}
{"<h2>Notes</h2><ul>" + notes_html + "</ul>" if notes_html else ""}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
