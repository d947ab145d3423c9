"""Packing a job's working directory: what goes in, what is left out, how big it may be."""

from __future__ import annotations

import fnmatch
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from suanli.core.errors import SuanliError
from suanli.sdk.errors import WorkdirTooLarge

ProgressFn = Callable[[int, int], None]
DEFAULT_MAX_WORKDIR_MB = 100
ALWAYS_EXCLUDED = (
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "node_modules",
)


def max_workdir_bytes() -> int:
    return int(float(os.environ.get("SUANLI_MAX_WORKDIR_MB", DEFAULT_MAX_WORKDIR_MB)) * 1024 * 1024)


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; exact enough to state a limit a user set."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _ignore_patterns(root: Path) -> list[str]:
    patterns = list(ALWAYS_EXCLUDED)
    ignore = root / ".suanliignore"
    if ignore.is_file():
        for line in ignore.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                patterns.append(line.rstrip("/"))
    return patterns


def workdir_files(root: Path) -> list[tuple[Path, str]]:
    """Regular files under ``root`` (relative names), skipping ignored ones and links."""
    patterns = _ignore_patterns(root)
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not any(fnmatch.fnmatch(d, p) or fnmatch.fnmatch(str(rel_dir / d), p) for p in patterns)
            and not (Path(dirpath) / d).is_symlink()
        )
        for name in sorted(filenames):
            rel = str(rel_dir / name) if str(rel_dir) != "." else name
            if any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns):
                continue
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            out.append((path, rel))
    return out


def pack_workdir(root: Path, limit: int | None = None) -> IO[bytes]:
    """A gzip'd tar of ``root`` in a temporary file, refused with a clear message if too large."""
    root = root.resolve()
    if not root.is_dir():
        raise SuanliError(f"workdir {root} is not a directory")
    limit = max_workdir_bytes() if limit is None else limit
    files = workdir_files(root)
    total = sum(p.stat().st_size for p, _ in files)
    if total > limit:
        biggest = sorted(files, key=lambda f: -f[0].stat().st_size)[:3]
        names = ", ".join(f"{rel} ({format_bytes(p.stat().st_size)})" for p, rel in biggest)
        raise WorkdirTooLarge(
            f"workdir {root} holds {format_bytes(total)}, over the {format_bytes(limit)} limit. "
            f"Largest files: {names}. List what to leave out in {root / '.suanliignore'}, "
            "or raise SUANLI_MAX_WORKDIR_MB."
        )
    buf = tempfile.TemporaryFile()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for path, rel in files:
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    buf.seek(0)
    return buf


class ProgressReader:
    def __init__(self, fh: IO[bytes], total: int, progress: ProgressFn | None, chunk: int = 256 * 1024) -> None:
        self.fh, self.total, self.progress, self.chunk, self.done = fh, total, progress, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        while data := self.fh.read(self.chunk):
            self.done += len(data)
            if self.progress:
                self.progress(self.done, self.total)
            yield data
