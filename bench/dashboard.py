"""First paint of the dashboard's jobs page with 10,000 jobs in the database.

Seeds a SQLite database with N jobs (most finished, some running with attempts, some pending),
starts the real `suanli server` on it as a subprocess, signs in, and measures the jobs page:

- server: time for the whole HTML of ``/jobs`` (and a filtered ``/jobs?state=RUNNING``) over
  keep-alive HTTP, p50 / p95 of R requests;
- browser (when Debian's Chromium is at /usr/bin/chromium): ``first-contentful-paint`` of
  ``/jobs`` in headless Chromium driven by Playwright, p50 / p95 of R navigations.

The issue's budget is a first paint under 300 ms on this machine.

    python bench/dashboard.py [--jobs 10000] [--repeat 20] [--json]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright
from sqlalchemy import insert
from starlette.requests import Request

from _harness import emit, percentile, suanli_process
from suanli.app.control import ControlPlane
from suanli.app.settings import Settings
from suanli.core.identity import ALL_SCOPES, Identity, Role
from suanli.core.network import parse_network
from suanli.store.models import Attempt, Job
from suanli.web.routes import jobs_list

CHROMIUM = Path("/usr/bin/chromium")
#: The page's first-contentful-paint, from navigation start (the entry can land just after "load").
FCP_JS = """() => new Promise((resolve) => {
  const seen = performance.getEntriesByName("first-contentful-paint")[0];
  if (seen) return resolve(seen.startTime);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.name === "first-contentful-paint") resolve(e.startTime);
  }).observe({ type: "paint", buffered: true });
})"""
TENANTS = ["bj-ai", "tj-vision", "nx-speech", "sh-llm"]
SITES = [("beijing", "A800", "bj-01"), ("tianjin-gaocun", "H100", "tj-01"), ("ningxia", "910B", "nx-01")]


def seed(home: Path, jobs: int) -> Path:
    """A database with ``jobs`` jobs; returns the network file the server should load."""
    network_text = resources.files("suanli.launch").joinpath("demo.yaml").read_text(encoding="utf-8")
    network_file = home / "network.yaml"
    network_file.write_text(network_text, encoding="utf-8")
    control = ControlPlane(Settings(home=home))
    control.migrate()
    control.apply_network(parse_network(network_text, "demo.yaml"))
    rng = random.Random(7)
    now = datetime.now(UTC)
    job_rows: list[dict[str, Any]] = []
    for seq in range(1, jobs + 1):
        roll = rng.random()
        state = (
            "PENDING" if roll < 0.05 else "RUNNING" if roll < 0.1 else rng.choice(["SUCCEEDED", "FAILED", "CANCELLED"])
        )
        site = None if state == "PENDING" else rng.choice(SITES)
        submitted = now - timedelta(seconds=(jobs - seq) * 30)
        job_rows.append(
            {
                "seq": seq,
                "id": f"b{seq:07d}",
                "name": f"train-{seq % 97}",
                "tenant": rng.choice(TENANTS),
                "state": state,
                "reason": "no site has 8 × H100 free; largest free is 4 × H100 at tianjin-gaocun"
                if state == "PENDING"
                else "",
                "priority": "normal",
                "spec": {
                    "name": f"train-{seq % 97}",
                    "resources": {"accelerators": ["H100:8"], "cpus": "8+"},
                    "run": "python train.py",
                },
                "site": site[0] if site else None,
                "current_attempt_id": seq if site else None,
                "attempts_count": 1 if site else 0,
                "retries_used": 0,
                "cancel_requested": False,
                "submitted_at": submitted,
                "updated_at": submitted,
                "finished_at": submitted + timedelta(minutes=5) if state not in ("PENDING", "RUNNING") else None,
            }
        )
    attempt_rows = [
        {
            "id": j["seq"],
            "job_seq": j["seq"],
            "number": 1,
            "site": j["site"],
            "gpu_type": next(t for s, t, _ in SITES if s == j["site"]),
            "nodes": [{"node": next(n for s, _, n in SITES if s == j["site"]), "rank": 0, "gpu_indices": [0]}],
            "state": j["state"],
            "delivered": True,
            "lease_expires_at": now + timedelta(days=1),
            "created_at": j["submitted_at"],
            "started_at": j["submitted_at"],
            "ended_at": j["finished_at"],
            "message": "",
        }
        for j in job_rows
        if j["site"]
    ]
    with control.db.session() as session:
        for i in range(0, len(job_rows), 2000):
            session.execute(insert(Job), job_rows[i : i + 2000])
        for i in range(0, len(attempt_rows), 2000):
            session.execute(insert(Attempt), attempt_rows[i : i + 2000])
    control.close()
    return network_file


def in_process_times(home: Path, repeat: int) -> list[float]:
    """The page's own cost: queries and template, called directly in one thread (no HTTP, no
    scheduler loop beside it), so the figure says what the code costs apart from the machine's load."""

    control = ControlPlane(Settings(home=home))
    identity = Identity(name="admin", role=Role.ADMIN, scopes=ALL_SCOPES, token="bench-token")
    request = Request({"type": "http", "method": "GET", "path": "/jobs", "query_string": b"", "headers": []})
    out = []
    try:
        for i in range(repeat + 3):
            t0 = time.perf_counter()
            response = jobs_list(request, control, identity)
            assert b"data-job=" in response.body
            if i >= 3:  # the first renders compile the templates
                out.append((time.perf_counter() - t0) * 1000)
    finally:
        control.close()
    return out


