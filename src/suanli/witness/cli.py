"""``suanli witness init|run|status``: the witness's commands (docs/operators.md, "Running a witness")."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from suanli.core.errors import SuanliError
from suanli.core.signednote import Verifier
from suanli.sdk import Client, default_server
from suanli.witness.run import poll_once, run_forever
from suanli.witness.state import Refused, Witness
from suanli.witness.state import init as make

app = typer.Typer(
    name="witness",
    help="Cosign the ledger's checkpoints from outside the operator: init, run, status.",
    no_args_is_help=True,
)

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="The witness's own folder: key and state (default: $SUANLI_HOME/witness)."),
]


def _home(home: Path | None) -> Path:
    return home or Path(os.environ.get("SUANLI_HOME", str(Path.home() / ".suanli"))).expanduser() / "witness"


@app.command()
def init(
    name: Annotated[
        str, typer.Option("--name", help="The witness's key name, a schema-less URL, e.g. cac.tianjin.gov.cn/w1.")
    ],
    home: HomeOpt = None,
) -> None:
    """Make the witness's Ed25519 key and print its vkey line for the network file's ``witnesses:``."""
    try:
        vkey = make(_home(home), name)
    except ValueError as exc:
        raise SuanliError(str(exc)) from None
    typer.echo(vkey.vkey())


@app.command()
def run(
    log_key: Annotated[
        str, typer.Option("--log-key", help="The ledger's vkey (suanli ledger verify prints it; pin it).")
    ],
    home: HomeOpt = None,
    server: Annotated[str | None, typer.Option("--server", help="The front desk (default: $SUANLI_SERVER).")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="A token to read the ledger (default: $SUANLI_TOKEN).")
    ] = None,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between rounds.")] = 10.0,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit (1 when it refused).")] = False,
) -> None:
    """Poll the front desk; cosign each new checkpoint that extends the last one cosigned."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        key = Verifier.parse(log_key)
    except ValueError as exc:
        raise SuanliError(str(exc)) from None
    witness = Witness(_home(home))
    url = server or default_server()
    with Client(url, token=token or os.environ.get("SUANLI_TOKEN")) as client:
        if once:
            try:
                typer.echo(poll_once(client, witness, key))
            except Refused as exc:
                typer.echo(f"WITNESS REFUSES to cosign: {exc}", err=True)
                raise typer.Exit(1) from None
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        typer.echo(f"witness {witness.name} → {url} every {interval:g}s (state in {witness.home}); Ctrl-C stops it")
        sys.stdout.flush()
        run_forever(client, witness, key, interval, stop)


@app.command()
def status(
    home: HomeOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")] = False,
) -> None:
    """What this witness cosigned last, and its last refusal (exit 1 while it refuses)."""
    w = Witness(_home(home))
    doc = {"name": w.name, "vkey": w.vkey.vkey(), **w.seen.__dict__}
    if json_out:
        typer.echo(json.dumps(doc))
    else:
        typer.echo(f"witness {w.name}: {w.vkey.vkey()}")
        typer.echo(f"  cosigned size {w.seen.size} of {w.seen.origin or '(no log yet)'} at {w.seen.cosigned_at}")
        if w.seen.refused:
            typer.echo(f"  REFUSED: {w.seen.refused}")
    if w.seen.refused:
        raise typer.Exit(1)
