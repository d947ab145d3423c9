"""The per-rank supervisor: a tiny process between the agent and each rank's ``bash -c``.

It exists for two faults the agent cannot handle from inside itself:

- **Agent restart.** The job's processes survive a ``kill -9`` of the agent (they are in their
  own session), but only a parent can learn an exit status. The supervisor is the parent: it
  writes the rank's exit status to ``--exit`` (atomically, JSON), so a restarted agent that
  adopts the attempt still learns how it ended.
- **Agent gone for good.** The agent touches a liveness file (``--alive``) every second; its
  content is the staleness, in seconds, after which the attempt must stop (0 = never). When the
  file is older than that, the server has declared the attempt lost and may run the job
  elsewhere, so the supervisor stops the whole process group (SIGTERM, SIGKILL after
  ``--grace``): an orphaned attempt never runs beside its replacement.

It is the session leader (the agent starts it with ``start_new_session``); the rank runs in its
process group, so the agent's ``killpg`` reaches both. It survives SIGTERM/SIGINT/SIGHUP (the
rank decides how to react) and mirrors the rank's end in its own: the same exit code, or death
by the same signal, so ``Popen.returncode`` of the supervisor is what it would have been for
the shell itself. Standard library only, started as a script: it must start fast and must not
import the agent.

With ``--uid``/``--gid``/``--groups`` (the local backend's ``run_as``; the supervisor then runs
as root), the rank is started as that user: the supervisor forks, sets the supplementary
groups, the gid and the uid, and only then executes the command. The supervisor itself stays
root, out of the job's reach: the job cannot kill it or forge the exit status it records.

Usage: ``python supervisor.py --exit FILE [--alive FILE] [--log FILE] [--grace S]
[--uid UID --gid GID --groups G,...] -- CMD ...``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import time

#: How often the liveness file is looked at, at most (seconds).
CHECK_S = 0.5


def _limit(alive: str) -> float:
    try:
        with open(alive, encoding="utf-8") as fh:
            return float(fh.read().strip() or "0")
    except (OSError, ValueError):
        return 0.0


def _stale_for(alive: str, now: float) -> float | None:
    """Seconds past the allowed staleness (>0: stale), or None when there is no verdict."""
    limit = _limit(alive)
    try:
        mtime = os.stat(alive).st_mtime
    except OSError:
        return None  # no file: no verdict
    if limit <= 0:
        return None
    return (now - mtime) - limit


def _group_members(pgid: int) -> list[int]:
    """Other processes of this process group (Linux /proc; elsewhere none are found)."""
    found: list[int] = []
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            found.append(int(name))
    return found


def _leader() -> bool:
    """Whether this process leads its group: only then is the group the attempt's alone."""
    return os.getpgid(0) == os.getpid()


def _kill_others(sig: int) -> None:
    if not _leader():
        return
    for pid in _group_members(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _note(log_path: str | None, text: str) -> None:
    if log_path:
        with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"[suanli] {text}\n")


def _write_exit(path: str, code: int, orphaned: bool) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"exit_code": code, "orphaned": orphaned}, fh)
    os.replace(tmp, path)


def _wait(pid: int, pidfd: int | None, timeout: float) -> int | None:
    """The child's wait status once it exits within ``timeout``, else None."""
    if pidfd is not None:
        with contextlib.suppress(InterruptedError):
            select.select([pidfd], [], [], timeout)
        done, status = os.waitpid(pid, os.WNOHANG)
        return status if done else None
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _spawn(command: list[str], uid: int | None, gid: int | None, groups: list[int]) -> int:
    """Start the rank; as ``uid``/``gid``/``groups`` when given (privileges dropped before exec)."""
    env = dict(os.environ)
    if uid is None:
        return os.posix_spawn(command[0], command, env, setsigdef=(signal.SIGPIPE,))
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, then become the rank
        try:
            os.setgroups(groups)
            os.setgid(gid if gid is not None else uid)
            os.setuid(uid)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execve(command[0], command, env)  # noqa: S606 - the rank, as posix_spawn starts it
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"[suanli] cannot start the job as uid {uid}: {exc}\n".encode())
        finally:
            os._exit(127)
    return pid


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="suanli-supervisor")
    parser.add_argument("--exit", required=True, dest="exit_file")
    parser.add_argument("--alive")
    parser.add_argument("--log")
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--gid", type=int)
    parser.add_argument("--groups", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _s, _f: None)  # the rank decides; a handler resets at exec
    groups = [int(g) for g in args.groups.split(",") if g]
    pid = _spawn(command, args.uid, args.gid, groups)
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    orphaned, kill_at = False, None
    while True:
        status = _wait(pid, pidfd, CHECK_S)
        if status is not None:
            break
        now = time.time()
        if args.alive and not orphaned:
            late = _stale_for(args.alive, now)
            if late is not None and late > 0:
                orphaned = True
                kill_at = time.monotonic() + min(args.grace, max(0.5, _limit(args.alive) / 8))
                _note(args.log, "the site agent is gone past its lease: stopping this attempt so it never runs twice")
                if _leader():
                    with contextlib.suppress(OSError):
                        os.killpg(0, signal.SIGTERM)
                else:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)
        if kill_at is not None and time.monotonic() >= kill_at:
            _kill_others(signal.SIGKILL)
            kill_at = None
    code = os.waitstatus_to_exitcode(status)
    _write_exit(args.exit_file, code, orphaned)
    _kill_others(signal.SIGKILL)  # what the rank left behind in its group
    if code < 0:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
