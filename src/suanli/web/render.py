"""Jinja2 rendering: one environment, the request's language and identity in every template,
and the navigation every page shares."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

import suanli
from suanli.web.auth import Identity
from suanli.web.i18n import LANG_COOKIE, Locale, negotiate

STATIC_PREFIX = "/static"


@dataclass(frozen=True)
class NavEntry:
    """One item of the menu: a page's path, the message key of its title, who sees it."""

    path: str
    title_key: str
    operator_only: bool = False


#: The menu, in order. A page adds itself with :func:`suanli.web.routes.page`.
NAV: list[NavEntry] = []


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("suanli.web", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.globals["version"] = suanli.__version__
    env.globals["static"] = static_url
    return env


@cache
def _asset_hash(path: str) -> str:
    try:
        data = resources.files("suanli.web").joinpath("static", path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return "0"
    return hashlib.sha256(data).hexdigest()[:10]


def static_url(path: str) -> str:
    """The URL of a static file, with its content hash so browsers may cache it for long."""
    return f"{STATIC_PREFIX}/{path}?v={_asset_hash(path)}"


def locale_of(request: Request) -> Locale:
    return Locale(negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")))


def render(
    request: Request, template: str, identity: Identity | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    loc = locale_of(request)
    nav = [e for e in NAV if identity is not None and (not e.operator_only or identity.is_operator)]
    path = request.url.path
    matches = [e.path for e in nav if path == e.path or (e.path != "/" and path.startswith(e.path + "/"))]
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            identity=identity,
            loc=loc,
            _=loc.gettext,
            lang=loc.lang,
            nav=nav,
            here=here,
            path=path,
            active=max(matches, key=len, default=""),
            form_key=identity.form_key if identity else "",
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Vary"] = "Accept-Language, Cookie"
    response.headers["Cache-Control"] = "no-store"
    return response
