"""Commands for services: ``suanli serve SPEC``, ``suanli services``, ``suanli service
status|logs|scale|stop`` (docs/serving.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from suanli.cli.context import JsonOption, ServerOption, TokenOption, open_client, out_console, print_json, say
from suanli.core.services import ServiceOut
from suanli.core.spec import parse_job_spec

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Service name.", show_default=False)]
TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="The service's tenant (the admin names it).", show_default=False)
]

service_app = typer.Typer(no_args_is_help=True, help="One service: status, logs, scale, stop.")


def serve(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Job spec with a service: section.", show_default=False)],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Start a service from a job spec with a service: section; its workdir is uploaded with it."""
    spec = parse_job_spec(file.read_text(encoding="utf-8"), str(file))
    workdir = (file.parent / spec.workdir).resolve() if spec.workdir else None
    with open_client(ctx, server, token) as client:
        out = client.serve(spec, workdir=workdir)
    if json_out:
        print_json(out)
        return
    say(
        f"Service {out.name} ({out.tenant}) started: {out.desired} replica(s) wanted "
        f"(from {out.min_replicas} to {out.max_replicas})"
    )
    say(f"  endpoint: {client.server}{out.endpoint}   models: {', '.join(out.models)}")


def services(
    ctx: typer.Context, json_out: JsonOption = False, server: ServerOption = None, token: TokenOption = None
) -> None:
    """List services with their replicas (ready/wanted), requests and tokens."""
    with open_client(ctx, server, token) as client:
        items = client.services()
    if json_out:
        print_json(items)
        return
    table = Table("NAME", "TENANT", "STATE", "READY", "WANTED", "REQUESTS", "TOKENS IN/OUT", "ENDPOINT", box=None)
    for s in items:
        table.add_row(
            s.name,
            s.tenant,
            s.state,
            str(s.ready),
            f"{s.desired} ({s.min_replicas}-{s.max_replicas})",
            str(s.requests),
            f"{s.prompt_tokens}/{s.completion_tokens}",
            s.endpoint,
        )
    out_console().print(table)


def _show(out: ServiceOut) -> None:
    say(f"Service {out.name} ({out.tenant}): {out.state}, {out.ready} ready of {out.desired} wanted")
    say(f"  endpoint {out.endpoint}, models {', '.join(out.models)}; replicas {out.min_replicas}-{out.max_replicas}")
    say(f"  {out.requests} requests, {out.prompt_tokens} prompt and {out.completion_tokens} completion tokens")
    for r in out.replicas:
        where = f"at {r.site}" if r.site else "not placed"
        say(
            f"  replica {r.job_id}: {r.state} {where}, {'ready' if r.ready else 'not ready'}, {r.outstanding} in flight"
        )


@service_app.command("status")
def status(
    ctx: typer.Context,
    name: NameArg,
    tenant: TenantOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Show a service: its state, endpoint, replicas and what it answered."""
    with open_client(ctx, server, token) as client:
        out = client.service(name, tenant=tenant)
    print_json(out) if json_out else _show(out)


@service_app.command("logs")
def logs(
    ctx: typer.Context,
    name: NameArg,
    replica: Annotated[
        str | None, typer.Option("--replica", metavar="JOB", help="This replica's job (default: the first).")
    ] = None,
    tenant: TenantOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Print the output of one of a service's replicas."""
    with open_client(ctx, server, token) as client:
        out = client.service(name, tenant=tenant)
        ids = [r.job_id for r in out.replicas]
        if replica is not None and replica not in ids:
            raise typer.BadParameter(
                f"{replica} is not a running replica of {name}; its replicas: {', '.join(ids) or 'none'}"
            )
        if not ids:
            say(f"service {name} has no replica running now")
            return
        for text in client.logs(replica or ids[0]):
            typer.echo(text, nl=False)


@service_app.command("scale")
def scale(
    ctx: typer.Context,
    name: NameArg,
    replicas: Annotated[int, typer.Argument(metavar="N", help="Replicas wanted (within the spec's min..max).")],
    tenant: TenantOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Set the number of replicas a service wants now."""
    with open_client(ctx, server, token) as client:
        out = client.scale_service(name, replicas, tenant=tenant)
    print_json(out) if json_out else _show(out)


@service_app.command("stop")
def stop(
    ctx: typer.Context,
    name: NameArg,
    tenant: TenantOption = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Stop a service: its replicas are cancelled ('suanli serve' starts it again)."""
    with open_client(ctx, server, token) as client:
        out = client.stop_service(name, tenant=tenant)
    print_json(out) if json_out else _show(out)
