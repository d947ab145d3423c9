"""The ``suanli`` command line: a Typer app built on the SDK only.

More commands join with ``app.command()`` / ``app.add_typer()`` from a composition module;
they get the global ``--server``/``--token`` (read them with ``suanli.cli.context``) and the
error boundary of :class:`suanli.cli.errors.SuanliGroup` for free.
"""

from __future__ import annotations

from typing import Annotated

import typer

from suanli import __version__
from suanli.cli import data, explain, filing, identities, jobs, ledger, network, usage, views
from suanli.cli.context import ServerOption, TokenOption, state_of
from suanli.cli.errors import SuanliGroup

app = typer.Typer(
    name="suanli",
    cls=SuanliGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"suanli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    server: ServerOption = None,
    token: TokenOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """suanli (算力): submit GPU work to a compute-power network and follow it.

    The server is --server, else $SUANLI_SERVER, else http://127.0.0.1:8731; every command
    also takes --server and --token after its name.
    """
    state = state_of(ctx)
    state.server = server or state.server
    state.token = token or state.token


@app.command()
def version() -> None:
    """Print the version of this client."""
    typer.echo(f"suanli {__version__}")


app.command(rich_help_panel="Jobs")(jobs.submit)
app.command("jobs", rich_help_panel="Jobs")(views.jobs)
app.command(rich_help_panel="Jobs")(views.status)
app.command(rich_help_panel="Jobs")(jobs.logs)
app.command(rich_help_panel="Jobs")(jobs.cancel)
app.command(rich_help_panel="Jobs")(explain.explain)
app.command(rich_help_panel="Network")(network.sites)
app.command(rich_help_panel="Network")(network.nodes)
app.command(rich_help_panel="Network")(network.drain)
app.command(rich_help_panel="Network")(network.undrain)
app.command(rich_help_panel="Usage and bills")(usage.usage)
app.command(rich_help_panel="Usage and bills")(usage.invoice)
app.command(rich_help_panel="Usage and bills")(usage.revenue)
app.command(rich_help_panel="Usage and bills")(usage.budget)
app.add_typer(usage.tariff_app, name="tariff", rich_help_panel="Usage and bills")

app.command(rich_help_panel="Identity")(identities.login)
app.command(rich_help_panel="Identity")(identities.logout)
app.command(rich_help_panel="Identity")(identities.whoami)
app.add_typer(identities.token_app, name="token", rich_help_panel="Identity")
app.add_typer(identities.user_app, name="user", rich_help_panel="Identity")
app.add_typer(identities.tenant_app, name="tenant", rich_help_panel="Identity")

app.add_typer(data.app, rich_help_panel="Data")
app.add_typer(filing.app, rich_help_panel="Data")
app.add_typer(ledger.app, rich_help_panel="Data")


def main() -> None:
    """Console-script entry point."""
    app(prog_name="suanli")


__all__ = ["app", "main"]
