"""``suanli data register`` at a site: ``--upload`` (a file here, sent sealed through the front
desk to the site's agent) and ``--local-path`` (a file on the site's disk, put into its agent's
store; run at the site). Either way the bytes rest only at the site."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from suanli.cli.context import err_console
from suanli.core.datasets import Classification
from suanli.datachain.manifest import MiB, build_manifest, check_chunk_size
from suanli.datachain.site_store import agent_store
from suanli.sdk import Client


def register_local(
    client: Client,
    name: str,
    owner: str,
    site: str,
    path: Path,
    home: Path,
    chunk_mib: int,
    classification: dict[str, Any] | None,
    derived_from: list[str],
) -> dict[str, Any]:
    """Put ``path`` into the agent's store under ``home`` (sealed at rest when the grade asks),
    then register it with the site's token; taken out again if the registration is refused."""
    token_file = home / "site.token"
    if not path.is_file():
        raise typer.BadParameter(f"'{path}' is not a file")
    if not token_file.is_file():
        raise typer.BadParameter(f"'{home}' is not a site agent's home (no site.token there)")
    try:
        manifest = build_manifest(path, check_chunk_size(chunk_mib * MiB))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    at_rest = Classification.model_validate(classification).sealed_at_rest if classification else True
    store = agent_store(home)
    fresh = not store.has(name)
    if not fresh and store.manifest_of(name).root != manifest.root:
        raise typer.BadParameter(f"the store at {home} already holds different data under '{name}'")
    if fresh:
        store.adopt(name, path, manifest, at_rest=at_rest)
    try:
        return client.register_local_dataset(
            token_file.read_text(encoding="utf-8").strip(),
            name=name,
            owner=owner,
            site=site,
            manifest=manifest.model_dump(),
            classification=classification,
            derived_from=derived_from,
            sealed_at_rest=store.data_path(name).name == "data.sealed",
        )
    except BaseException:
        if fresh:
            shutil.rmtree(store.dataset_dir(name), ignore_errors=True)
        raise


def upload(
    client: Client,
    name: str,
    owner: str,
    site: str,
    path: Path,
    chunk_mib: int,
    classification: dict[str, Any] | None,
    derived_from: list[str],
) -> dict[str, Any]:
    """Hash the file here (the manifest), then send it chunk by chunk with a progress bar."""
    if not path.is_file():
        raise typer.BadParameter(f"'{path}' is not a file")
    try:
        manifest = build_manifest(path, check_chunk_size(chunk_mib * MiB))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    columns = (*Progress.get_default_columns()[:2], BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with path.open("rb") as f, Progress(*columns, console=err_console(), transient=True) as bar:
        task = bar.add_task(f"{name} → {site}", total=manifest.size)

        def read_chunk(i: int) -> bytes:
            f.seek(i * manifest.chunk_size)
            return f.read(manifest.chunk_len(i))

        return client.upload_dataset(
            name=name,
            owner=owner,
            site=site,
            manifest=manifest.model_dump(),
            read_chunk=read_chunk,
            classification=classification,
            derived_from=derived_from,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
