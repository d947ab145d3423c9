"""Who you are and who may do what: login, whoami, tokens, users, tenants."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from suanli.cli.context import (
    JsonOption,
    ServerOption,
    TokenOption,
    client_factory,
    note,
    open_client,
    out_console,
    print_json,
    resolve_server,
    say,
)
from suanli.cli.render import local_time, table
from suanli.core.errors import SuanliError
from suanli.core.resources import parse_duration
from suanli.sdk import DEFAULT_SERVER, config
from suanli.sdk.credentials import forget_token, save_token

token_app = typer.Typer(name="token", help="Your API tokens: create (shown once), list, revoke.", no_args_is_help=True)
user_app = typer.Typer(name="user", help="Users and their roles (admin).", no_args_is_help=True)
tenant_app = typer.Typer(name="tenant", help="Tenants: the customers of the network.", no_args_is_help=True)


def login(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="Read the token from this file.", show_default=False)
    ] = None,
) -> None:
    """Check an API token against the server and remember it for that server
    ($SUANLI_HOME/credentials.json, mode 0600). Without --token it asks for it."""
    url = resolve_server(ctx, server)
    secret = token or (token_file.read_text(encoding="utf-8").strip() if token_file else None)
    if not secret:
        if not sys.stdin.isatty():
            secret = sys.stdin.readline().strip()
        else:
            secret = typer.prompt("API token", hide_input=True).strip()
    if not secret:
        raise SuanliError("no token given: --token, --token-file, or paste it when asked")
    with client_factory(ctx)(url, secret) as client:
        me = client.whoami()
    path = save_token(url, secret)
    who = f"{me.role} '{me.user}'" + (f" of tenant {me.tenant}" if me.tenant else "")
    say(f"logged in to {url} as {who} (token {me.token_id}; saved in {path})")
    if "server" not in config.load() and url != DEFAULT_SERVER:
        config.set_value("server", url)  # a new shell talks to this server with no export
        say(f"{url} is now the default server ('suanli config' shows it)")


def logout(ctx: typer.Context, server: ServerOption = None) -> None:
    """Forget the token saved for the server (it stays valid: 'suanli token revoke' ends it)."""
    url = resolve_server(ctx, server)
    if forget_token(url):
        say(f"logged out of {url}")
    else:
        note(f"no token saved for {url}")


def whoami(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Who the server takes you for: user, role, tenant or sites, and what this token may do."""
    with open_client(ctx, server, token) as client:
        me = client.whoami()
    if json_out:
        print_json(me)
        return
    say(f"user:   {me.user}")
    say(f"role:   {me.role}")
    if me.tenant:
        say(f"tenant: {me.tenant}")
    if me.sites:
        say(f"sites:  {', '.join(me.sites)}")
    say(f"token:  {me.token_id}")
    say(f"scopes: {' '.join(me.scopes)}")


