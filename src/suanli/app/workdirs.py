"""Workdir archives: uploaded once, stored by SHA-256, checked for hostile paths."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import IO

import anyio
from sqlalchemy.orm import Session

from suanli.app.access import require
from suanli.app.errors import NotFound, TooLarge, Unprocessable
from suanli.core.identity import Identity, Scope
from suanli.store.models import Blob, BlobTenant

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
#: Most members (files and folders) a workdir archive may hold.
MAX_MEMBERS = 100_000
#: Default bound on a workdir's unpacked size (``Settings.max_workdir_unpacked_bytes``).
MAX_UNPACKED_BYTES = 2**30
#: Largest single header read (a pax or GNU long-name record); real ones are a few hundred bytes.
_MAX_HEADER_BYTES = 2**20
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def checked_digest(digest: str) -> str:
    """``digest`` if it is a SHA-256 in hex; else NotFound (no archive can have that name)."""
    if not _DIGEST.match(digest):
        raise NotFound(f"no workdir {digest}")
    return digest


def blob_path(blob_dir: Path, digest: str) -> Path:
    return blob_dir / f"{checked_digest(digest)}.tar.gz"


class Receiver:
    """Writes an upload to a temporary file while hashing it and enforcing the size limit."""

    def __init__(
        self, blob_dir: Path, limit: int, unpacked_limit: int = MAX_UNPACKED_BYTES, what: str = "workdir"
    ) -> None:
        self.blob_dir, self.limit, self.unpacked_limit, self.what = blob_dir, limit, unpacked_limit, what
        self.size = 0
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=blob_dir, prefix=".upload-")
        self.path = Path(name)
        self._fh: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.abort()
            raise TooLarge(f"the {self.what} archive is over the {self.limit / 2**20:.0f} MiB limit")
        self._hash.update(data)
        self._fh.write(data)

    def abort(self) -> None:
        """Remove the partial file, even when closing it fails (a full disk fails the flush)."""
        with contextlib.suppress(OSError):
            self._fh.close()
        self.path.unlink(missing_ok=True)

    def finish(self) -> tuple[str, int, Path]:
        """(digest, size, the checked spooled file), which the caller puts in the blob store
        (``app/blobstore.py``) or reads and removes (a job's output)."""
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except BaseException:  # ENOSPC/EDQUOT above all: nothing half-written stays behind
            self.abort()
            raise
        digest = self._hash.hexdigest()
        try:
            check_archive(self.path, self.unpacked_limit, what=self.what)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        return digest, self.size, self.path


async def receive(
    declared: str | None, body: AsyncIterator[bytes], blob_dir: Path, limit: int, unpacked_limit: int, what: str
) -> tuple[str, int, Path]:
    """Stream an upload's ``body`` to a spooled file in ``blob_dir`` and check it as an archive:
    (digest, size, path); the caller keeps it (``BlobStore.put``) or removes it.
    Refused (413) by its ``declared`` length (the Content-Length header) before a byte is read,
    or as soon as it passes ``limit``."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the {what} archive is {int(declared) / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB limit")
    receiver = Receiver(blob_dir, limit, unpacked_limit, what)
    try:
        async for data in body:
            receiver.write(data)
    except BaseException:
        receiver.abort()
        raise
    return await anyio.to_thread.run_sync(receiver.finish)


def _show(name: str) -> str:
    return name if name.isprintable() else repr(name)


class _TooMuch(Exception):
    """The archive unpacks to more than the limit."""


class _Inflated:
    """The decompressed tar stream, refusing to read or skip past ``limit`` bytes: a small gzip
    of zeros may unpack to terabytes, and tarfile would otherwise read a huge pax header whole."""

    def __init__(self, raw: gzip.GzipFile, limit: int, what: str = "workdir") -> None:
        self.raw, self.limit, self.what = raw, limit, what

    def write(self, data: bytes) -> int:
        raise OSError("the workdir check only reads")

    def close(self) -> None:
        """The gzip stream is closed by its owner."""

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET:
            raise OSError("the workdir check only seeks forward from the start")
        if offset > self.limit:
            raise _TooMuch
        return self.raw.seek(offset)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > _MAX_HEADER_BYTES:
            raise Unprocessable(
                f"the {self.what} archive has a tar header larger than 1 MiB; it is not a plain archive"
            )
        if self.raw.tell() + size > self.limit:
            data = self.raw.read(max(0, self.limit - self.raw.tell()) + 1)
            if self.raw.tell() > self.limit:
                raise _TooMuch
            return data
        return self.raw.read(size)


def _member_problem(member: tarfile.TarInfo, what: str = "workdir") -> str | None:
    """Why ``member`` may not be in a workdir (or checkpoint: ``what``) archive, or None."""
    name, shown = member.name, _show(member.name)
    it = f"the {what} archive"
    if "\x00" in name or "\x00" in member.linkname:
        return f"{it} has an unsafe path, one with a NUL character: {shown}"
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        return f"{it} has an unsafe path, an absolute one: {shown}"
    if ".." in parts:
        return f"{it} has an unsafe path, one that climbs out of its folder ('..'): {shown}"
    if member.issym():
        return f"{it} may not hold links; {shown} is a symbolic link to {_show(member.linkname)}"
    if member.islnk():
        return f"{it} may not hold links; {shown} is a hard link to {_show(member.linkname)}"
    if member.ischr() or member.isblk():
        return f"{it} may not hold device files; {shown} is one"
    if member.isfifo():
        return f"{it} may not hold named pipes (FIFOs); {shown} is one"
    if member.sparse is not None:
        return f"{it} may not hold sparse files; {shown} is one"
    if not (member.isfile() or member.isdir()):
        return f"{it} may hold only files and folders; {shown} is neither"
    return None


def check_archive(
    path: Path, max_unpacked: int = MAX_UNPACKED_BYTES, max_members: int = MAX_MEMBERS, what: str = "workdir"
) -> None:
    """Refuse archives that are not a plain tree of files and folders: absolute or Windows paths,
    '..', NUL in names, links, devices, FIFOs, sparse files; more than ``max_members`` members;
    more than ``max_unpacked`` bytes once unpacked (checked as it reads, so a bomb stops early)."""
    count = total = 0
    last = ""
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=_Inflated(raw, max_unpacked, what), mode="r:") as tar:
            while (member := tar.next()) is not None:
                tar.members.clear()  # type: ignore[attr-defined]  # keep only the current member: flat memory
                count += 1
                last = member.name
                if count > max_members:
                    raise Unprocessable(
                        f"the {what} archive has more than {max_members:,} files and folders "
                        f"(at {_show(member.name)}); pack fewer"
                    )
                problem = _member_problem(member, what)
                if problem:
                    raise Unprocessable(problem)
                total += member.size
                if total > max_unpacked:
                    raise _TooMuch
    except _TooMuch:
        raise Unprocessable(
            f"the {what} archive unpacks to more than {max_unpacked / 2**20:g} MiB "
            f"(at {_show(last) or 'its first member'}); leave data out of the {what}"
        ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise Unprocessable(f"the {what} is not a gzip'd tar archive ({exc})") from None


def record(session: Session, digest: str, size: int, now: datetime, who: Identity) -> None:
    """Keep the upload, and that the uploader's tenant may use it (a job may use only workdirs
    its own tenant uploaded: knowing a digest is not enough)."""
    if session.get(Blob, digest) is None:
        session.add(Blob(digest=digest, size=size, created_at=now))
    if who.tenant and session.get(BlobTenant, (digest, who.tenant)) is None:
        session.add(BlobTenant(digest=digest, tenant=who.tenant))


def may_upload(who: Identity) -> None:
    require(who, Scope.JOBS_WRITE)
