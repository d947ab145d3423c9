"""What every command shares: where the server is, how to get a client, where output goes.

Tests (and embedders) inject a client by passing a :class:`CliState` as the root context
object: ``CliRunner().invoke(app, [...], obj=CliState(client_factory=make_fake_client))``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.text import Text

from suanli.cli.render import printable
from suanli.cli.state import (
    ClientFactory,
    CliState,
    JsonOption,
    ServerOption,
    TokenOption,
    state_of,
)
from suanli.sdk import DEFAULT_SERVER, Client, default_server

UNLIMITED_WIDTH = 1000


def default_client_factory(server: str, token: str | None) -> Client:
    return Client(server, token=token)


def client_factory(ctx: typer.Context) -> ClientFactory:
    """The injected factory (tests, embedders), else the SDK's client."""
    return state_of(ctx).client_factory or default_client_factory


def resolve_server(ctx: typer.Context, server: str | None) -> str:
    """Command option, then global option, then $SUANLI_SERVER, then the SDK default."""
    return (server or state_of(ctx).server or default_server() or DEFAULT_SERVER).rstrip("/")


def resolve_token(ctx: typer.Context, token: str | None) -> str | None:
    return token or state_of(ctx).token or os.environ.get("SUANLI_TOKEN") or None


def open_client(ctx: typer.Context, server: str | None = None, token: str | None = None) -> Client:
    """A client for this invocation; use it as a context manager so it is closed."""
    return client_factory(ctx)(resolve_server(ctx, server), resolve_token(ctx, token))


# -- output ---------------------------------------------------------------------------------
# Consoles are made per call (cheap) so they follow the current sys.stdout/sys.stderr and
# $COLUMNS / $NO_COLOR, which matters under test runners that swap the streams.


def out_console() -> Console:
    """Stdout. When it is not a terminal (a pipe, a file) and $COLUMNS is unset, lines are
    not cut at 80 columns: whoever greps the output wants all of it."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = UNLIMITED_WIDTH
    return console


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def say(message: str | Text, *, style: str | None = None) -> None:
    """A line for the user on stdout. Plain strings are never parsed as Rich markup, and their
    control characters are shown as escapes (they may hold names stored by others)."""
    if isinstance(message, str):
        message = printable(message, keep="\n\t")
    out_console().print(message, style=style, markup=False, soft_wrap=True)


def note(message: str | Text, *, style: str | None = None) -> None:
    """A line for the user on stderr (progress, hints, errors); control characters escaped."""
    if isinstance(message, str):
        message = printable(message, keep="\n\t")
    err_console().print(message, style=style, markup=False, soft_wrap=True)


def error(message: str, extra: Sequence[str] = ()) -> None:
    note(Text.assemble(("error: ", "bold red"), printable(message, keep="\n\t")))
    for line in extra:
        note("  " + line)


def print_json(data: BaseModel | Sequence[BaseModel]) -> None:
    """Models as JSON on stdout, nothing else."""
    payload: Any
    if isinstance(data, BaseModel):
        payload = data.model_dump(mode="json")
    else:
        payload = [item.model_dump(mode="json") for item in data]
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


__all__ = [
    "CliState",
    "JsonOption",
    "ServerOption",
    "TokenOption",
    "client_factory",
    "err_console",
    "error",
    "note",
    "open_client",
    "out_console",
    "print_json",
    "resolve_server",
    "resolve_token",
    "say",
    "state_of",
]