def _lifetime(text: str) -> int:
    if text.strip().lower() in ("never", "0"):
        return 0
    try:
        seconds = parse_duration(text, "--expires", limit_s=10 * 365 * 86400)
    except ValueError as exc:
        raise SuanliError(f"--expires: {exc}; write e.g. 30d, 12h or never") from None
    if seconds < 60:
        raise SuanliError("--expires: a token should live at least a minute")
    return int(seconds)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="A label: where the token is used (laptop, ci).")] = "",
    user: Annotated[
        str | None, typer.Option("--user", help="Make it for this user (admin only).", show_default=False)
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="Limit the token (repeatable): jobs:read, jobs:write, usage:read, network:read, network:write, "
            "data:read, data:write, ledger:read, filings:decide, identities, tokens. Default: all your role allows.",
            show_default=False,
        ),
    ] = None,
    expires: Annotated[str, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m, or never.")] = "90d",
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Make an API token. It is printed once, here, and never again: keep it safe."""
    lifetime = _lifetime(expires)
    with open_client(ctx, server, token) as client:
        made = client.create_token(name=name, user=user, scopes=scope or None, expires_in_s=lifetime)
    if json_out:
        print_json(made)
        return
    until = local_time(made.expires_at) if made.expires_at else "never expires"
    note(f"token {made.id} for {made.user} ({', '.join(made.scopes)}; {until}). It is shown only now:")
    typer.echo(made.token)


@token_app.command("list")
@token_app.command("ls", hidden=True)  # as data, filing and tariff list: either name works
def token_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="This user's tokens (admin).", show_default=False)] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every user's tokens (admin).")] = False,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Your tokens: ids, labels, scopes and dates (never the tokens themselves)."""
    with open_client(ctx, server, token) as client:
        found = client.tokens(user=user, all_users=all_users)
    if json_out:
        print_json(found)
        return
    if not found:
        note("No tokens.")
        return
    rows = [
        (
            t.id,
            t.user,
            t.name or "-",
            "revoked" if t.revoked_at else "active",
            local_time(t.created_at),
            local_time(t.expires_at) if t.expires_at else "never",
            local_time(t.last_used_at) if t.last_used_at else "-",
            " ".join(t.scopes),
        )
        for t in found
    ]
    console = out_console()
    headers = ("ID", "USER", "NAME", "STATE", "CREATED", "EXPIRES", "LAST USED", "SCOPES")
    console.print(table(headers, rows, width=console.width))


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (from 'suanli token list').")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Revoke a token: it stops working at once."""
    with open_client(ctx, server, token) as client:
        out = client.revoke_token(token_id)
    if json_out:
        print_json(out)
        return
    say(f"revoked token {out.id} of {out.user}")


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lower-case name: letters, digits, '.', '_', '-'.")],
    role: Annotated[str, typer.Option("--role", help="member, operator, auditor or admin.")] = "member",
    tenant: Annotated[str | None, typer.Option("--tenant", help="The member's tenant.", show_default=False)] = None,
    site: Annotated[
        list[str] | None, typer.Option("--site", help="A site the operator runs (repeatable).", show_default=False)
    ] = None,
    zone: Annotated[
        str,
        typer.Option("--zone", help="Where the user is: mainland, bonded or overseas (downloads are decided for it)."),
    ] = "mainland",
    with_token: Annotated[
        bool, typer.Option("--token/--no-token", help="Also make the user's first token and print it once.")
    ] = True,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Add a user. Members belong to a tenant; operators run sites; auditors read the ledger."""
    with open_client(ctx, server, token) as client:
        user = client.create_user(name, role=role, tenant=tenant, sites=site or [], zone=zone)
        made = client.create_token(name="first", user=name) if with_token else None
    if json_out:
        print_json([user, made] if made else user)
        return
    where = f" of tenant {user.tenant}" if user.tenant else (f" of {', '.join(user.sites)}" if user.sites else "")
    say(f"user {user.name}: {user.role}{where}" + (f", in the {user.zone} zone" if user.zone != "mainland" else ""))
    if made:
        note(f"their first token ({made.id}), shown only now; hand it over safely:")
        typer.echo(made.token)


@user_app.command("list")
@user_app.command("ls", hidden=True)  # as data, filing and tariff list: either name works
def user_list(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Every user, with role, tenant or sites, and how many live tokens."""
    with open_client(ctx, server, token) as client:
        found = client.users()
    if json_out:
        print_json(found)
        return
    rows = [
        (
            u.name,
            u.role,
            u.tenant or "-",
            ", ".join(u.sites) or "-",
            "disabled" if u.disabled else "active",
            str(u.tokens),
        )
        for u in found
    ]
    console = out_console()
    console.print(table(("USER", "ROLE", "TENANT", "SITES", "STATE", "TOKENS"), rows, width=console.width))


@user_app.command("disable")
def user_disable(
    ctx: typer.Context, name: str, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Disable a user: every token of theirs stops working at once."""
    _set_disabled(ctx, name, True, json_out, server, token)


@user_app.command("enable")
def user_enable(
    ctx: typer.Context, name: str, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Enable a disabled user again (their unrevoked, unexpired tokens work again)."""
    _set_disabled(ctx, name, False, json_out, server, token)


def _set_disabled(
    ctx: typer.Context, name: str, disabled: bool, json_out: bool, server: str | None, token: str | None
) -> None:
    with open_client(ctx, server, token) as client:
        user = client.set_user_disabled(name, disabled)
    if json_out:
        print_json(user)
        return
    say(f"user {user.name} {'disabled' if disabled else 'enabled'}")


@tenant_app.command("create")
def tenant_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lower-case name: letters, digits, '.', '_', '-'.")],
    home_region: Annotated[
        str | None,
        typer.Option(
            "--home-region", help="Where its people are (latency limits count from here).", show_default=False
        ),
    ] = None,
    weight: Annotated[float, typer.Option("--weight", help="Fair-share weight.")] = 1.0,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Add a tenant (admin). Then: suanli user create NAME --tenant TENANT."""
    with open_client(ctx, server, token) as client:
        out = client.create_tenant(name, home_region=home_region, weight=weight)
    if json_out:
        print_json(out)
        return
    say(f"tenant {out.name} (home region {out.home_region or '-'}, weight {out.weight:g})")


@tenant_app.command("list")
@tenant_app.command("ls", hidden=True)  # as data, filing and tariff list: either name works
def tenant_list(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Tenants: every one (admin), or your own (member)."""
    with open_client(ctx, server, token) as client:
        found = client.tenants()
    if json_out:
        print_json(found)
        return
    rows = [(t.name, t.home_region or "-", f"{t.weight:g}", str(t.users), local_time(t.created_at)) for t in found]
    console = out_console()
    console.print(table(("TENANT", "HOME REGION", "WEIGHT", "USERS", "CREATED"), rows, width=console.width))
