"""The `suanli` program: the CLI's commands plus the ones that start the network."""

from __future__ import annotations

from suanli.cli import app
from suanli.cli.lazy import LazyCommand, LazyGroup

# The commands that start processes (FastAPI, SQLAlchemy, uvicorn behind them) are imported
# only when one of them runs.
_RUN = "Run the network"
LazyGroup.register(
    LazyCommand(
        "up",
        "suanli.launch.commands:up",
        _RUN,
        "The server on 127.0.0.1 and one agent process per site (home: agents/<site>). Ctrl-C stops all it started.",
    ),
    LazyCommand(
        "down",
        "suanli.launch.commands:down",
        _RUN,
        "Stop the network 'suanli up --detach' started from this home: jobs, agents, server.",
    ),
    LazyCommand(
        "server",
        "suanli.launch.commands:server",
        _RUN,
        "Run the control plane (API, scheduler). State: SQLite under --home, or $SUANLI_DATABASE_URL.",
    ),
    LazyCommand(
        "agent",
        "suanli.launch.commands:agent",
        _RUN,
        "Run a site agent: register with the server, take attempts, run them on the site's engine.",
    ),
    LazyCommand(
        "witness",
        "suanli.witness.cli:app",
        _RUN,
        "Cosign the ledger's checkpoints from outside the operator: init, run, status.",
        group=True,
    ),
    LazyCommand(
        "simulate",
        "suanli.launch.simulate:simulate",
        "Plan",
        "Replay a real trace on a network with the same scheduler the server runs, and report.",
    ),
)


def main() -> None:
    app(prog_name="suanli")


if __name__ == "__main__":
    main()
