"""The isolation matrix: every endpoint of the API, called by every role, answers exactly as
docs/identities.md says, and another tenant's objects are 404 or absent, never 403 or shown.

Callers: nobody (no token), alice (member of bj-ai, which owns the job, workdir, usage,
dataset, transfer, filing, federated run, grade request and upload under test), eve (member of
rival), ops (operator of beijing), aud (auditor), admin. The agent protocol (site tokens only) is
checked apart: a user's token is refused on every one of its routes. A route the app serves but
neither names fails the test, so a new endpoint cannot ship without its row.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import BaseRoute, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from suanli.core.evaluation import synthetic
from suanli.datachain.manifest import MIN_CHUNK, build_manifest
from suanli.server.app import create_app
from suanli.store.models import ApiToken
from tests.integration.conftest import Net, start_net

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}

NETWORK = """\
regions: [beijing, tianjin, singapore]
sites:
  - name: beijing
    region: beijing
    zone: mainland
    nodes: [{name: bj-01, cpus: 8, memory: 32}]
  - {name: tianjin-bonded, region: tianjin, zone: bonded, nodes: [{name: tjb-01, cpus: 8, memory: 32}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 8, memory: 32}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

ROLES = ("nobody", "alice", "eve", "ops", "aud", "admin")

#: Expectations: an exact status, or "ok" (authorised: any 2xx, or a business answer such as
#: 409/422 — anything but 401, 403, 404 or 5xx).
OK = "ok"


@dataclass
class World:
    net: Net
    tokens: dict[str, str]
    job: str
    digest: str
    dataset: str
    transfer: str
    filing: str
    spare_token: str
    federation: str
    grade_request: str
    upload: str
    #: The upload's one chunk, and the manifest of it (a dataset registered from the site's store).
    chunk: bytes
    manifest: dict[str, Any]
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def call(self, role: str, method: str, path: str, body: Any = None) -> httpx.Response:
        client = self.clients[role]
        if isinstance(body, Raw):
            return client.request(method, path, content=body.content, headers=body.headers)
        return client.request(method, path, json=body)

    def site_token(self, site: str) -> str:
        return self.net.control.site_token_path(site).read_text().strip()


@dataclass(frozen=True)
class Raw:
    """A request body sent as bytes (an archive, a chunk), with its headers."""

    content: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/gzip"})


def _archive(data: bytes = b"print('hi')\n") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("isolation")
    with start_net(tmp, NETWORK) as net:
        tokens = {
            "alice": net.user("alice", tenant="bj-ai"),
            "eve": net.user("eve", tenant="rival"),
            "ops": net.user("ops", role="operator", sites=["beijing"]),
            "aud": net.user("aud", role="auditor"),
            "admin": net.admin_token,
        }
        net.client.create_user("victim", tenant="rival")
        clients = {role: net.http_as(tokens.get(role)) for role in ROLES}
        alice = clients["alice"]
        # bj-ai's objects: a job that ran (logs, usage), a workdir, a dataset, a transfer, a filing.
        net.local_agent("beijing")
        # Content only alice has: anyone uploading the same bytes may use them too (they have them).
        digest = alice.post("/api/v1/workdirs", content=_archive(os.urandom(64))).json()["digest"]
        spec = {"name": "bj-secret", "run": "echo the-bj-ai-log-line", "resources": {"cpus": 1}}
        job = alice.post("/api/v1/jobs", json={"spec": spec, "workdir_digest": digest}).json()["id"]
        net.pump(lambda: net.state(job) == "SUCCEEDED")
        src = tmp / "notes.bin"
        src.write_bytes(os.urandom(4096))
        net.client.register_dataset(
            name="bj-notes",
            owner="bj-ai",
            home_site="beijing",
            path=str(src),
            classification={"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]},
        )
        transfer = alice.post("/api/v1/transfers", json={"dataset": "bj-notes", "to": "tianjin-bonded"}).json()["id"]
        filing = alice.post("/api/v1/filings", json={"dataset": "bj-notes", "to": "singapore"}).json()["id"]
        spare = alice.post("/api/v1/tokens", json={"name": "spare"}).json()["id"]
        # A federated run over bj-notes, and a grading that lowers it (held for an auditor).
        run = {"datasets": ["bj-notes"], "rounds": 1, "params": [0.0, 0.0]}
        federation = alice.post("/api/v1/federations", json=run).json()["id"]
        lower = {"level": "general", "sub_grade": 1, "pi_count": 1_000, "categories": ["marketing"]}
        graded = alice.post("/api/v1/datasets/bj-notes/grade", json={"classification": lower}).json()
        # An upload under way to beijing's store (its agent is not cycled: the upload stays open).
        chunk = os.urandom(64)
        (tmp / "chunk.bin").write_bytes(chunk)
        manifest = build_manifest(tmp / "chunk.bin", MIN_CHUNK).model_dump()
        grade = {"level": "general", "sub_grade": 2, "pi_count": 10, "categories": ["marketing"]}
        upload = {
            "name": "bj-upload",
            "owner": "bj-ai",
            "site": "beijing",
            "manifest": manifest,
            "classification": grade,
        }
        upload_id = alice.post("/api/v1/datasets/uploads", json=upload).json()["id"]
        svc = {"name": "bj-svc", "run": "true", "service": {"port": 8000, "replicas": {"min": 0, "max": 1}}}
        assert alice.post("/api/v1/services", json={"spec": svc}).status_code == 201
        w = World(
            net,
            tokens,
            job,
            digest,
            "bj-notes",
            transfer,
            filing,
            spare,
            federation,
            graded["request"]["id"],
            upload_id,
            chunk,
            manifest,
            clients,
        )
        try:
            yield w
        finally:
            for c in clients.values():
                c.close()


Row = tuple[str, str, Any, dict[str, int | str]]


def _all(status: int | str, **over: int | str) -> dict[str, int | str]:
    return {**dict.fromkeys(ROLES[1:], status), "nobody": 401, **over}


def matrix(w: World) -> list[Row]:
    """(method, path, body, expected per role). Order matters only for calls that change
    state: roles are tried nobody → eve → ops → aud → alice → admin."""
    job, ds, t, f, fed, gr, up = w.job, w.dataset, w.transfer, w.filing, w.federation, w.grade_request, w.upload
    spec = {"spec": {"run": "true", "resources": {"cpus": 1}}}
    service = {"spec": {"name": "svc-x", "run": "true", "service": {"port": 8000, "replicas": 0}}}
    tariff = {"site": "beijing", "tariff": {"gpu_hour": {"A800": 9}}}
    members = {"alice": 201, "eve": 201, "ops": 403, "aud": 403, "admin": 201}
    tenant_job = {"alice": 200, "eve": 404, "ops": 403, "aud": 403, "admin": 200}
    owned_read = {"alice": 200, "eve": 404, "ops": 403, "aud": 200, "admin": 200}
    owned_write = {"alice": OK, "eve": 404, "ops": 403, "aud": 403, "admin": OK}

    def owned_write_as(status: int) -> dict[str, int | str]:
        return {**owned_write, "alice": status, "admin": status}

    admin_only = {"alice": 403, "eve": 403, "ops": 403, "aud": 403, "admin": OK}
    run = {"endpoint": "http://127.0.0.1:9/v1", "model": "m", "tasks": [{"dataset": ds}]}
    bench = {"dataset": ds, "definition": synthetic.TASK}
    grade = {"level": "general", "sub_grade": 2, "pi_count": 10, "categories": ["marketing"]}
    local = {"name": "bj-local", "owner": "bj-ai", "site": "beijing", "manifest": w.manifest, "classification": grade}
    at_beijing = {"Content-Type": "application/json", "X-Site-Token": w.site_token("beijing")}
    permit = {"to": "singapore", "basis": "contract", "pia_ref": "pia-1"}
    # A well-formed cosignature line from a witness the network file does not list.
    rogue = "\u2014 rogue-witness " + base64.b64encode(bytes(76)).decode()
    return [
        ("POST", "/api/v1/jobs", spec, _all(0, **members)),
        ("GET", "/api/v1/jobs", None, _all(200, ops=403, aud=403)),
        ("GET", f"/api/v1/jobs/{job}", None, _all(0, **tenant_job)),
        ("GET", f"/api/v1/jobs/{job}/explain", None, _all(0, **tenant_job)),
        ("GET", f"/api/v1/jobs/{job}/logs", None, _all(0, **tenant_job)),
        ("POST", f"/api/v1/jobs/{job}/rerun", {}, _all(0, **{**tenant_job, "alice": 201, "admin": 201})),
        ("POST", f"/api/v1/jobs/{job}/cancel", None, _all(0, **tenant_job)),
        ("POST", "/api/v1/workdirs", Raw(_archive()), _all(0, **members)),
        ("POST", "/api/v1/services", service, _all(0, **{**members, "admin": OK})),
        ("GET", "/api/v1/services", None, _all(200, ops=403, aud=403)),
        ("GET", "/api/v1/services/bj-svc", None, _all(0, **tenant_job)),
        ("POST", "/api/v1/services/bj-svc/scale", {"replicas": 0}, _all(0, **tenant_job)),
        ("POST", "/api/v1/services/bj-svc/stop", None, _all(0, **tenant_job)),
        # Calls to a service need serve:invoke; bj-svc is stopped now: 404 for its own tenant too
        # (tests/integration/test_serving.py calls running ones).
        *[
            (m, "/serve/bj-ai/bj-svc/v1/models", None, _all(404, ops=403, aud=403))
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
        ],
        ("POST", "/v1/chat/completions", {"model": "bj-svc"}, _all(404, ops=403, aud=403)),
        ("POST", "/v1/completions", {"model": "bj-svc"}, _all(404, ops=403, aud=403)),
        ("GET", "/v1/models", None, _all(200, ops=403, aud=403)),
        ("GET", "/api/v1/sites", None, _all(200)),
        ("GET", "/api/v1/nodes", None, _all(200)),
        ("POST", "/api/v1/nodes/bj-01/drain", {"reason": "fan"}, _all(403, ops=200, admin=200)),
        ("POST", "/api/v1/nodes/bj-01/undrain", None, _all(403, ops=200, admin=200)),
        ("POST", "/api/v1/nodes/sg-01/drain", {"reason": "fan"}, _all(403, admin=200)),
        ("POST", "/api/v1/nodes/sg-01/undrain", None, _all(403, admin=200)),
        ("GET", "/api/v1/usage", None, _all(200, ops=403, aud=403)),
        ("GET", "/api/v1/usage?tenant=bj-ai", None, _all(200, ops=403, aud=403)),
        ("GET", "/api/v1/usage/sites", None, _all(403, ops=200, admin=200)),
        ("GET", "/api/v1/invoices/bj-ai/2026-01", None, _all(0, **tenant_job)),
        ("GET", "/api/v1/tariffs", None, _all(200)),
        ("POST", "/api/v1/tariffs", tariff, _all(403, ops=201, admin=201)),
        ("POST", "/api/v1/tariffs", {**tariff, "site": "singapore"}, _all(403, admin=201)),
        ("GET", "/api/v1/budgets", None, _all(200, aud=403)),
        ("GET", "/api/v1/budgets/history", None, _all(200, aud=403)),
        ("PUT", "/api/v1/budgets/bj-ai", {"budget_cny": "100000"}, _all(403, admin=200)),
        ("GET", "/api/v1/whoami", None, _all(200)),
        ("POST", "/api/v1/tokens", {"name": "x"}, _all(201)),
        ("GET", "/api/v1/tokens", None, _all(200)),
        ("DELETE", f"/api/v1/tokens/{w.spare_token}", None, _all(404, alice=200, admin=200)),
        ("GET", "/api/v1/users", None, _all(403, admin=200)),
        ("POST", "/api/v1/users", {"name": "newbie", "tenant": "rival"}, _all(403, admin=201)),
        ("POST", "/api/v1/users/victim/disable", None, _all(403, admin=200)),
        ("POST", "/api/v1/users/victim/enable", None, _all(403, admin=200)),
        ("GET", "/api/v1/tenants", None, _all(200)),
        ("POST", "/api/v1/tenants", {"name": "newco"}, _all(403, admin=201)),
        (
            "POST",
            "/api/v1/datasets",
            {"name": "x", "owner": "bj-ai", "home_site": "beijing", "path": "/etc/passwd"},
            _all(403, admin=OK),
        ),
        ("GET", "/api/v1/datasets", None, _all(200, ops=403)),
        ("GET", f"/api/v1/datasets/{ds}", None, _all(0, **owned_read)),
        (
            "POST",
            f"/api/v1/datasets/{ds}/grade",
            {
                "classification": {
                    "level": "general",
                    "sub_grade": 2,
                    "pi_count": 200_000,
                    "categories": ["marketing"],
                },
                "graded_by": "x",
            },
            _all(0, **owned_write),
        ),
        ("POST", f"/api/v1/datasets/{ds}/check", {"to": "singapore"}, _all(0, **owned_read)),
        ("GET", f"/api/v1/datasets/{ds}/download?zone=mainland", None, _all(0, **owned_write)),
        ("PUT", "/api/v1/exporters/bj-ai", {"ciio": False}, _all(0, **admin_only)),
        ("POST", "/api/v1/transfers", {"dataset": ds, "to": "tianjin-bonded"}, _all(0, **owned_write)),
        ("POST", f"/api/v1/transfers/{t}/run", None, _all(0, **owned_write)),
        ("GET", "/api/v1/transfers", None, _all(200, ops=403)),
        ("GET", f"/api/v1/transfers/{t}", None, _all(0, **owned_read)),
        ("POST", "/api/v1/filings", {"dataset": ds, "to": "singapore"}, _all(0, **owned_write)),
        ("GET", "/api/v1/filings", None, _all(200, ops=403)),
        ("GET", f"/api/v1/filings/{f}", None, _all(0, **owned_read)),
        ("GET", f"/api/v1/filings/{f}/package", None, _all(0, **owned_read)),
        ("GET", f"/api/v1/filings/{f}/package?format=pdf", None, _all(0, **owned_read)),
        ("POST", f"/api/v1/filings/{f}/submit", None, _all(0, **owned_write)),
        ("POST", f"/api/v1/filings/{f}/approve", {"note": "ok"}, _all(403, aud=OK)),
        ("POST", f"/api/v1/filings/{f}/reject", {"note": "no"}, _all(403, aud=OK)),
        ("POST", "/api/v1/evals", run, _all(0, alice=OK, eve=OK, ops=403, aud=403, admin=OK)),
        ("GET", "/api/v1/evals", None, _all(200)),
        ("GET", "/api/v1/evals/nope", None, _all(404)),
        ("GET", "/api/v1/evals/leaderboard", None, _all(200)),
        ("POST", "/api/v1/evals/benchmarks", bench, _all(0, alice=201, eve=404, ops=403, aud=403, admin=OK)),
        ("GET", "/api/v1/evals/benchmarks", None, _all(200, ops=403, aud=403)),
        ("GET", "/api/v1/ledger/key", None, _all(200)),
        ("GET", "/api/v1/ledger/checkpoints", None, _all(200)),
        ("GET", "/api/v1/ledger/checkpoints/latest", None, _all(200)),
        ("GET", "/api/v1/ledger/proofs/inclusion?index=0", None, _all(OK)),
        ("GET", "/api/v1/ledger/proofs/consistency?first=1", None, _all(OK)),
        ("GET", "/api/v1/ledger/entries", None, _all(403, aud=200, admin=200)),
        ("GET", "/api/v1/ledger/counters", None, _all(403, aud=200, admin=200)),
        # Only the listed witnesses' signatures are taken, whoever posts them.
        ("POST", "/api/v1/ledger/cosignatures", {"size": 1, "cosignature": rogue}, _all(403)),
        # Grade requests: the dataset's readers see them; only an auditor decides (denied first,
        # so the approval finds it decided and bj-notes keeps its grade).
        ("GET", "/api/v1/grade-requests", None, _all(200, ops=403)),
        ("GET", f"/api/v1/grade-requests/{gr}", None, _all(0, **owned_read)),
        ("POST", f"/api/v1/grade-requests/{gr}/deny", {"note": "no"}, _all(403, aud=200)),
        ("POST", f"/api/v1/grade-requests/{gr}/approve", {"note": "ok"}, _all(403, aud=409)),
        # Federated runs: the run's tenant (and the admin); consent is the dataset owner's. The
        # admin has no tenant to start a run for (422); advance and aggregate find the run's one
        # client short of a round (409).
        (
            "POST",
            "/api/v1/federations",
            {"datasets": [ds], "rounds": 1, "params": [0.0]},
            _all(0, alice=201, eve=404, ops=403, aud=403, admin=422),
        ),
        ("GET", f"/api/v1/federations/{fed}", None, _all(0, **tenant_job)),
        ("GET", f"/api/v1/federations/{fed}/messages", None, _all(0, **tenant_job)),
        ("GET", f"/api/v1/federations/{fed}/raw-bytes-moved", None, _all(0, **tenant_job)),
        (
            "POST",
            f"/api/v1/federations/{fed}/messages",
            {"round": 0, "client": ds, "kind": "key", "key": "ab" * 32},
            _all(0, **{**owned_write, "alice": 204, "admin": 409}),
        ),
        ("POST", f"/api/v1/federations/{fed}/advance", {"round": 0, "to": "updates"}, _all(0, **owned_write)),
        ("POST", f"/api/v1/federations/{fed}/aggregate", {"round": 0, "params": [0.0, 0.0]}, _all(0, **owned_write)),
        ("PUT", f"/api/v1/datasets/{ds}/federated-grants", {"tenant": "rival"}, _all(0, **owned_write_as(204))),
        # alice withdraws the grant; nothing is left for the admin to withdraw.
        (
            "DELETE",
            f"/api/v1/datasets/{ds}/federated-grants?tenant=rival",
            None,
            _all(0, **{**owned_write, "alice": 204, "admin": 404}),
        ),
        # The owner's word on exports, and the dataset's privacy budget.
        ("GET", f"/api/v1/datasets/{ds}/exports", None, _all(0, **owned_read)),
        ("PUT", f"/api/v1/datasets/{ds}/exports", permit, _all(0, **owned_write_as(200))),
        (
            "DELETE",
            f"/api/v1/datasets/{ds}/exports?to=singapore",
            None,
            _all(0, **{**owned_write, "alice": 204, "admin": 404}),
        ),
        ("GET", f"/api/v1/datasets/{ds}/privacy", None, _all(0, **owned_read)),
        ("PUT", f"/api/v1/datasets/{ds}/privacy", {"epsilon": 10, "delta": 1e-5}, _all(0, **owned_write_as(200))),
        ("POST", f"/api/v1/datasets/{ds}/privacy/spends", {"epsilon": 0.5}, _all(0, **owned_write_as(201))),
        # Registering at a site: the owner's members and the admin; an upload is its uploader's
        # (and the admin's). The admin's second start and registration find the name taken (409);
        # beijing's agent is not cycled, so it has not said what it holds yet (204: ask again).
        ("POST", "/api/v1/datasets/uploads", {**local, "name": "bj-upload-2"}, _all(403, alice=201, admin=409)),
        (
            "POST",
            "/api/v1/datasets/uploads/local",
            Raw(json.dumps({**local, "sealed_at_rest": True}).encode(), at_beijing),
            _all(403, alice=201, admin=409),
        ),
        ("GET", f"/api/v1/datasets/uploads/{up}/have?wait_s=0", None, _all(0, **owned_write_as(204))),
        (
            "PUT",
            f"/api/v1/datasets/uploads/{up}/chunks/0?wait_s=0",
            Raw(w.chunk, {"Content-Type": "application/octet-stream"}),
            _all(0, **owned_write),
        ),
        ("POST", f"/api/v1/datasets/uploads/{up}/finish?wait_s=0", None, _all(0, **owned_write_as(204))),
    ]


#: Served without a token on purpose (docs/identities.md).
PUBLIC = {("GET", "/healthz"), ("GET", "/metrics")} | {
    # FastAPI's schema of the API and its documentation pages (they hold no one's data).
    (method, path)
    for method in ("GET", "HEAD")
    for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
}
#: The agent protocol: site tokens only (tested below).
AGENT = {
    ("POST", "/api/v1/agents/register"),
    ("POST", "/api/v1/agents/heartbeat"),
    ("GET", "/api/v1/agents/workdirs/{digest}"),
    ("GET", "/api/v1/agents/datasets/{name}"),
    # The relay between sites' agents: site tokens only, per role (tests/integration/test_relay_front_desk.py).
    ("GET", "/api/v1/agents/relay/{transfer_id}"),
    ("PUT", "/api/v1/agents/relay/{transfer_id}/chunks/{index}"),
    ("GET", "/api/v1/agents/relay/{transfer_id}/chunks/next"),
    ("PUT", "/api/v1/agents/relay/{transfer_id}/have"),
    ("GET", "/api/v1/agents/relay/{transfer_id}/have"),
    ("PUT", "/api/v1/agents/relay/{transfer_id}/outcome"),
    ("GET", "/api/v1/agents/relay/{transfer_id}/outcome"),
    # A site's reads from its own store, checkpoints and outputs (checked below for user tokens).
    ("POST", "/api/v1/agents/datasets/{name}/reads"),
    ("POST", "/api/v1/agents/checkpoints"),
    ("GET", "/api/v1/agents/checkpoints/{digest}"),
    ("POST", "/api/v1/agents/outputs"),
    ("POST", "/api/v1/agents/outputs/at-site"),
    # The agents' link for service traffic (checked below).
    ("WEBSOCKET", "/api/v1/agents/link"),
}
ORDER = ("nobody", "eve", "ops", "aud", "alice", "admin")


def _template(path: str, w: World) -> str:
    """The route template a concrete path came from (ids back to {placeholders})."""
    path = path.split("?", maxsplit=1)[0]
    if path.startswith("/serve/"):
        return "/serve/{tenant}/{name}/{path:path}"
    for value, name in (
        (w.job, "{job_id}"),
        (w.dataset, "{name}"),
        (w.transfer, "{transfer_id}"),
        (w.filing, "{filing_id}"),
        (w.spare_token, "{token_id}"),
        (w.federation, "{fid}"),
        (w.grade_request, "{request_id}"),
        (w.upload, "{upload_id}"),
    ):
        path = path.replace(value, name)
    path = path.replace("/evals/nope", "/evals/{run_id}").replace("/chunks/0", "/chunks/{index}")
    path = path.replace("/services/bj-svc", "/services/{name}")
    path = path.replace("/bj-01/", "/{name}/").replace("/sg-01/", "/{name}/").replace("/victim/", "/{name}/")
    return (
        path.replace("/invoices/bj-ai/2026-01", "/invoices/{tenant}/{month}")
        .replace("/exporters/bj-ai", "/exporters/{tenant}")
        .replace("/budgets/bj-ai", "/budgets/{tenant}")
    )


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, included routers' too (in FastAPI 0.165 the app's route
    list holds an included router as one entry, its routes under ``original_router``);
    a WebSocket route's method is ``WEBSOCKET``."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Route):
            yield from ((m, prefix + route.path) for m in route.methods or ())
        elif isinstance(route, WebSocketRoute):
            yield ("WEBSOCKET", prefix + route.path)


def test_every_route_has_a_row(world: World) -> None:
    app = create_app(world.net.control)
    served = set(_walk(app.routes))
    # The walk must find at least what the OpenAPI document lists (else it walked too little and
    # this check would pass on nothing); it also finds what the schema leaves out (/serve/…, the
    # OpenAI-compatible calls, the agents' WebSocket link).
    paths = app.openapi()["paths"]
    schema = {(method.upper(), path) for path, ops in paths.items() for method in ops if method in HTTP_METHODS}
    assert len(schema) > 50, f"the OpenAPI document looks empty ({len(schema)} routes)"
    assert schema <= served, f"routes the schema lists that the walk missed: {sorted(schema - served)[:10]}"
    assert ("WEBSOCKET", "/api/v1/agents/link") in served
    covered = {(m, _template(p, world)) for m, p, _, _ in matrix(world)} | PUBLIC | AGENT
    missing = sorted(served - covered)
    assert not missing, f"routes without a row in the isolation matrix: {missing}"


def _leaks(w: World, text: str) -> list[str]:
    marks = [w.job, "bj-secret", "the-bj-ai-log-line", w.dataset, w.transfer, w.filing, w.digest, "bj-ai"]
    marks += [w.federation, w.grade_request, w.upload, "bj-upload"]
    return [m for m in marks if m in text]


def test_every_role_against_every_endpoint(world: World) -> None:
    wrong: list[str] = []
    calls = 0
    for method, path, body, expected in matrix(world):
        for role in ORDER:
            want = expected[role]
            r = world.call(role, method, path, body)
            calls += 1
            got = r.status_code
            ok = got < 500 and got not in (401, 403, 404) if want == OK else got == want
            if not ok:
                wrong.append(f"{role} {method} {path}: {got} (expected {want}) {r.text[:160]}")
            if got >= 400 and path.startswith("/v1/") and got != 401:
                # The OpenAI-compatible routes answer errors as OpenAI does, for OpenAI clients.
                assert "message" in r.json()["error"], (role, path)
            elif got >= 400 and method != "HEAD":
                assert r.headers["content-type"].startswith("application/problem+json"), (role, path)
                assert "Traceback" not in r.text
            if got == 404 and role in ("eve", "ops", "aud"):
                # The same answer as for an id that never existed: only what was asked is echoed.
                asked = path + (body.content.decode(errors="replace") if isinstance(body, Raw) else json.dumps(body))
                assert not [m for m in _leaks(world, r.text) if m not in asked], (role, path, r.text)
            if got == 401:
                assert r.headers.get("www-authenticate", "").startswith("Bearer")
    assert not wrong, "\n".join(wrong)
    assert calls == len(matrix(world)) * len(ORDER)


def test_listings_never_leak_another_tenants_objects(world: World) -> None:
    """eve (rival) lists everything she may list: not one of bj-ai's objects shows."""
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs?name=bj-secret",
        "/api/v1/usage?by=job",
        "/api/v1/usage?tenant=bj-ai&by=job",
        "/api/v1/budgets",
        "/api/v1/tenants",
        "/api/v1/tokens",
        "/api/v1/datasets",
        "/api/v1/datasets?owner=bj-ai",
        "/api/v1/transfers",
        "/api/v1/filings",
        "/api/v1/evals",
        "/api/v1/evals/benchmarks",
        "/api/v1/evals/leaderboard",
        "/api/v1/grade-requests",
        f"/api/v1/grade-requests?dataset={world.dataset}",
    ):
        r = world.call("eve", "GET", path)
        assert r.status_code == 200, (path, r.text)
        assert not _leaks(world, r.text), (path, r.text)
    # ... while alice and the admin do see them (so the check above is not vacuous).
    assert world.job in world.call("alice", "GET", "/api/v1/jobs").text
    assert "bj-ai" in world.call("alice", "GET", "/api/v1/usage?by=job").text
    assert world.dataset in world.call("alice", "GET", "/api/v1/datasets").text
    assert world.filing in world.call("admin", "GET", "/api/v1/filings").text
    assert world.transfer in world.call("aud", "GET", "/api/v1/transfers").text
    assert world.grade_request in world.call("alice", "GET", "/api/v1/grade-requests").text


