"""``suanli filing``: the declarations a route needs — create, submit, (auditors) decide, and the package as
HTML or PDF."""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, out_console, say
from suanli.cli.render import table
from suanli.sdk import Client

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
    to: Annotated[str | None, typer.Option("--to", help="Destination site of a copy.")] = None,
    zone: Annotated[
        str | None,
        typer.Option("--zone", help="Or: for downloads by users in this zone (overseas), instead of a site."),
    ] = None,
    route: Annotated[
        str | None, typer.Option("--route", help="standard_contract | certification | security_assessment")
    ] = None,
    package: Annotated[
        Path | None,
        typer.Option("--package", help="Write the generated package here (HTML; a .pdf name gives the PDF)."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Create the filing the route needs, with its generated package (facts, PI impact assessment outline)."""
    if package is not None:
        _writable(package, "--package")
    with open_client(ctx, server, token) as client:
        f = client.create_filing(dataset, to, route, zone=zone)
        target = package or Path(f"{f['id']}.html")
        data = _fetch(client, f["id"], "pdf" if target.suffix.lower() == ".pdf" else "html")
    target.write_bytes(data)
    say(_line(f))
    note(f"package written to {target}; submit with: suanli filing submit {f['id']}")


def _writable(target: Path, option: str) -> None:
    """Refuse, before anything is asked of the server, a file that could not be written."""
    if not target.parent.is_dir():
        raise typer.BadParameter(f"no folder {target.parent} to write {target.name} in", param_hint=f"'{option}'")


def _fetch(client: Client, filing_id: str, fmt: Literal["html", "pdf"]) -> bytes:
    if fmt == "pdf":
        return client.filing_package(filing_id, "pdf")
    return client.filing_package(filing_id).encode("utf-8")


@app.command("package")
def package_(
    ctx: typer.Context,
    filing_id: str,
    pdf: Annotated[
        Path | None,
        typer.Option("--pdf", metavar="FILE", help="Write the package as a PDF (A4) here; a folder takes ID.pdf."),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Write the package as HTML here; a folder takes ID.html."),
    ] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Write a filing's package: HTML (the default: ID.html) or, with --pdf FILE, a PDF. '-' writes to stdout."""
    if pdf is not None and html is not None:
        raise typer.BadParameter("give --pdf FILE or --html FILE, not both", param_hint="'--pdf' / '--html'")
    fmt: Literal["html", "pdf"] = "pdf" if pdf is not None else "html"
    target = pdf or html or Path(f"{filing_id}.{fmt}")
    to_stdout = str(target) == "-"
    if to_stdout and json_out:
        raise typer.BadParameter("--json prints a summary on stdout; give a file, not '-'", param_hint="'--json'")
    if to_stdout and fmt == "pdf" and sys.stdout.isatty():
        raise typer.BadParameter(
            "not writing a PDF to a terminal: redirect stdout or give a file", param_hint="'--pdf'"
        )
    if target.is_dir():
        target = target / f"{filing_id}.{fmt}"
    elif not to_stdout:
        _writable(target, f"--{fmt}")
    with open_client(ctx, server, token) as client:
        data = _fetch(client, filing_id, fmt)
    if to_stdout:
        typer.echo(data, nl=False)
        return
    target.write_bytes(data)
    if json_out:
        summary = {
            "filing": filing_id,
            "format": fmt,
            "path": str(target),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    say(f"package of {filing_id} written to {target} ({fmt.upper()}, {len(data):,} bytes)")


def _move(ctx: typer.Context, filing_id: str, action: str, server: str | None, token: str | None, **body: Any) -> None:
    with open_client(ctx, server, token) as client:
        f = client.move_filing(filing_id, action, **{k: v for k, v in body.items() if v is not None})
    say(_line(f))
    for t in f.get("released_transfers", []):
        resume = shlex.join(["suanli", "data", "copy", f["dataset"], "--to", f["destination"], "--resume", t])
        say(f"transfer {t} may now run: {resume}")


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
        return
    rows = [
        (f["id"], f["dataset"], f["destination"], f["route"], f["state"], (f.get("expires_at") or "-")[:10])
        for f in items
    ]
    console = out_console()
    console.print(table(("ID", "DATASET", "TO", "ROUTE", "STATE", "EXPIRES"), rows, width=console.width))
