"""``suanli config``: the CLI's default server and token, kept in ``$SUANLI_HOME/config.json``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from suanli.cli.context import out_console, say, setting
from suanli.cli.render import table
from suanli.sdk import DEFAULT_SERVER
from suanli.sdk import config as store

app = typer.Typer(
    help="The CLI's default server and token ($SUANLI_HOME/config.json): show, set, unset.",
    invoke_without_command=True,
)

KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="server or token.", show_default=False)]


@app.callback()
def config(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
    reveal: Annotated[bool, typer.Option("--reveal", help="Show the whole token, not its first characters.")] = False,
) -> None:
    """Show the server and token every command uses and where each comes from.

    Precedence, highest first: --server/--token, $SUANLI_SERVER/$SUANLI_TOKEN, the config file
    (suanli config set), then the token 'suanli login' saved for the server and the built-in
    server http://127.0.0.1:8731."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for key in store.KEYS:
        value, source = setting(ctx, key, None)
        if value is None and key == "server":
            value, source = DEFAULT_SERVER, "built in"
        elif value is None:
            source = "'suanli login' for the server, if any"
        shown = value if value is None or key != "token" or reveal else _masked(value)
        rows.append({"key": key, "value": shown, "source": source})
    if json_out:
        typer.echo(json.dumps({"file": str(store.config_path()), "settings": rows}, indent=2))
        return
    console = out_console()
    body = [(str(r["key"]), r["value"] or "-", str(r["source"])) for r in rows]
    console.print(table(("KEY", "VALUE", "FROM"), body, width=console.width))
    say(f"config file: {store.config_path()}")


@app.command("set")
def config_set(
    key: KeyArg,
    value: Annotated[str, typer.Argument(metavar="VALUE", help="The new value.", show_default=False)],
) -> None:
    """Set a default (server or token) in the config file (mode 0600)."""
    path = _set(key, value.strip())
    say(f"{key} set in {path}")


@app.command("unset")
def config_unset(key: KeyArg) -> None:
    """Remove a default from the config file."""
    path = _set(key, None)
    say(f"{key} removed from {path}")


def _set(key: str, value: str | None) -> str:
    if value == "":
        raise typer.BadParameter("give a value, or use 'suanli config unset KEY'", param_hint="VALUE")
    try:
        return str(store.set_value(key, value.rstrip("/") if value and key == "server" else value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="KEY") from None


def _masked(token: str) -> str:
    return token[:12] + "…" if len(token) > 12 else "…"
