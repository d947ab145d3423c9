"""Commands that show the network: sites and nodes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, out_console, print_json
from suanli.cli.render import DASH, free_total, gpu_counts, table
from suanli.core.api import NodeOut, SiteOut

_NODE_STATE_STYLES = {"idle": "green", "mixed": "cyan", "allocated": "blue", "drained": "yellow", "down": "bold red"}


def sites(
    ctx: typer.Context,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List the sites (compute centers) of the network with their free GPUs (free/total)."""
    with open_client(ctx, server, token) as client:
        found = sorted(client.sites(), key=lambda s: s.name)
    if json_out:
        print_json(found)
        return
    if not found:
        note("No sites have registered yet. Start one with 'suanli agent' (or try 'suanli up --demo').")
        return
    console = out_console()
    headers = ("NAME", "REGION", "ZONE", "BACKEND", "SANDBOX", "ONLINE", "NODES", "GPUS", "RUNNING")
    console.print(table(headers, (_site_row(s) for s in found), width=console.width, flex=7))


def nodes(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option("--site", help="Only nodes of this site.", show_default=False)] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """List nodes with free/total GPUs, CPUs and memory, and why a node is unavailable."""
    with open_client(ctx, server, token) as client:
        found = sorted(client.nodes(site=site), key=lambda n: (n.site, n.name))
    if json_out:
        print_json(found)
        return
    if not found:
        note(f"No nodes at site {site}." if site else "No nodes yet.")
        return
    console = out_console()
    headers = ("NAME", "SITE", "STATE", "GPUS", "CPUS", "MEMORY GiB", "HEALTH/REASON")
    console.print(table(headers, (_node_row(n) for n in found), width=console.width))


def _site_row(site: SiteOut) -> tuple[str | Text, ...]:
    online = Text("yes", style="green") if site.online else Text("no", style="bold red")
    return (
        site.name,
        site.region,
        site.zone,
        site.backend,
        _sandbox(site.sandbox),
        online,
        str(site.nodes),
        gpu_counts(site.gpus),
        str(site.running_jobs),
    )


def _sandbox(sandbox: str | None) -> str | Text:
    """``none`` stands out: that site's jobs see the agent's machine."""
    if sandbox == "none":
        return Text("none", style="bold yellow")
    return sandbox or DASH


def _node_row(node: NodeOut) -> tuple[str | Text, ...]:
    gpus = f"{node.gpus_free}/{node.gpus_total} {node.gpu_type or 'GPU'}" if node.gpus_total else DASH
    if node.healthy:
        health = Text(node.reason, style="yellow") if node.reason else Text("ok", style="green")
    else:
        health = Text(node.reason or "unhealthy", style="red")
    return (
        node.name,
        node.site,
        Text(node.state, style=_NODE_STATE_STYLES.get(node.state, "")),
        gpus,
        free_total(node.cpus_free, node.cpus_total),
        free_total(round(node.memory_free, 1), round(node.memory_total, 1)),
        health,
    )


def drain(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to take out of scheduling.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (shown to everyone who looks).")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Drain a node for repair: no new attempts go there; running ones finish first."""
    with open_client(ctx, server, token) as client:
        found = client.drain(node, reason)
    if json_out:
        print_json(found)
        return
    note(f"Drained {found.name} at {found.site}: {reason}")


def undrain(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node to return to service.")],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Return a drained node to service."""
    with open_client(ctx, server, token) as client:
        found = client.undrain(node)
    if json_out:
        print_json(found)
        return
    note(f"{found.name} at {found.site} is back in service ({found.state})")