def test_a_member_uses_only_its_own_tenants_workdirs_and_tenant(world: World) -> None:
    spec = {"run": "true", "resources": {"cpus": 1}}
    stolen = world.call("eve", "POST", "/api/v1/jobs", {"spec": spec, "workdir_digest": world.digest})
    assert stolen.status_code == 422
    assert "was not uploaded" in stolen.json()["detail"]
    as_other = world.call("eve", "POST", "/api/v1/jobs", {"spec": spec, "tenant": "bj-ai"})
    assert as_other.status_code == 403
    # The agent of a site fetches only the workdirs of work given to that site.
    token = world.net.control.site_token_path("singapore").read_text().strip()
    with world.net.http_as(token) as agent:
        assert agent.get(f"/api/v1/agents/workdirs/{world.digest}").status_code == 404


def test_user_tokens_cannot_speak_for_agents_and_agents_only_for_their_site(world: World) -> None:
    beat = {"site": "beijing", "agent_id": "x", "attempts": [], "logs": []}
    for role in ("alice", "admin"):
        r = world.call(role, "POST", "/api/v1/agents/heartbeat", beat)
        assert r.status_code == 401, r.text
        assert world.call(role, "GET", f"/api/v1/agents/workdirs/{world.digest}").status_code == 401
    # Every route of the agent protocol a job's data and results pass through: a user's token
    # (even the admin's) is no site's, so 401 whatever the attempt and body.
    attempt = "?attempt=1"
    for method, path, body in (
        ("POST", f"/api/v1/agents/datasets/{world.dataset}/reads{attempt}", {"root": "0" * 64}),
        ("POST", f"/api/v1/agents/checkpoints{attempt}", Raw(_archive())),
        ("GET", f"/api/v1/agents/checkpoints/{world.digest}{attempt}", None),
        ("POST", f"/api/v1/agents/outputs{attempt}", Raw(_archive())),
        ("POST", f"/api/v1/agents/outputs/at-site{attempt}", {"manifest": world.manifest, "archive_sha256": "0" * 64}),
    ):
        for role in ("nobody", "alice", "eve", "ops", "aud", "admin"):
            r = world.call(role, method, path, body)
            assert r.status_code == 401, (role, method, path, r.status_code, r.text)
            assert not _leaks(world, r.text.replace(world.dataset, "").replace(world.digest, "")), r.text
    with world.net.http_as(world.site_token("singapore")) as agent:
        assert agent.post("/api/v1/agents/heartbeat", json=beat).status_code == 401
        assert agent.get("/api/v1/jobs").status_code == 401
    # The agents' link for service traffic: only a site's token opens it.
    url = world.net.url.replace("http://", "ws://", 1) + "/api/v1/agents/link"
    for role in ("nobody", "alice", "eve", "ops", "aud", "admin"):
        headers = {"Authorization": f"Bearer {world.tokens[role]}"} if role in world.tokens else {}
        with pytest.raises(InvalidStatus) as refused, connect(url, additional_headers=headers, open_timeout=10):
            pass
        assert refused.value.response.status_code == 403, role
    with connect(url, additional_headers={"Authorization": f"Bearer {world.site_token('beijing')}"}, open_timeout=10):
        pass


