"""The FastAPI application: routers, RFC 9457 problem documents, health."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

import suanli
from suanli.app import evals as evals_app
from suanli.app.agentdesk import site_token_valid
from suanli.app.control import ControlPlane
from suanli.app.errors import InsufficientStorage, ServiceError, is_disk_full, is_nul_in_text
from suanli.core.api import Problem
from suanli.server.limits import install_limits
from suanli.server.metrics import SuanliCollector
from suanli.server.routers import (
    agents,
    datasets,
    evals,
    federated,
    filings,
    identities,
    jobs,
    ledger,
    privacy,
    relay,
    services,
    serving,
    sites,
    transfers,
    uploads,
    usage,
    workdirs,
)

log = logging.getLogger("suanli.server")

PROBLEM = "application/problem+json"


def problem(
    status: int,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    retry_after: int | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="suanli"'
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status >= 500:  # the connection may be in a bad state: the client must not reuse it
        headers["Connection"] = "close"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def disk_full(request: Request, exc: BaseException) -> JSONResponse:
    """507, with nothing of the request kept (its transaction rolled back, its upload removed)."""
    log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
    full = InsufficientStorage(
        "the server's disk is full, so nothing of this request was kept; "
        "retry later, or ask the operator to free space under $SUANLI_HOME"
    )
    return problem(full.status, full.title, full.detail, retry_after=full.retry_after)


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": Problem.model_json_schema()}}}


#: Every /api/v1 operation may answer these, always as an RFC 9457 problem document.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("No valid API token (see WWW-Authenticate)"),
    403: _problem("The token's role or scopes do not allow this"),
    404: _problem("No such object, or one the caller may not see"),
    409: _problem("Conflicts with the object's state"),
    413: _problem("Request body too large"),
    422: _problem("Invalid request: the problem names each field"),
    429: _problem("Too many requests for this token, user or address (see Retry-After)"),
    507: _problem("The server's disk is full; nothing of the request was kept (see Retry-After)"),
}


def create_app(control: ControlPlane, *, background: bool = False) -> FastAPI:
    """``background`` starts the scheduler loop with the app (the server does; tests tick)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if background:
            control.every(evals_app.ADVANCE_EVERY_S, partial(evals_app.advance_all, control))
            control.start()
        try:
            yield
        finally:
            if background:
                control.stop()

    app = FastAPI(
        title="suanli",
        version=suanli.__version__,
        description="A compute-power network: submit GPU work, it runs at the best site.",
        lifespan=lifespan,
    )
    app.state.control = control
    install_limits(app, control.settings, control.identities.authenticate, partial(site_token_valid, control))
    for router in (
        jobs.router,
        sites.router,
        agents.router,
        relay.router,
        services.router,
        serving.router,
        workdirs.router,
        usage.router,
        identities.router,
        uploads.router,
        datasets.router,
        transfers.router,
        filings.router,
        ledger.router,
        privacy.router,
        federated.router,
        evals.router,
    ):
        app.include_router(router, responses=PROBLEM_RESPONSES)

    registry = CollectorRegistry()
    registry.register(SuanliCollector(control))

    @app.get("/metrics", tags=["meta"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus exposition (outside /api/v1, as scrapers expect)."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["meta"], response_model=None)
    def healthz() -> dict[str, str] | JSONResponse:
        """200 while all is well; 503 while the ledger's alarm is raised (it refused to sign a
        log that does not extend its last signed checkpoint)."""
        alarm = control.chain.ledger.alarm
        if alarm:
            return JSONResponse({"status": "alarm", "version": suanli.__version__, "ledger": alarm}, status_code=503)
        return {"status": "ok", "version": suanli.__version__}

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.errors, exc.retry_after)

    # A full disk is not the server's bug: 507, and the connection stays usable. Other errors
    # of these kinds go on to the 500 handler below.
    @app.exception_handler(OSError)
    @app.exception_handler(DBAPIError)
    async def storage_error(request: Request, exc: Exception) -> JSONResponse:
        if is_nul_in_text(exc):
            return problem(422, "Invalid request", "a text value holds a NUL character (\\u0000), which none may")
        if not is_disk_full(exc):
            raise exc
        return disk_full(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
        return problem(422, "Invalid request", detail, errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail) if exc.status_code != 404 else "Not found", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):
            return disk_full(request, exc)
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal server error", "the server hit an unexpected error; it is logged on the server")

    return app
