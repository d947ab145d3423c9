"""What an attempt needs on disk before it starts: its workdir archive and its datasets.

Both are fetched over the agent protocol with the site's token, written to a ``.part`` file
and renamed into place, so a half-written download is never mistaken for a whole one.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

from suanli.core.protocol import AttemptAssignment
from suanli.datachain.site_store import SiteStore

log = logging.getLogger("suanli.agent")

_DIGEST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,62}$")


class Downloads(Protocol):
    """The downloads of ``suanli.sdk.Client`` an agent uses for inputs."""

    def download_workdir(self, digest: str, dest: IO[bytes]) -> int: ...

    def download_dataset(self, name: str, attempt_id: int, dest: IO[bytes]) -> int: ...

    def record_dataset_read(self, name: str, attempt_id: int, root: str) -> dict[str, Any]: ...


def dataset_env(name: str) -> str:
    """``SUANLI_DATASET_<NAME>``: the name upper-cased, anything but letters and digits as '_'."""
    return "SUANLI_DATASET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def download_to(path: Path, fetch: Callable[[IO[bytes]], int]) -> int:
    """Write what ``fetch`` streams into ``path``, atomically; returns the bytes written."""
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with part.open("wb") as fh:
            size = fetch(fh)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return size


def fetch_archive(client: Downloads, work_dir: Path, digest: str) -> Path:
    """``archives/<digest>.tar.gz``, downloaded once per digest (attempts of a job share it)."""
    if not _DIGEST.match(digest):
        raise ValueError(f"the server sent an unusable workdir digest {digest!r}")
    path = work_dir / "archives" / f"{digest}.tar.gz"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    size = download_to(path, lambda fh: client.download_workdir(digest, fh))
    log.info("fetched workdir %s (%d bytes)", digest, size)
    return path


def _dataset_into(client: Downloads, name: str, attempt_id: int, dest: IO[bytes]) -> int:
    return client.download_dataset(name, attempt_id, dest)


def _from_store(store: SiteStore, name: str, dest: IO[bytes]) -> int:
    size = 0
    for chunk in store.read_plain(name):  # each chunk checked against the manifest
        dest.write(chunk)
        size += len(chunk)
    return size


def fetch_datasets(
    client: Downloads, work_dir: Path, assignment: AttemptAssignment, store: SiteStore | None = None
) -> AttemptAssignment:
    """Put each dataset the job reads at ``datasets/<job>/<name>``, read-only, and tell the job
    where: ``SUANLI_DATASET_<NAME>`` (the file) and ``SUANLI_DATASETS_DIR``.

    A dataset this site's own ``store`` holds (registered at the site) is read from it, after the
    server has put the read on the ledger (and checked the copy is the registered one); any other
    is fetched from the server's copy for this site."""
    root = work_dir / "datasets" / assignment.job_id
    root.mkdir(parents=True, exist_ok=True)
    envs = dict(assignment.envs)
    for item in assignment.datasets:
        if not _DATASET.match(item.name):
            raise ValueError(f"the server sent an unusable dataset name {item.name!r}")
        path = root / item.name
        if store is not None and store.has(item.name):
            client.record_dataset_read(item.name, assignment.attempt_id, store.manifest_of(item.name).root)
            size = download_to(path, functools.partial(_from_store, store, item.name))
            where = "this site's store"
        else:
            size = download_to(path, functools.partial(_dataset_into, client, item.name, assignment.attempt_id))
            where = "the server"
        path.chmod(0o444)  # the job reads its data; it does not change it
        log.info("dataset %s for attempt %s from %s (%d bytes)", item.name, assignment.attempt_id, where, size)
        envs[dataset_env(item.name)] = str(path)
    envs["SUANLI_DATASETS_DIR"] = str(root)
    return assignment.model_copy(update={"envs": envs})
