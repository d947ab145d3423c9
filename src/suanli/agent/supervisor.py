"""The per-rank supervisor: a tiny process between the agent and each rank's ``bash -c``.

It exists for two faults the agent cannot handle from inside itself:

- **Agent restart.** The job's processes survive a ``kill -9`` of the agent (they are in their
  own session), but only a parent can learn an exit status. The supervisor is the parent: it
  writes the rank's exit status to ``--exit`` (atomically, JSON), so a restarted agent that
  adopts the attempt still learns how it ended.
- **Agent gone for good.** The agent touches a liveness file (``--alive``) every second; it
  holds the orphan timeout (0 = never), the agent's pid and id, and when the server last
  renewed the agent's leases. The supervisor holds the lease fence (``_Watchdog``, see
  docs/faults.md): it freezes the rank (SIGSTOP) the moment the agent process dies, thaws it
  when a restarted agent adopts it, and kills it (a frozen rank at once, a running one with
  SIGTERM then SIGKILL after ``--grace``) once the file or the last renewal is older than the
  timeout, before the server may requeue the attempt: an orphan never runs beside its
  replacement, nor finishes with no one to report it.

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

Output and secrets: the rank's stdout and stderr go to a pipe the supervisor reads; it masks
the job's secret values (``***``) and only then appends to its own stdout, the rank's log file,
so no secret is ever written to disk in clear. The values come over an inherited descriptor
(``--secrets-fd``: a pipe the agent writes ``{"secrets": [...], "env": {...}}`` to as JSON and
closes), never in argv or a file; a value split across two writes is masked too (a possible
start of one is held back).

The job's environment comes over the same pipe, not in the supervisor's own environment: the
supervisor, and a sandbox's programs that run as root before the drop to the job's user
(bubblewrap, setpriv), start with the agent's clean environment, so a job's ``LD_PRELOAD``,
``GCONV_PATH`` or the like never reaches a process with privileges. Unwrapped, the rank is
started with the job's environment after the drop. ``--env-loader``: the sandbox's command ends
in a loader that runs as the job's user and reads the environment, ``NAME=value`` entries
ended by NUL, from descriptor ``ENV_FD`` (``sandbox.ENV_LOADER``), which the supervisor feeds.
A container's ``podman`` gets the environment the agent made for it (nothing of the job's
under its own name: ``container.PODMAN_ENV``).

Limits: ``--cgroup DIR`` (repeatable) puts the supervisor, and so the rank, into those cgroups
before the rank starts; when the rank ends, the kernel's OOM kills counted there go into the
exit file (``oom_kills``), so the agent can say the job exceeded its memory. ``--rlimit-as N``
caps the rank's address space where no cgroup can be used.

Containers: with ``--container NAME`` (the rank is a ``podman run --name NAME``), the
supervisor removes that container (``--podman`` PATH ``rm --force``) once the rank has ended, so
an attempt stopped as an orphan, whose ``podman run`` was killed, leaves no container running.

Usage: ``python supervisor.py --exit FILE [--alive FILE] [--log FILE] [--grace S]
[--uid UID --gid GID --groups G,...] [--secrets-fd FD] [--cgroup DIR]... [--rlimit-as BYTES] [--wrapped]
[--env-loader]
[--container NAME --podman PATH] -- CMD ...``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import select
import signal
import sys
import threading
import time

#: How often the liveness file is looked at, at most (seconds). The agent's death itself is
#: seen at once (a pidfd), not at this pace.
CHECK_S = 0.25


def _liveness(alive: str) -> tuple[float, float | None, dict[str, str]]:
    """``(orphan timeout, mtime, fields)`` of the liveness file (``suanli.agent.recovery``): the
    first line is the timeout (0: never), then ``pid N``, ``agent ID`` (that agent process) and
    ``renewed T`` (when the server last renewed its leases, wall clock). mtime None: no file."""
    try:
        with open(alive, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        mtime = os.stat(alive).st_mtime
    except OSError:
        return 0.0, None, {}
    try:
        limit = float(lines[0].strip() or "0") if lines else 0.0
    except ValueError:
        limit = 0.0
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    return limit, mtime, fields


def _overdue(limit: float, mtime: float | None, fields: dict[str, str], now: float) -> str | None:
    """Why the attempt no longer holds its lease, in words; None while it does."""
    if limit <= 0 or mtime is None:
        return None  # no file, or the watchdog is off: no verdict
    if now - mtime > limit:
        return "the site agent is gone past its lease"
    try:
        renewed = float(fields.get("renewed", ""))
    except ValueError:
        return None
    if now - renewed > limit:
        return "the site agent could not renew its lease with the server"
    return None


def _group(pgid: int) -> dict[int, str]:
    """Other processes of this process group and their states (Linux /proc; elsewhere none)."""
    found: dict[int, str] = {}
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
        if len(fields) > 2 and fields[2] == str(pgid):
            found[int(name)] = fields[0]
    return found


def _group_members(pgid: int) -> list[int]:
    """Other live processes of this process group."""
    return [pid for pid, state in _group(pgid).items() if state != "Z"]


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


def _write_exit(path: str, code: int, orphaned: bool, oom_kills: int = 0) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"exit_code": code, "orphaned": orphaned, "oom_kills": oom_kills}, fh)
    os.replace(tmp, path)


class Masker:
    """Replaces secret values in a byte stream with ``***``, across writes: a tail that may be
    the start of a value is held back until more data (or the end) shows what it is."""

    def __init__(self, secrets: list[bytes]) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.pattern = re.compile(b"|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        self.held = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        buf, self.held = self.held + data, b""
        if self.pattern is None:
            return buf
        cut = len(buf)
        if not final:
            for p in range(max(0, len(buf) - len(self.secrets[0]) + 1), len(buf)):
                tail = buf[p:]
                if any(len(s) > len(tail) and s.startswith(tail) for s in self.secrets):
                    cut = p
                    break
            for m in self.pattern.finditer(buf):
                if m.end() > cut:  # a whole value across the cut: hold it all
                    cut = min(cut, m.start())
                    break
        self.held = buf[cut:]
        return self.pattern.sub(b"***", buf[:cut])


def _pump(fd: int, masker: Masker) -> None:
    """Copy the rank's output from ``fd`` to stdout (the log), masked, until end of file."""
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        out = masker.feed(data, final=not data)
        while out:
            try:
                out = out[os.write(1, out) :]
            except InterruptedError:
                continue
            except OSError:
                break
        if not data:
            os.close(fd)
            return


