"""The web dashboard: server-rendered pages (Jinja2) over the application layer (``suanli.app``),
in Chinese and English, with htmx and Apache ECharts served from this package (no CDN).

Only ``suanli.launch`` imports this package: ``suanli server`` and ``suanli up`` call
:func:`mount_dashboard` on the app ``create_app`` built; the server itself never imports it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from suanli.web import files
from suanli.web.routes import SignInRequired, router

STATIC_DIR = Path(__file__).parent / "static"

__all__ = ["mount_dashboard"]


class HashedStaticFiles(StaticFiles):
    """Static files whose URLs carry their content hash (``?v=…``, see ``render.static_url``):
    browsers keep them for a year and do not even revalidate, so a page paints at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response: Response = await super().get_response(path, scope)
        if response.status_code == 200 and b"v=" in scope.get("query_string", b""):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def mount_dashboard(app: FastAPI) -> FastAPI:
    """Serve the dashboard at ``/`` (pages and the files they link to), ``/static`` (its assets) on
    ``app``; returns it."""
    app.include_router(router)
    app.include_router(files.router)
    app.mount("/static", HashedStaticFiles(directory=STATIC_DIR), name="static")

    async def sign_in(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='')}", status_code=303)

    app.add_exception_handler(SignInRequired, sign_in)
    return app
