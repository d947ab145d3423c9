"""State only its owner may read: ``$SUANLI_HOME`` and an agent's work dir 0700, the SQLite
database 0600 (docs/operators.md, "Files at rest").

One small module at the top of the package, because the server, the store, the agent and
``suanli up`` all make such places, and none of them may import another (the layer contracts
in pyproject.toml); it imports only ``core``.

A place that exists already with access for the group or others (a home made by hand, or by a
version before this) is narrowed, with a warning; only when that fails (another user owns it)
does starting refuse, saying what to run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from suanli.core.errors import SuanliError

log = logging.getLogger("suanli")

#: Permission bits for the group and others.
_SHARED = 0o077


class OpenToOthers(SuanliError):
    """A private place other users can reach and this process cannot narrow."""


def private_dir(path: Path, *, traverse_ok: bool = False) -> Path:
    """Make ``path`` (and missing parents) a directory only its owner can use (0700), or narrow
    an existing one to that. ``traverse_ok``: others may keep the right to pass through (``x``,
    never to list or read): an agent's work dir whose jobs run as other OS users needs it
    (the local backend's ``run_as``). Returns ``path``."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _narrow(path, "directory", 0o700, _SHARED & ~0o011 if traverse_ok else _SHARED)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty, mode 0600, if it is missing; narrow it to 0600 if others may read it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    _narrow(path, "file", 0o600, _SHARED)
    return path


def _narrow(path: Path, what: str, wanted: int, shared: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if not mode & shared:
        return
    narrowed = mode & ~shared
    try:
        os.chmod(path, narrowed)
    except OSError as exc:
        raise OpenToOthers(
            f"the {what} {path} is open to other users (mode {mode:04o}) and this user cannot change "
            f"that ({exc.strerror}); as its owner run 'chmod {wanted:o} {path}', or choose another place"
        ) from None
    log.warning(
        "the %s %s was open to other users (mode %04o); it is now %04o (only its owner may use it)",
        what,
        path,
        mode,
        narrowed,
    )


def write_once(path: Path, make: Callable[[], bytes]) -> bytes:
    """``path``'s bytes, writing ``make()`` there (mode 0600) first if it does not exist. Safe when
    several threads or processes ask at once: the data is written whole to a temporary file and
    linked into place, so the first writer wins, everyone reads its bytes, and nobody reads half
    of them."""
    if path.exists():
        return path.read_bytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(make())
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another writer won: its bytes are used
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes()
