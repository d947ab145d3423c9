"""A canned suanli API behind ``httpx.MockTransport``, and a harness that runs the CLI on it.

Shipped (like httpx's MockTransport) so this package's tests and anyone embedding the CLI
can drive every command in memory:

    h = Harness(FakeApi(jobs=[make_job()]))
    result = h.run("jobs", "--json")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from suanli.cli import app, render
from suanli.cli.context import CliState
from suanli.core.api import AttemptOut, GpuCount, JobOut, NodeAssignmentOut, NodeOut, Page, Problem, SiteOut
from suanli.core.states import AttemptState, JobState
from suanli.sdk import Client

NOW = datetime.now(UTC)
BASE = "http://suanli.test"


def make_job(job_id: str = "j-1", state: JobState = JobState.RUNNING, **kw: Any) -> JobOut:
    data: dict[str, Any] = {
        "id": job_id,
        "name": "llama-ft",
        "tenant": "bj-ai",
        "state": state,
        "priority": "normal",
        "gpus": "8 × H100",
        "submitted_at": NOW - timedelta(minutes=3, seconds=10),
        "updated_at": NOW - timedelta(minutes=1),
        "spec": {"resources": {"accelerators": ["H100:8"], "cpus": 16, "memory": 64}, "run": "python train.py"},
    }
    data.update(kw)
    return JobOut(**data)


def make_attempt(number: int = 1, state: AttemptState = AttemptState.RUNNING, **kw: Any) -> AttemptOut:
    data: dict[str, Any] = {
        "id": number,
        "number": number,
        "site": "tianjin-gaocun",
        "state": state,
        "gpu_type": "H100",
        "nodes": [NodeAssignmentOut(node="tj-01", rank=0, gpu_indices=list(range(8)))],
        "created_at": NOW - timedelta(minutes=2),
        "started_at": NOW - timedelta(minutes=2),
    }
    data.update(kw)
    return AttemptOut(**data)


def make_site(name: str = "tianjin-gaocun", **kw: Any) -> SiteOut:
    data: dict[str, Any] = {
        "name": name,
        "region": "tianjin",
        "zone": "mainland",
        "backend": "local",
        "online": True,
        "nodes": 2,
        "gpus": {"H100": GpuCount(total=16, free=12)},
        "running_jobs": 1,
        "sandbox": "bwrap",
    }
    data.update(kw)
    return SiteOut(**data)


def make_node(name: str = "tj-01", **kw: Any) -> NodeOut:
    data: dict[str, Any] = {
        "name": name,
        "site": "tianjin-gaocun",
        "state": "mixed",
        "gpu_type": "H100",
        "gpus_total": 8,
        "gpus_free": 4,
        "cpus_total": 64,
        "cpus_free": 48,
        "memory_total": 512,
        "memory_free": 448,
        "healthy": True,
    }
    data.update(kw)
    return NodeOut(**data)


def problem(status: int, title: str, detail: str = "", errors: list[dict[str, Any]] | None = None) -> httpx.Response:
    body = Problem(title=title, status=status, detail=detail, errors=errors or [])
    return httpx.Response(
        status, json=body.model_dump(mode="json"), headers={"Content-Type": "application/problem+json"}
    )


def _page(items: list[Any], next_cursor: str | None = None) -> dict[str, Any]:
    dumped = [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items]
    return Page[Any](items=dumped, next_cursor=next_cursor).model_dump(mode="json")


@dataclass
class FakeApi:
    """Serves canned models; records every request. ``override`` answers before the routes."""

    jobs: list[JobOut] = field(default_factory=list)
    sites: list[SiteOut] = field(default_factory=list)
    nodes: list[NodeOut] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    #: What GET /jobs/{id} answers after the job was submitted (e.g. its final state).
    after_submit: JobOut | None = None
    page_size: int = 2
    override: Callable[[httpx.Request], httpx.Response | None] | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    uploaded: bytes = b""
    submitted: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.override is not None and (answer := self.override(request)) is not None:
            return answer
        path, method = request.url.path, request.method
        if path == "/api/v1/workdirs" and method == "POST":
            self.uploaded = request.read()
            return httpx.Response(201, json={"digest": "sha256:abc", "size": len(self.uploaded)})
        if path == "/api/v1/jobs" and method == "POST":
            self.submitted.append(json.loads(request.content))
            return httpx.Response(201, json=self.jobs[0].model_dump(mode="json"))
        if path == "/api/v1/jobs":
            return self._jobs_page(request)
        if path.startswith("/api/v1/jobs/"):
            return self._job(path.removeprefix("/api/v1/jobs/"), method)
        if path == "/api/v1/sites":
            return httpx.Response(200, json=_page(self.sites))
        if path == "/api/v1/nodes":
            site = request.url.params.get("site")
            return httpx.Response(200, json=_page([n for n in self.nodes if site in (None, n.site)]))
        return problem(404, "Not Found", f"no route {method} {path}")

    def _jobs_page(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        found = [
            j
            for j in self.jobs
            if params.get("state") in (None, j.state.value)
            and params.get("site") in (None, j.site)
            and params.get("name") in (None, j.name)
            and params.get("tenant") in (None, j.tenant)
            and params.get("user") in (None, j.user)
        ]
        start = int(params.get("cursor") or 0)
        chunk = found[start : start + self.page_size]
        more = str(start + self.page_size) if start + self.page_size < len(found) else None
        return httpx.Response(200, json=_page(chunk, more))

    def _job(self, rest: str, method: str) -> httpx.Response:
        job_id, _, action = rest.partition("/")
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None:
            return problem(404, "Not Found", f"no job '{job_id}'")
        if action == "logs":
            return httpx.Response(200, content=self.logs.get(job_id, "").encode())
        if action == "cancel" and method == "POST":
            return httpx.Response(200, json=job.model_copy(update={"cancel_requested": True}).model_dump(mode="json"))
        if self.after_submit is not None and self.after_submit.id == job_id:
            job = self.after_submit
        return httpx.Response(200, json=job.model_dump(mode="json"))


@dataclass
class Harness:
    """Runs the CLI with its client wired to a FakeApi; records the server/token it was given."""

    api: FakeApi = field(default_factory=FakeApi)
    seen: list[tuple[str, str | None]] = field(default_factory=list)

    def client(self, server: str, token: str | None) -> Client:
        self.seen.append((server, token))
        http = httpx.Client(transport=httpx.MockTransport(self.api), base_url=BASE)
        return Client(server, token=token, http=http)

    def run(self, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        full_env: dict[str, str | None] = {"COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
        state = CliState(client_factory=self.client)
        # Ages ("3m") are computed against the canned data's clock, not the wall clock, so a
        # slow run cannot turn "3m" into "4m".
        saved, render.now = render.now, lambda: NOW
        try:
            return CliRunner().invoke(app, list(args), env=full_env, obj=state)
        finally:
            render.now = saved
