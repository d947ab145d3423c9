"""The root context object and the global options: all ``suanli --help`` needs of the context.

Kept free of the SDK, httpx, Rich and pydantic, so the root group starts fast; the client is
built by :func:`suanli.cli.context.open_client`, which a command imports with its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from suanli.sdk import Client

#: Builds a client for a server URL and an optional token.
ClientFactory = Callable[[str, str | None], "Client"]

CONNECTION_PANEL = "Connection"

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        metavar="URL",
        help="Server URL (default: $SUANLI_SERVER, else 'suanli config', else http://127.0.0.1:8731).",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        metavar="TOKEN",
        help="API token (default: $SUANLI_TOKEN, else 'suanli config', else the one 'suanli login' saved "
        "for the server).",
        show_default=False,
        rich_help_panel=CONNECTION_PANEL,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


@dataclass
class CliState:
    """The root context object. Global ``--server``/``--token`` land here; ``client_factory``
    None means the SDK's :class:`~suanli.sdk.Client`."""

    server: str | None = None
    token: str | None = None
    client_factory: ClientFactory | None = None


def state_of(ctx: typer.Context) -> CliState:
    return ctx.ensure_object(CliState)
