"""``suanli budget``: tenants' monthly budgets, this month's spend, and (the admin) setting them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, note, open_client, out_console, print_json, say
from suanli.cli.render import local_time, table

app = typer.Typer(
    help="Each tenant's monthly budget and this month's spend; past 80 % it is a warning.",
    invoke_without_command=True,
)

#: What ``budget set TENANT none`` means: no budget.
NONE = ("none", "off", "-")


@app.callback()
def budget(
    ctx: typer.Context,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Each tenant's monthly budget and this month's spend; past 80 % it is a warning.

    Without a subcommand it lists them (as 'budget ls')."""
    if ctx.invoked_subcommand is None:
        _list(ctx, json_out, server, token)


@app.command("ls")
@app.command("list", hidden=True)
def budget_ls(
    ctx: typer.Context,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Each tenant's monthly budget and this month's spend (a member sees its own)."""
    _list(ctx, json_out, server, token)


def _list(ctx: typer.Context, json_out: bool, server: str | None, token: str | None) -> None:
    with open_client(ctx, server, token) as client:
        found = client.budgets()
    if json_out:
        print_json(found)
        return
    if not found:
        note(
            "No tenant has a monthly budget ('suanli budget set TENANT CNY', "
            "or monthly_budget_cny in the network file)."
        )
        return
    rows = [(b.tenant, _cny(b.spent_cny), _cny(b.budget_cny), f"{b.used * 100:.1f}%", b.state) for b in found]
    console = out_console()
    console.print(table(("TENANT", "SPENT CNY", "BUDGET CNY", "USED", "STATE"), rows, width=console.width))
    for b in found:
        if b.state != "ok":
            note(f"warning: tenant {b.tenant} has used {b.used * 100:.0f}% of its monthly budget")


@app.command("set")
def budget_set(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(metavar="TENANT", help="The tenant.", show_default=False)],
    amount: Annotated[
        str, typer.Argument(metavar="CNY", help="Monthly budget in CNY (e.g. 2000), or 'none' to remove it.")
    ],
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Set a tenant's monthly budget (the admin). It is kept with who set it and when, and
    outlives the network file's monthly_budget_cny."""
    value = None if amount.strip().lower() in NONE else amount
    with open_client(ctx, server, token) as client:
        change = client.set_budget(tenant, value)
    if json_out:
        print_json(change)
    elif change.budget_cny is None:
        say(f"Tenant {change.tenant} has no monthly budget now.")
    else:
        say(f"Tenant {change.tenant}: monthly budget {_cny(change.budget_cny)} CNY.")


@app.command("history")
def budget_history(
    ctx: typer.Context,
    tenant: Annotated[
        str | None, typer.Argument(metavar="[TENANT]", help="Only this tenant's.", show_default=False)
    ] = None,
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Every change of the budgets, oldest first: the new value, who set it, when."""
    with open_client(ctx, server, token) as client:
        found = client.budget_history(tenant)
    if json_out:
        print_json(found)
        return
    if not found:
        note("No budget was ever set.")
        return
    rows = [
        (c.tenant, "none" if c.budget_cny is None else _cny(c.budget_cny), c.set_by, local_time(c.set_at))
        for c in found
    ]
    console = out_console()
    console.print(table(("TENANT", "BUDGET CNY", "SET BY", "WHEN"), rows, width=console.width))


def _cny(text: str) -> str:
    """An amount as a bill shows it: ``20.77`` (two decimals, thousands separated)."""
    return f"{Decimal(text):,.2f}"
