"""The dashboard's pages: thin handlers that read a view model and render a template.

A new page is one template and one function decorated with :func:`page` (which also puts it
in the menu). Every page needs a signed-in identity; forms post back the identity's form key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec
from urllib.parse import quote, urlencode

import yaml
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from suanli.app import dashboard, evalboard, network, overview
from suanli.app.control import ControlPlane
from suanli.app.errors import ServiceError
from suanli.app.follow import open_logs
from suanli.core.errors import SpecError
from suanli.core.spec import parse_job_spec
from suanli.core.states import JobState
from suanli.web.auth import MAX_TOKEN_CHARS, TOKEN_COOKIE, Identity, resolve
from suanli.web.deps import Control, JobFilters
from suanli.web.follow import FollowResponse
from suanli.web.i18n import LANG_COOKIE, LANGS, ZONE
from suanli.web.render import NAV, NavEntry, locale_of, render

P = ParamSpec("P")

router = APIRouter(include_in_schema=False)


class SignInRequired(Exception):
    """Raised by :func:`signed_in`; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def signed_in(request: Request, control: Control) -> Identity:
    identity = resolve(control, request.cookies.get(TOKEN_COOKIE))
    if identity is None:
        raise SignInRequired(_here(request))
    return identity


User = Annotated[Identity, Depends(signed_in)]


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _safe_next(value: str | None) -> str:
    """Only paths on this server (never ``//host`` or ``https://…``) are followed after a form."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def page(path: str, title_key: str | None = None, *, operator_only: bool = False) -> Callable[..., Any]:
    """Register a GET page (and, with ``title_key``, a menu entry). A service error in the
    handler becomes an error page in the reader's language instead of a JSON document."""

    def decorate(fn: Callable[P, HTMLResponse]) -> Callable[P, HTMLResponse]:
        if title_key:
            NAV.append(NavEntry(path, title_key, operator_only))
        router.get(path, response_class=HTMLResponse, name=fn.__name__)(html_errors(fn))
        return fn

    return decorate


def html_errors(fn: Callable[P, Response]) -> Callable[P, Response]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return fn(*args, **kwargs)
        except ServiceError as exc:
            request = next(a for a in [*args, *kwargs.values()] if isinstance(a, Request))
            identity = next((a for a in [*args, *kwargs.values()] if isinstance(a, Identity)), None)
            return render(request, "error.html", identity, exc.status, title=exc.title, detail=exc.detail)

    return wrapper


# -- signing in, language -------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", None, next=_safe_next(next), error="")


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    control: Control,
    token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    token = token.strip()
    if resolve(control, token) is None:
        error = locale_of(request).gettext("login.rejected")
        return render(request, "login.html", None, 401, next=_safe_next(next), error=error)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


@router.get("/lang/{code}")
def set_language(code: str, next: str = "/") -> Response:
    """A plain link switches the language (no JavaScript needed); the choice is a cookie."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if code in LANGS:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
    return response


# -- the network -----------------------------------------------------------------------------------


@page("/", "nav.network")
def network_page(request: Request, control: Control, identity: User) -> HTMLResponse:
    view = overview.overview(control, identity)
    chart = {
        "times": [t.astimezone(ZONE).strftime("%H:%M") for t in view.utilisation.times],
        "series": view.utilisation.series,
    }
    budgets = dashboard.budgets_view(control, identity)
    return render(request, "network.html", identity, view=view, chart=chart, budgets=budgets)


# -- jobs --------------------------------------------------------------------------------------------


@page("/jobs", "nav.jobs")
def jobs_list(
    request: Request,
    control: Control,
    identity: User,
    state: Annotated[list[str] | None, Query()] = None,
    tenant: str = "",
    site: str = "",
    name: str = "",
    cursor: int | None = None,
) -> HTMLResponse:
    states = [s.upper() for s in state or [] if s.upper() in JobState.__members__]
    filters = JobFilters(states, tenant, site, name.strip())
    listing = dashboard.jobs_page(control, identity, filters.wanted(), cursor)
    base = filters.query_string()
    next_url = f"/jobs?{urlencode([*base, ('cursor', str(listing.next_cursor))])}" if listing.next_cursor else ""
    first_url = f"/jobs?{urlencode(base)}" if cursor is not None else ""
    return render(
        request,
        "jobs.html",
        identity,
        listing=listing,
        filters=filters,
        all_states=list(JobState),
        next_url=next_url,
        first_url=first_url,
    )


@page("/jobs/new", "nav.submit")
def submit_form(request: Request, identity: User) -> HTMLResponse:
    return render(request, "submit.html", identity, text="", problems=[], source="")


@router.post("/jobs/new", response_class=HTMLResponse)
def submit_job(
    request: Request,
    control: Control,
    identity: User,
    form_key: Annotated[str, Form()] = "",
    spec_text: Annotated[str, Form()] = "",
    spec_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    _check_form(identity, form_key)
    text, source = spec_text, "pasted spec"
    if spec_file is not None and spec_file.filename:
        raw = spec_file.file.read(1 << 20)
        text, source = raw.decode("utf-8", errors="replace"), spec_file.filename
    problems = _submit_problems(control, identity, text, source)
    if isinstance(problems, str):
        return RedirectResponse(f"/jobs/{quote(problems)}", status_code=303)
    return render(request, "submit.html", identity, 422, text=text, problems=problems, source=source)


def _submit_problems(control: ControlPlane, identity: Identity, text: str, source: str) -> list[str] | str:
    """The new job's id, or the problems as the CLI words them."""
    if not text.strip():
        return [f"{source}: the spec is empty; paste a job spec or choose a YAML file"]
    try:
        spec = parse_job_spec(text, source)
    except SpecError as exc:
        return [p.render(exc.source) for p in exc.problems] or [str(exc)]
    if spec.workdir:
        return [
            f"{source}: workdir: the dashboard cannot upload a workdir; remove 'workdir' or submit "
            f"with the CLI: suanli submit {source if source.endswith(('.yaml', '.yml')) else 'FILE'}"
        ]
    try:
        return dashboard.submit_job(control, identity, spec)
    except ServiceError as exc:
        return [exc.detail or exc.title]