def test_narrowed_expired_revoked_and_disabled_tokens(world: World) -> None:
    alice = world.clients["alice"]
    read_only = alice.post("/api/v1/tokens", json={"name": "ro", "scopes": ["jobs:read"]}).json()["token"]
    with world.net.http_as(read_only) as ro:
        assert ro.get(f"/api/v1/jobs/{world.job}").status_code == 200
        refused = ro.post("/api/v1/jobs", json={"spec": {"run": "true"}})
        assert refused.status_code == 403
        assert "jobs:write" in refused.json()["detail"]
        # It reads a federated run but moves none on: a key, a round's close and the aggregate
        # need jobs:write.
        fed = f"/api/v1/federations/{world.federation}"
        assert ro.get(fed).status_code == 200
        key = {"round": 0, "client": world.dataset, "kind": "key", "key": "cd" * 32}
        for path, body in (
            ("/messages", key),
            ("/advance", {"round": 0, "to": "updates"}),
            ("/aggregate", {"round": 0, "params": [0.0, 0.0]}),
        ):
            moved = ro.post(fed + path, json=body)
            assert moved.status_code == 403, (path, moved.text)
            assert "jobs:write" in moved.json()["detail"]
        # A narrowed token cannot mint a wider one.
        wider = ro.post("/api/v1/tokens", json={"scopes": ["jobs:write"]})
        assert wider.status_code == 403
    assert alice.post("/api/v1/tokens", json={"scopes": ["ledger:read"]}).status_code == 422
    short = alice.post("/api/v1/tokens", json={"expires_in_s": 60}).json()["token"]
    with world.net.http_as(short) as c:
        assert c.get("/api/v1/whoami").status_code == 200
        world.net.clock.advance(61)
        world.net.control.identities.invalidate()
        expired = c.get("/api/v1/whoami")
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]
    doomed = alice.post("/api/v1/tokens", json={"name": "doomed"}).json()
    with world.net.http_as(doomed["token"]) as c:
        assert c.get("/api/v1/whoami").status_code == 200
        assert alice.delete(f"/api/v1/tokens/{doomed['id']}").status_code == 200
        assert c.get("/api/v1/whoami").status_code == 401  # at once: the cache was cleared
    admin = world.clients["admin"]
    victim_token = admin.post("/api/v1/tokens", json={"user": "victim"}).json()["token"]
    with world.net.http_as(victim_token) as c:
        assert c.get("/api/v1/whoami").json()["user"] == "victim"
        assert admin.post("/api/v1/users/victim/disable").status_code == 200
        assert c.get("/api/v1/whoami").status_code == 401
        assert admin.post("/api/v1/users/victim/enable").status_code == 200
        assert c.get("/api/v1/whoami").status_code == 200
    for bad in ("nonsense", "sl_abcdefghij_forged", "Bearer", "sl_" + "a" * 500):
        with world.net.http_as(bad) as c:
            assert c.get("/api/v1/whoami").status_code == 401


def test_tokens_are_stored_hashed(world: World) -> None:
    with world.net.control.db.read() as s:
        hashes = [t.token_hash for t in s.query(ApiToken)]
    raw = [world.tokens["alice"], world.tokens["eve"], world.tokens["admin"]]
    assert all(len(h) == 64 for h in hashes)
    assert not set(raw) & set(hashes)
    url = str(world.net.control.settings.db_url)
    if url.startswith("sqlite:///"):
        # The database's files (WAL included) hold no raw token. PostgreSQL's files are the
        # cluster's, not the network's: there the rows above are what is stored.
        db = Path(url.removeprefix("sqlite:///"))
        blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert blob, f"no database file at {db}"
        for token in raw:
            assert token.encode() not in blob
    assert oct(world.net.control.admin_token_path.stat().st_mode & 0o777) == "0o600"