def server_times(url: str, cookies: httpx.Cookies, path: str, repeat: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, cookies=cookies, timeout=30) as client:
        client.get(path).raise_for_status()  # warm: templates compiled, connection open
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = client.get(path)
            response.raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
            assert "data-job=" in response.text
    return out


def browser_paints(url: str, token: str, repeat: int) -> list[float] | None:
    if not CHROMIUM.exists():
        return None

    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    paints = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        context = browser.new_context()
        context.add_cookies([{"name": "suanli_token", "value": token, "url": url}])
        page = context.new_page()
        page.goto(f"{url}/jobs")  # warm: static files cached, as for a returning user
        for _ in range(repeat):
            page.goto(f"{url}/jobs?_={time.monotonic_ns()}", wait_until="load")
            fcp = page.evaluate(FCP_JS)
            paints.append(float(fcp))
        browser.close()
    return paints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="suanli-bench-web-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        network = seed(home, args.jobs)
        seeded_s = time.perf_counter() - t0
        own = in_process_times(home, args.repeat)
        with suanli_process(["server", "--network", str(network)], home=home) as url:
            token = (home / "admin.token").read_text().strip()
            response = httpx.post(f"{url}/login", data={"token": token, "next": "/jobs"}, timeout=30)
            assert response.status_code == 303, response.text
            cookies = httpx.Cookies({"suanli_token": token})
            first = server_times(url, cookies, "/jobs", args.repeat)
            running = server_times(url, cookies, "/jobs?state=RUNNING&tenant=bj-ai", args.repeat)
            paints = browser_paints(url, token, args.repeat)
    result: dict[str, float | int | str] = {
        "jobs": args.jobs,
        "seed_s": round(seeded_s, 2),
        "in_process_jobs_page_p50_ms": round(percentile(own, 0.5), 1),
        "in_process_jobs_page_p95_ms": round(percentile(own, 0.95), 1),
        "server_jobs_page_p50_ms": round(percentile(first, 0.5), 1),
        "server_jobs_page_p95_ms": round(percentile(first, 0.95), 1),
        "server_filtered_p50_ms": round(percentile(running, 0.5), 1),
        "server_filtered_p95_ms": round(percentile(running, 0.95), 1),
    }
    if paints is None:
        result["browser"] = "skipped: no Chromium at /usr/bin/chromium (make browser)"
    else:
        result["browser_first_contentful_paint_p50_ms"] = round(percentile(paints, 0.5), 1)
        result["browser_first_contentful_paint_p95_ms"] = round(percentile(paints, 0.95), 1)
        result["budget_ms"] = 300
        result["p50_within_budget"] = "yes" if percentile(paints, 0.5) < 300 else "NO"
        result["p95_within_budget"] = "yes" if percentile(paints, 0.95) < 300 else "NO"
    emit(result, args.json, f"dashboard jobs page with {args.jobs:,} jobs")


if __name__ == "__main__":
    main()