class _SpecDumper(yaml.SafeDumper):
    """Multi-line strings (``run``, ``setup``) as literal blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_SpecDumper.add_representer(str, _str)


@page("/jobs/{job_id}")
def job_page(request: Request, control: Control, identity: User, job_id: str) -> HTMLResponse:
    detail = dashboard.job_detail(control, identity, job_id)
    spec_yaml = yaml.dump(detail.job.spec, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True)
    return render(
        request,
        "job.html",
        identity,
        d=detail,
        job=detail.job,
        spec_yaml=spec_yaml,
        log_tail_lines=dashboard.LOG_TAIL_LINES,
    )


@router.get("/jobs/{job_id}/logs/stream")
async def job_logs(control: Control, identity: User, job_id: str, after: int = 0) -> StreamingResponse:
    """The job's output after chunk ``after``, kept open until the job ends (the live view).
    It counts against the tenant's open streams, as the API's ``logs?follow=true`` does."""
    stream = await open_logs(control, identity, job_id, after, visible=dashboard.visible_job)
    return FollowResponse(stream, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/cancel", response_class=HTMLResponse)
def cancel_job(
    request: Request, control: Control, identity: User, job_id: str, form_key: Annotated[str, Form()] = ""
) -> Response:
    _check_form(identity, form_key)
    try:
        dashboard.cancel_job(control, identity, job_id)
    except ServiceError as exc:
        return render(request, "error.html", identity, exc.status, title=exc.title, detail=exc.detail)
    return RedirectResponse(f"/jobs/{quote(job_id)}", status_code=303)


class FormKeyMismatch(ServiceError):
    status = 403
    title = "Forbidden"


def _check_form(identity: Identity, form_key: str) -> None:
    if not identity.form_key_ok(form_key):
        raise FormKeyMismatch("the form is stale or came from another site; reload the page and try again")


# -- sites and nodes (operators) ------------------------------------------------------------------


class NotOperator(ServiceError):
    status = 403
    title = "Forbidden"


@page("/nodes", "nav.nodes", operator_only=True)
def nodes_page(request: Request, control: Control, identity: User, site: str = "") -> HTMLResponse:
    if not identity.is_operator:
        raise NotOperator("the nodes page is for the network's and the sites' operators")
    return _nodes(request, control, identity, site)


def _nodes(request: Request, control: Control, identity: Identity, site: str = "", error: str = "") -> HTMLResponse:
    nodes = [n for n in network.nodes_table(control) if not site or n.site == site]
    return render(request, "nodes.html", identity, 422 if error else 200, nodes=nodes, site=site, error=error)


@router.post("/nodes/{name}/drain", response_class=HTMLResponse)
def drain_node(
    request: Request,
    control: Control,
    identity: User,
    name: str,
    form_key: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Take a node out of scheduling, with a reason; its running attempts finish first."""
    _check_operator(identity, form_key)
    try:
        network.drain_node(control, identity, name, reason)
    except ServiceError as exc:
        return _nodes(request, control, identity, error=exc.detail)
    return RedirectResponse("/nodes", status_code=303)


@router.post("/nodes/{name}/undrain", response_class=HTMLResponse)
def undrain_node(
    request: Request, control: Control, identity: User, name: str, form_key: Annotated[str, Form()] = ""
) -> Response:
    _check_operator(identity, form_key)
    try:
        network.undrain_node(control, identity, name)
    except ServiceError as exc:
        return _nodes(request, control, identity, error=exc.detail)
    return RedirectResponse("/nodes", status_code=303)


def _check_operator(identity: Identity, form_key: str) -> None:
    _check_form(identity, form_key)
    if not identity.is_operator:
        raise NotOperator("draining nodes is for the network's and the site's operators")


# -- usage and bills ---------------------------------------------------------------------------------


@page("/usage", "nav.usage")
def usage_page(
    request: Request, control: Control, identity: User, month: str = "", tenant: str = "", by: str = "site"
) -> HTMLResponse:
    month = month or control.clock.now().astimezone(ZONE).strftime("%Y-%m")
    tenant = tenant if identity.all_tenants else identity.tenant or ""
    by = by if by in ("site", "job", "gpu-type", "tenant") else "site"
    view = dashboard.usage_view(control, identity, month, tenant, by)
    return render(
        request,
        "usage.html",
        identity,
        month=month,
        tenant=tenant,
        tenants=view.tenants,
        by=by,
        lines=view.lines,
        total=view.total,
        waived=view.waived,
        bill=view.bill,
        budgets=view.budgets,
    )


# -- data: datasets, transfers, filings, ledger ------------------------------------------------------


@page("/data", "nav.data")
def data_page(request: Request, control: Control, identity: User) -> HTMLResponse:
    return render(request, "data.html", identity, view=dashboard.data_view(control, identity))


# -- evaluations: the leaderboard ---------------------------------------------------------------------


@page("/evals", "nav.evals")
def evals_page(request: Request, control: Control, identity: User, tasks: str = "") -> HTMLResponse:
    wanted = [t.strip() for t in tasks.split(",") if t.strip()] or None
    board = evalboard.leaderboard(control, identity, wanted)
    return render(request, "evals.html", identity, board=board, tasks=tasks)
