"""``suanli download JOB``: a finished job's output folder, unpacked where you ask.

A job's output is the derived dataset its ``output: {dataset: NAME}`` names (docs/datachain.md,
"Job outputs"): an archive kept at the site where the job ran. Downloading it is a dataset
download like any other (the rules decide it for your zone and it goes on the ledger); this
command finds the dataset from the job, fetches the archive and unpacks it.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from suanli.cli.context import JsonOption, ServerOption, TokenOption, error, open_client, say
from suanli.cli.jobs import JobArg


def download(
    ctx: typer.Context,
    job_id: JobArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="The folder to unpack into (made if missing).")
    ] = Path("."),
    json_out: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Fetch a succeeded job's output folder (its output: dataset) and unpack it into DIR."""
    with open_client(ctx, server, token) as client:
        job = client.job(job_id)
        spec = job.spec or {}
        name = (spec.get("output") or {}).get("dataset") if isinstance(spec, dict) else None
        if not name:
            error(f"job {job.id} ({job.name}) has no output: its spec names no output: {{dataset: NAME}}")
            raise typer.Exit(1)
        if job.state.value != "SUCCEEDED":
            error(
                f"job {job.id} ({job.name}) is {job.state.value}: its output becomes dataset {name} once it "
                f"succeeds (suanli status {job.id})"
            )
            raise typer.Exit(1)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            size = client.download_data(name, archive)
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:gz") as tar:
                members = tar.getmembers()
                # The "data" filter refuses links out of the folder, absolute paths and devices.
                tar.extractall(out, filter="data")
    files = sorted(m.name for m in members if m.isfile())
    if json_out:
        typer.echo(json.dumps({"job": job.id, "dataset": name, "path": str(out), "bytes": size, "files": files}))
        return
    say(f"job {job.id}: dataset {name} ({size:,} bytes) unpacked into {out}: {len(files)} file(s)")
