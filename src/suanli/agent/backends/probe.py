"""Is an engine running here? Quick probes for `suanli up --demo --engines` and the docs' checks."""

from __future__ import annotations

import shutil
import subprocess

import httpx

from suanli import adaptors


def slurm_problem() -> str | None:
    """None when ``sinfo`` answers and a node is up; else what is wrong, in words."""
    if shutil.which("sinfo") is None:
        return "Slurm's tools are not installed (no sinfo on PATH)"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip() or out.returncode}"
    states = [s.rstrip("*~#!%$@^-") for s in out.stdout.split()]
    if not any(s in ("idle", "mix", "alloc", "comp") for s in states):
        return f"no Slurm node is up (sinfo says {', '.join(states) or 'nothing'})"
    return None


def ray_problem(address: str = "http://127.0.0.1:8265") -> str | None:
    """None when Ray's Job Submission API answers at ``address`` and ``ray`` is installed."""
    try:
        adaptors.ray_job_submission()
    except adaptors.Missing:
        return "ray[default] is not installed: pip install 'suanli[ray]'"
    try:
        httpx.get(f"{address.rstrip('/')}/api/version", timeout=3).raise_for_status()
    except httpx.HTTPError as exc:
        return f"no Ray dashboard answers at {address} ({exc.__class__.__name__})"
    return None
