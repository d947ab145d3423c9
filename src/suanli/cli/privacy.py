"""``suanli data budget`` and ``suanli data spend``: a dataset's differential-privacy budget."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, open_client, say

EpsOpt = Annotated[float | None, typer.Option("--epsilon", help="ε: the total privacy loss allowed.")]
DeltaOpt = Annotated[float | None, typer.Option("--delta", help="δ: the total failure probability allowed.")]


def _amount(a: dict[str, Any] | None) -> str:
    return "none set" if a is None else f"ε={a['epsilon']:g}, δ={a['delta']:g}"


def budget(
    ctx: typer.Context,
    name: str,
    epsilon: EpsOpt = None,
    delta: DeltaOpt = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Show NAME's privacy budget, spends and federated uses; with --epsilon and --delta, set it
    (owners only; every change goes on the ledger)."""
    if (epsilon is None) != (delta is None):
        raise typer.BadParameter("give both --epsilon and --delta to set a budget, or neither to show it")
    with open_client(ctx, server, token) as client:
        out = client.privacy(name) if epsilon is None else client.set_privacy_budget(name, epsilon, delta or 0.0)
    if json_out:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    say(f"{name}: budget {_amount(out['budget'])}; spent {_amount(out['spent'])}; left {_amount(out['remaining'])}")
    say(f"  federated uses: {out['federated_uses']}")
    for s in out["spends"]:
        job = f" job {s['job_id']}" if s["job_id"] else ""
        say(f"  {s['spent_at']}  {s['purpose']}{job}  ε={s['epsilon']:g} δ={s['delta']:g}  by {s['spent_by']}")
    if out["budget"] is None:
        say(f"No budget: nothing may be spent until the owner runs `suanli data budget {name} --epsilon E --delta D`.")


def spend(
    ctx: typer.Context,
    name: str,
    epsilon: Annotated[float, typer.Option("--epsilon", help="ε this release costs.")],
    delta: Annotated[float, typer.Option("--delta", help="δ this release costs.")] = 0.0,
    note_text: Annotated[str, typer.Option("--note", help="What the release is (kept with the spend).")] = "",
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Spend part of NAME's budget for a DP release; refused with the numbers past what is left."""
    with open_client(ctx, server, token) as client:
        out = client.spend_privacy(name, epsilon, delta, note=note_text)
    if json_out:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    say(f"spent ε={out['epsilon']:g}, δ={out['delta']:g} of {name}'s budget (ledger entry {out['ledger_index']})")


def federate(
    ctx: typer.Context,
    name: str,
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant whose federated runs may train on NAME.")],
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Consent (owners) that TENANT's federated runs train on NAME at its site; only masked
    updates leave it. On the ledger as ``federated.grant``."""
    with open_client(ctx, server, token) as client:
        client.grant_federated(name, tenant)
    say(f"{tenant}'s federated runs may train on {name} at its site")