#: The descriptor a wrapped rank's environment loader reads (``sandbox.ENV_FD``).
ENV_FD = 3


def _read_job(fd: int | None) -> tuple[list[bytes], dict[str, str] | None]:
    """The secret values to mask and the job's environment (None: not sent, use our own)."""
    if fd is None:
        return [], None
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    with contextlib.suppress(OSError):
        os.close(fd)
    try:
        data = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return [], None
    if not isinstance(data, dict):
        return [], None
    secrets = [str(v).encode("utf-8") for v in data.get("secrets") or []]
    env = data.get("env")
    return secrets, ({str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else None)


def _feed_env(fd: int, env: dict[str, str]) -> None:
    """Write the environment to a wrapped rank's loader (a thread: it may pass a pipe's size)."""
    payload = b"".join(f"{k}={v}".encode("utf-8", "surrogateescape") + b"\0" for k, v in env.items())
    with contextlib.suppress(OSError), os.fdopen(fd, "wb") as fh:
        fh.write(payload)


def _join_cgroups(dirs: list[str]) -> None:
    for d in dirs:
        with open(os.path.join(d, "cgroup.procs"), "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))


def _oom_kills(dirs: list[str]) -> int:
    """OOM kills counted in the cgroups (v2 ``memory.events``, v1 ``memory.oom_control``)."""
    total = 0
    for d in dirs:
        for name in ("memory.events", "memory.oom_control"):
            with contextlib.suppress(OSError), open(os.path.join(d, name), encoding="ascii") as fh:
                for line in fh:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit():
                        total += int(value)
    return total


def _remove_container(podman: str, name: str, timeout: float = 30.0) -> None:
    """``podman rm --force`` the rank's container (``--container``): a killed ``podman run``
    leaves its container running, so it goes here, whichever way the rank ended (paused too)."""
    _podman(podman, ["rm", "--force", "--ignore", "--time", "0", name], timeout)


def _podman(podman: str, args: list[str], timeout: float = 30.0) -> None:
    """Run ``podman ARGS`` with nothing in or out, waiting at most ``timeout`` seconds."""
    with contextlib.suppress(OSError, ChildProcessError):
        argv = [podman, *args]
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
            pid = os.posix_spawn(podman, argv, dict(os.environ), file_actions=actions)
        finally:
            os.close(devnull)
        deadline = time.monotonic() + timeout
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)


def _signal_rank(rank: int, sig: int) -> None:
    """``sig`` to every process of the rank's group but the supervisor (to the rank alone when
    the supervisor does not lead a group of its own)."""
    if _leader():
        _kill_others(sig)
    else:
        with contextlib.suppress(OSError):
            os.kill(rank, sig)


def _freeze(rank: int) -> None:
    """SIGSTOP the rank's processes, again until none of them runs: one that forked meanwhile
    has its child stopped too. (SIGSTOP cannot be caught: a stopped process does nothing more.)"""
    if not _leader():
        with contextlib.suppress(OSError):
            os.kill(rank, signal.SIGSTOP)
        return
    for _ in range(50):
        running = [pid for pid, state in _group(os.getpid()).items() if state not in "TtZX"]
        if not running:
            return
        for pid in running:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
        time.sleep(0.002)


class _Watchdog:
    """The lease fence around one rank, on a thread of its own (see ``suanli.agent.recovery``).

    - The agent process dies (its pidfd, named by the liveness file, becomes readable): the rank
      is frozen at once (SIGSTOP), so it produces no effect that no one could report.
    - An agent (a new process) touches the liveness file again, within the lease: the rank
      goes on (SIGCONT); that agent has adopted the attempt.
    - The lease is over (the file older than the orphan timeout, or the last renewal with the
      server older than that): the rank is stopped before the server may requeue the attempt.
      A frozen rank is killed (SIGKILL: letting it run a SIGTERM handler could let it finish
      with no one to report it); a running one gets SIGTERM, then SIGKILL after the grace.
    """

    def __init__(
        self, alive: str, log: str | None, grace: float, rank: int, container: tuple[str, str] | None = None
    ) -> None:
        self.alive, self.log, self.grace, self.rank = alive, log, grace, rank
        #: ``(podman, name)`` of the rank's container: podman runs it outside the rank's process
        #: group, so a freeze pauses it too (``podman pause``; ``rm --force`` ends a paused one).
        self.container = container
        self.orphaned = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._agent: str | None = None  # the agent process watched ("agent" in the file)
        self._pidfd: int | None = None
        self._dead: str | None = None  # the agent whose death froze the rank
        self._frozen_at: float | None = None  # wall clock
        self._kill_at: float | None = None  # monotonic

    def start(self) -> None:
        threading.Thread(target=self._run, name="suanli-watchdog", daemon=True).start()

    def stop(self) -> bool:
        """Ends the watch (the rank has ended); whether the rank was stopped as an orphan."""
        self._done.set()
        with self._lock:
            self._unwatch()
            return self.orphaned

    def _run(self) -> None:
        died = False
        while True:
            with self._lock:
                if self._done.is_set():
                    return
                if died:
                    self._agent_died()
                self._check(time.time())
                fd, died = self._pidfd, False
            if fd is None:
                self._done.wait(CHECK_S)
                continue
            with contextlib.suppress(InterruptedError, OSError, ValueError):
                died = bool(select.select([fd], [], [], CHECK_S)[0])

    def _watch(self, fields: dict[str, str]) -> None:
        """Follow the agent process the liveness file names."""
        agent, pid = fields.get("agent"), fields.get("pid", "")
        if not agent or not pid.isdigit() or agent in (self._agent, self._dead):
            return
        self._unwatch()
        self._agent = agent
        try:
            self._pidfd = os.pidfd_open(int(pid))
        except ProcessLookupError:
            self._agent_died()  # gone before it could be watched
            return
        except (AttributeError, OSError):
            return  # no pidfd here: the file's age is the only sign of the agent's death
        if select.select([self._pidfd], [], [], 0)[0]:
            self._agent_died()  # exited already (a zombie not yet reaped)

    def _unwatch(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
        self._agent, self._pidfd = None, None

    def _agent_died(self) -> None:
        dead = self._agent
        self._unwatch()
        if self.orphaned or self._frozen_at is not None:
            return
        _freeze(self.rank)
        if self.container is not None:
            _podman(self.container[0], ["pause", self.container[1]], 10.0)
        self._dead, self._frozen_at = dead, time.time()
        _note(self.log, "the site agent died: this attempt is paused until an agent adopts it within the lease")

    def _check(self, now: float) -> None:
        limit, mtime, fields = _liveness(self.alive)
        if self.orphaned:
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                _signal_rank(self.rank, signal.SIGKILL)
                self._kill_at = None
            return
        if self._frozen_at is None:
            self._watch(fields)  # first: a rank whose agent is dead is frozen before anything else
        why = _overdue(limit, mtime, fields, now)
        if why is None and self._frozen_at is not None and mtime is None:
            # The agent wrote the file atomically, so it was removed: its work folder is gone,
            # no agent can ever adopt the rank. Frozen, it would wait for ever.
            why = "the site agent died and its work folder is gone"
        if why is not None:
            self.orphaned = True
            _note(self.log, f"{why}: stopping this attempt so it never runs twice")
            if self._frozen_at is not None:
                _signal_rank(self.rank, signal.SIGKILL)
                return
            if _leader():
                with contextlib.suppress(OSError):
                    os.killpg(0, signal.SIGTERM)
            else:
                with contextlib.suppress(OSError):
                    os.kill(self.rank, signal.SIGTERM)
            self._kill_at = time.monotonic() + min(self.grace, max(0.5, limit / 8))
            return
        if self._frozen_at is not None:
            agent = fields.get("agent")
            if agent is None or agent == self._dead or mtime is None or mtime < self._frozen_at:
                return  # no new agent yet
            if self.container is not None:
                _podman(self.container[0], ["unpause", self.container[1]], 10.0)
            _signal_rank(self.rank, signal.SIGCONT)
            self._dead, self._frozen_at = None, None
            _note(self.log, "a restarted site agent adopted this attempt: it goes on")
        self._watch(fields)


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


def _spawn(
    command: list[str],
    uid: int | None,
    gid: int | None,
    groups: list[int],
    out: int | None = None,
    wrapped: bool = False,
    env: dict[str, str] | None = None,
    env_fd: int | None = None,
) -> int:
    """Start the rank; as ``uid``/``gid``/``groups`` when given (privileges dropped before exec).
    ``out``: the descriptor its stdout and stderr go to (else the supervisor's own).
    ``wrapped``: the command is a sandbox that starts the rank itself: it starts with SIGTERM,
    SIGINT and SIGHUP ignored (so that they reach the rank without ending the sandbox) and
    gives the rank their default actions back. ``env``: what the command starts with (else our
    own); ``env_fd`` becomes its descriptor ``ENV_FD`` (a sandbox's environment loader)."""
    env = dict(os.environ if env is None else env)
    if uid is None and not wrapped:
        actions = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)] if out is not None else []
        return os.posix_spawn(command[0], command, env, file_actions=actions, setsigdef=(signal.SIGPIPE,))
    pid = os.fork()
    if pid == 0:  # the child: drop privileges for good, then become the rank
        try:
            if wrapped:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
            if out is not None:
                os.dup2(out, 1)
                os.dup2(out, 2)
            if env_fd is not None:
                os.dup2(env_fd, ENV_FD)  # inheritable: the sandbox passes it on to the loader
            if uid is not None:
                os.setgroups(groups)
                os.setgid(gid if gid is not None else uid)
                os.setuid(uid)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execve(command[0], command, env)  # noqa: S606 - the rank, as posix_spawn starts it
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(
                    2, f"[suanli] cannot start the job{f' as uid {uid}' if uid is not None else ''}: {exc}\n".encode()
                )
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
    parser.add_argument("--secrets-fd", type=int)
    parser.add_argument("--cgroup", action="append", default=[])
    parser.add_argument("--rlimit-as", type=int)
    parser.add_argument("--wrapped", action="store_true")
    parser.add_argument("--env-loader", action="store_true")
    parser.add_argument("--container")
    parser.add_argument("--podman", default="/usr/bin/podman")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _s, _f: None)  # the rank decides; a handler resets at exec
    groups = [int(g) for g in args.groups.split(",") if g]
    secrets, job_env = _read_job(args.secrets_fd)
    masker = Masker(secrets)
    _join_cgroups(args.cgroup)
    if args.rlimit_as:
        resource.setrlimit(resource.RLIMIT_AS, (args.rlimit_as, args.rlimit_as))
    if args.alive and (late := _overdue(*_liveness(args.alive), time.time())) is not None:
        # The lease is over before the rank started: it must not run at all (see _Watchdog).
        _note(args.log, f"{late}: this attempt was not started, so that it never runs twice")
        _write_exit(args.exit_file, -signal.SIGKILL, True)
        return 128 + signal.SIGKILL
    read_end, write_end = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_end, masker), daemon=True)
    pump.start()
    # The command starts with the job's environment, unless it is a sandbox whose loader takes
    # it after the drop to the job's user: then with our own, clean one (see the module's doc).
    env_read, env_write = os.pipe() if args.env_loader else (None, None)
    spawn_env = None if args.env_loader else job_env
    try:
        pid = _spawn(command, args.uid, args.gid, groups, write_end, args.wrapped, spawn_env, env_read)
    finally:
        os.close(write_end)  # the rank holds it now: end of file once it and its children are gone
        if env_read is not None:
            os.close(env_read)
    if env_write is not None:
        threading.Thread(target=_feed_env, args=(env_write, job_env or {}), daemon=True).start()
    pidfd: int | None = None
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(pid)
    container = (args.podman, args.container) if args.container else None
    watchdog = _Watchdog(args.alive, args.log, args.grace, pid, container) if args.alive else None
    if watchdog is not None:
        watchdog.start()
    while True:
        status = _wait(pid, pidfd, CHECK_S)
        if status is not None:
            break
    orphaned = watchdog.stop() if watchdog is not None else False
    code = os.waitstatus_to_exitcode(status)
    if args.wrapped and 128 < code < 128 + signal.NSIG:
        code = 128 - code  # the sandbox reports its rank's death by signal N as 128 + N: say -N, as unwrapped
    if orphaned and code == 0:
        orphaned = False  # it had done its work before the stop reached it: report it as it ended
    _kill_others(signal.SIGKILL)  # what the rank left behind in its group
    if args.container:
        _remove_container(args.podman, args.container)
    pump.join(timeout=5.0)  # its last output is in the log before the exit is known
    _write_exit(args.exit_file, code, orphaned, _oom_kills(args.cgroup))
    if code < 0:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
