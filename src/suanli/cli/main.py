"""The ``suanli`` command line: a Typer app built on the SDK only.

More commands join with ``app.command()`` / ``app.add_typer()`` from a composition module;
they get the global ``--server``/``--token`` (read them with ``suanli.cli.context``) and the
error boundary of :class:`suanli.cli.errors.SuanliGroup` for free. The commands below are
registered lazily (:mod:`suanli.cli.lazy`): a command's module, with the SDK, Rich and the
pydantic models it needs, is imported only when that command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from suanli import __version__
from suanli.cli.lazy import LazyCommand, LazyGroup
from suanli.cli.state import ServerOption, TokenOption, state_of

app = typer.Typer(
    name="suanli",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
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

    The server is --server, else $SUANLI_SERVER, else the config file ('suanli config'), else
    http://127.0.0.1:8731; every command also takes --server and --token after its name.
    """
    state = state_of(ctx)
    state.server = server or state.server
    state.token = token or state.token


@app.command()
def version() -> None:
    """Print the version of this client."""
    typer.echo(f"suanli {__version__}")


LazyGroup.register(
    LazyCommand(
        "submit",
        "suanli.cli.jobs:submit",
        "Jobs",
        "Submit a job spec; its workdir (relative to the spec file) is uploaded with it.",
    ),
    LazyCommand(
        "rerun",
        "suanli.cli.jobs:rerun",
        "Jobs",
        "Submit a job again as a new job: its stored spec, secrets and workdir, with any of\n"
        "--gpus, --env, --time, --priority, --workdir, --region, --name over them.",
    ),
    LazyCommand(
        "jobs",
        "suanli.cli.views:jobs",
        "Jobs",
        "List jobs: by default those pending or running plus those that finished in the last\n"
        "24 hours, oldest first. --all lists every job; --state lists every job in that state.",
    ),
    LazyCommand(
        "status",
        "suanli.cli.views:status",
        "Jobs",
        "Show one job: its state, why it waits or failed, its resources and every attempt.",
    ),
    LazyCommand(
        "logs",
        "suanli.cli.jobs:logs",
        "Jobs",
        "Print a job's output.",
    ),
    LazyCommand(
        "download",
        "suanli.cli.download:download",
        "Jobs",
        "Fetch a succeeded job's output folder (its output: dataset) and unpack it into DIR.",
    ),
    LazyCommand(
        "cancel",
        "suanli.cli.jobs:cancel",
        "Jobs",
        "Cancel a job. A running job is stopped at its site; its state shows when it is gone.",
    ),
    LazyCommand(
        "explain",
        "suanli.cli.explain:explain",
        "Jobs",
        "Explain a job's placement: its state and reason, then per site why it was or was not\n"
        "chosen (GPU type, regions, latency, price, when capacity frees).",
    ),
    LazyCommand(
        "serve",
        "suanli.cli.services:serve",
        "Services",
        "Start a service from a job spec with a service: section; its workdir is uploaded with it.",
    ),
    LazyCommand(
        "services",
        "suanli.cli.services:services",
        "Services",
        "List services with their replicas (ready/wanted), requests and tokens.",
    ),
    LazyCommand(
        "service",
        "suanli.cli.services:service_app",
        "Services",
        "One service: status, logs, scale, stop.",
        group=True,
    ),
    LazyCommand(
        "sites",
        "suanli.cli.network:sites",
        "Network",
        "List the sites (compute centers) of the network with their free GPUs (free/total).",
    ),
    LazyCommand(
        "nodes",
        "suanli.cli.network:nodes",
        "Network",
        "List nodes with free/total GPUs, CPUs and memory, and why a node is unavailable.",
    ),
    LazyCommand(
        "drain",
        "suanli.cli.network:drain",
        "Network",
        "Drain a node for repair: no new attempts go there; running ones finish first.",
    ),
    LazyCommand(
        "undrain",
        "suanli.cli.network:undrain",
        "Network",
        "Return a drained node to service.",
    ),
    LazyCommand(
        "usage",
        "suanli.cli.usage:usage",
        "Usage and bills",
        "Metered usage and what it cost (CNY), like a utility bill: GPU-seconds by type, CPU-seconds,\n"
        "memory GiB-hours. Waived usage (attempts the platform lost) is shown apart.",
    ),
    LazyCommand(
        "invoice",
        "suanli.cli.usage:invoice",
        "Usage and bills",
        "A tenant's monthly invoice. Its lines add up exactly to the usage records.",
    ),
    LazyCommand(
        "revenue",
        "suanli.cli.usage:revenue",
        "Usage and bills",
        "For operators: revenue and GPU utilisation per site.",
    ),
    LazyCommand(
        "budget",
        "suanli.cli.budgets:app",
        "Usage and bills",
        "Each tenant's monthly budget and this month's spend; past 80 % it is a warning.",
        group=True,
    ),
    LazyCommand(
        "tariff",
        "suanli.cli.usage:tariff_app",
        "Usage and bills",
        "Site tariffs: prices per GPU-hour, CPU-hour and GiB-hour, with time-of-use periods.",
        group=True,
    ),
    LazyCommand(
        "login",
        "suanli.cli.identities:login",
        "Identity",
        "Check an API token against the server and remember it for that server\n"
        "($SUANLI_HOME/credentials.json, mode 0600). Without --token it asks for it.",
    ),
    LazyCommand(
        "config",
        "suanli.cli.config:app",
        "Identity",
        "The CLI's default server and token ($SUANLI_HOME/config.json): show, set, unset.",
        group=True,
    ),
    LazyCommand(
        "logout",
        "suanli.cli.identities:logout",
        "Identity",
        "Forget the token saved for the server (it stays valid: 'suanli token revoke' ends it).",
    ),
    LazyCommand(
        "whoami",
        "suanli.cli.identities:whoami",
        "Identity",
        "Who the server takes you for: user, role, tenant or sites, and what this token may do.",
    ),
    LazyCommand(
        "token",
        "suanli.cli.identities:token_app",
        "Identity",
        "Your API tokens: create (shown once), list, revoke.",
        group=True,
    ),
    LazyCommand(
        "user",
        "suanli.cli.identities:user_app",
        "Identity",
        "Users and their roles (admin).",
        group=True,
    ),
    LazyCommand(
        "tenant",
        "suanli.cli.identities:tenant_app",
        "Identity",
        "Tenants: the customers of the network.",
        group=True,
    ),
    LazyCommand(
        "data",
        "suanli.cli.data:app",
        "Data",
        "Datasets: register, grade, check where they may go, copy them.",
        group=True,
    ),
    LazyCommand(
        "filing",
        "suanli.cli.filing:app",
        "Data",
        "Filings: standard contract, certification, security assessment.",
        group=True,
    ),
    LazyCommand(
        "eval",
        "suanli.cli.evals:app",
        "Data",
        "Evaluate models on benchmarks: run, list, show, compare.",
        group=True,
    ),
    LazyCommand(
        "ledger",
        "suanli.cli.ledger:app",
        "Data",
        "The append-only data ledger: export, verify, proofs, counters.",
        group=True,
    ),
)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="suanli")


__all__ = ["app", "main"]
