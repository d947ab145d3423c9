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
from suanli.sdk import DEFAULT_SERVER, Client, config

UNLIMITED_WIDTH = 1000


def default_client_factory(server: str, token: str | None) -> Client:
    return Client(server, token=token)


def client_factory(ctx: typer.Context) -> ClientFactory:
    """The injected factory (tests, embedders), else the SDK's client."""
    return state_of(ctx).client_factory or default_client_factory


def setting(ctx: typer.Context, key: str, given: str | None) -> tuple[str | None, str]:
    """A connection setting and where it came from, by the documented precedence: the command's
    flag, the global flag, the environment, the config file (``suanli config``)."""
    state = state_of(ctx)
    env = {"server": "SUANLI_SERVER", "token": "SUANLI_TOKEN"}[key]
    if given:
        return given, "flag"
    if getattr(state, key):
        return getattr(state, key), "flag"
    if os.environ.get(env):
        return os.environ[env], f"${env}"
    stored = config.load().get(key)
    if stored:
        return stored, str(config.config_path())
    return None, ""


def resolve_server(ctx: typer.Context, server: str | None) -> str:
    """--server (after the command or before it), $SUANLI_SERVER, the config file, the default."""
    return (setting(ctx, "server", server)[0] or DEFAULT_SERVER).rstrip("/")


def resolve_token(ctx: typer.Context, token: str | None) -> str | None:
    """--token, $SUANLI_TOKEN, the config file; else None (the SDK then uses what 'suanli login'
    saved for the server)."""
    return setting(ctx, "token", token)[0]


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
