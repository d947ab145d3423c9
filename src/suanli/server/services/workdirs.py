"""Workdir archives: uploaded once, stored by SHA-256, checked for hostile paths."""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from suanli.server.services.errors import NotFound, TooLarge, Unprocessable
from suanli.store.models import Blob

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def blob_path(blob_dir: Path, digest: str) -> Path:
    if not _DIGEST.match(digest):
        raise NotFound(f"no workdir {digest}")
    return blob_dir / f"{digest}.tar.gz"


class Receiver:
    """Writes an upload to a temporary file while hashing it and enforcing the size limit."""

    def __init__(self, blob_dir: Path, limit: int) -> None:
        self.blob_dir, self.limit = blob_dir, limit
        self.size = 0
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=blob_dir, prefix=".upload-")
        self.path = Path(name)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.abort()
            raise TooLarge(f"the workdir archive is over the {self.limit / 2**20:.0f} MiB limit")
        self._hash.update(data)
        self._fh.write(data)

    def abort(self) -> None:
        self._fh.close()
        self.path.unlink(missing_ok=True)

    def finish(self) -> tuple[str, int, Path]:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        digest = self._hash.hexdigest()
        try:
            check_archive(self.path)
        except Unprocessable:
            self.path.unlink(missing_ok=True)
            raise
        final = blob_path(self.blob_dir, digest)
        os.replace(self.path, final)
        return digest, self.size, final


def check_archive(path: Path) -> None:
    """Refuse archives with absolute paths, '..', links or device files."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                name = member.name
                if name.startswith("/") or ".." in Path(name).parts:
                    raise Unprocessable(f"the workdir archive has an unsafe path: {name}")
                if not (member.isfile() or member.isdir()):
                    raise Unprocessable(f"the workdir archive may hold only files and folders; {name} is not one")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Unprocessable(f"the workdir is not a gzip'd tar archive ({exc})") from None


def record(session: Session, digest: str, size: int, now: datetime) -> None:
    if session.get(Blob, digest) is None:
        session.add(Blob(digest=digest, size=size, created_at=now))
