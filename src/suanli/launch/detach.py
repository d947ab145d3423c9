"""``suanli up --detach`` and ``suanli down``: the network started in the background, its
process id kept in ``<home>/up.pid`` (with its URL and log), so ``down`` stops exactly what
``up --detach`` started, from any shell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from suanli.core.errors import SuanliError

PID_FILE = "up.pid"
LOG_FILE = "up.log"
#: What the foreground ``up`` prints once the network answers (the detached parent waits for it).
READY_LINE = "suanli is up"


@dataclass(frozen=True)
class Detached:
    pid: int
    url: str
    log: str


def pid_path(home: Path) -> Path:
    return home / PID_FILE


def read(home: Path) -> Detached | None:
    """What ``up --detach`` recorded under ``home``, if it still runs (a stale file is removed)."""
    path = pid_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = Detached(int(data["pid"]), str(data["url"]), str(data["log"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _is_ours(found.pid):
        path.unlink(missing_ok=True)
        return None
    return found


def _is_ours(pid: int) -> bool:
    """The process runs and is a ``suanli up`` (a reused pid of another program is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one we started
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return b"suanli" in b" ".join(args) and b"up" in args
    return True


def start(home: Path, args: list[str], url: str, timeout_s: float = 120.0) -> Detached:
    """Run ``suanli up ARGS`` in a new session, its output in ``<home>/up.log``, and return once
    it says it is up (raises with the log's tail if it exits first or takes too long)."""
    running = read(home)
    if running is not None:
        raise SuanliError(
            f"a network started with --detach already runs from {home} (pid {running.pid}, "
            f"{running.url}); 'suanli down' stops it"
        )
    log = home / LOG_FILE
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suanli", "up", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )
    found = Detached(proc.pid, url, str(log))
    tmp = pid_path(home).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(found)) + "\n", encoding="utf-8")
    tmp.replace(pid_path(home))
    deadline = time.monotonic() + timeout_s
    while READY_LINE not in log.read_text(encoding="utf-8", errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.terminate()
            pid_path(home).unlink(missing_ok=True)
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise SuanliError(f"the network did not come up (log: {log}):\n{tail}")
        time.sleep(0.2)
    return found


def stop(home: Path, timeout_s: float = 60.0) -> Detached | None:
    """Stop what ``up --detach`` started from ``home`` (SIGTERM: it stops its jobs, agents and
    server, as Ctrl-C does) and wait for it; None when nothing runs."""
    running = read(home)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(running.pid):
        if time.monotonic() > deadline:
            raise SuanliError(
                f"pid {running.pid} is still stopping after {timeout_s:.0f} s; run 'suanli down' again, "
                f"or look at {running.log}"
            )
        time.sleep(0.1)
    pid_path(home).unlink(missing_ok=True)
    return running


def _alive(pid: int) -> bool:
    try:  # our own child (a test that started it): reap it, or it stays a zombie
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = 0
    if done == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return ") Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
