"""``suanli filing``: the declarations a route needs — create, submit, and (auditors) decide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, say

app = typer.Typer(
    name="filing", help="Filings: standard contract, certification, security assessment.", no_args_is_help=True
)


def _line(f: dict[str, Any]) -> str:
    exp = f" expires {f['expires_at'][:10]}" if f.get("expires_at") else ""
    return f"{f['id']}  {f['dataset']:<16} → {f['destination']:<16} {f['route']:<20} {f['state']}{exp}"


@app.command()
def create(
    ctx: typer.Context,
    dataset: str,
    to: Annotated[str, typer.Option("--to", help="Destination site.")],
    route: Annotated[
        str | None, typer.Option("--route", help="standard_contract | certification | security_assessment")
    ] = None,
    package: Annotated[Path | None, typer.Option("--package", help="Write the generated package (HTML) here.")] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Create the filing the route needs, with its generated package (facts, PI impact assessment outline)."""
    with open_client(ctx, server, token) as client:
        f = client.create_filing(dataset, to, route)
        html = client.filing_package(f["id"])
    target = package or Path(f"{f['id']}.html")
    target.write_text(html, encoding="utf-8")
    say(_line(f))
    note(f"package written to {target}; submit with: suanli filing submit {f['id']}")


def _move(ctx: typer.Context, filing_id: str, action: str, server: str | None, token: str | None, **body: Any) -> None:
    with open_client(ctx, server, token) as client:
        f = client.move_filing(filing_id, action, **{k: v for k, v in body.items() if v is not None})
    say(_line(f))
    for t in f.get("released_transfers", []):
        say(f"transfer {t} may now run: suanli data copy --resume {t} …")


@app.command()
def submit(ctx: typer.Context, filing_id: str, server: ServerOption = None, token: TokenOption = None) -> None:
    """Submit a draft filing for the auditor's decision."""
    _move(ctx, filing_id, "submit", server, token)


@app.command()
def approve(
    ctx: typer.Context,
    filing_id: str,
    note_: Annotated[str, typer.Option("--note")] = "",
    certificate: Annotated[
        str | None, typer.Option("--certificate", help="Certificate id (certification route).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Expiry (ISO date); default from the rule set.")
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(auditor) Accept a submitted filing; transfers waiting on it become ready."""
    _move(
        ctx,
        filing_id,
        "approve",
        server,
        token,
        note=note_,
        certificate_id=certificate,
        expires_at=f"{expires}T00:00:00Z" if expires and "T" not in expires else expires,
    )


@app.command()
def reject(
    ctx: typer.Context,
    filing_id: str,
    note_: Annotated[str, typer.Option("--note")] = "",
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """(auditor) Reject a submitted filing."""
    _move(ctx, filing_id, "reject", server, token, note=note_)


@app.command("ls")
def list_(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state")] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List filings and their state."""
    with open_client(ctx, server, token) as client:
        items = client.filings(state)
    if json_out:
        typer.echo(json.dumps(items, indent=2))
        return
    if not items:
        note("No filings.")
    for f in items:
        say(_line(f))
