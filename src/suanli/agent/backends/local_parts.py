"""The local backend's records and process helpers: what an attempt and its ranks are, and the
small functions that start, signal and read them. Split from local.py to keep both readable."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.logstream import Utf8Stream
from suanli.core.protocol import AttemptAssignment
from suanli.core.states import AttemptState

#: The per-rank supervisor program (agent/supervisor.py).
SUPERVISOR = str(Path(__file__).resolve().parent.parent / "supervisor.py")


@dataclass
class _Rank:
    rank: int
    node: str
    gpu_indices: list[int]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    #: The supervisor's pid (= its process group); set without ``proc`` for an adopted rank.
    pid: int | None = None
    exit_code: int | None = None
    stream: Utf8Stream = field(default_factory=Utf8Stream)
    #: All output returned and the attempt has ended: nothing more will come.
    drained: bool = False
    #: Bytes of the log the server has accepted (where an adopted attempt's output resumes).
    accepted: int = 0
    #: Its supervisor stopped it: the agent had been gone past the orphan timeout.
    orphaned: bool = False

    @property
    def alive(self) -> bool:
        return (self.proc is not None or self.pid is not None) and self.exit_code is None


@dataclass(frozen=True)
class RunAs:
    """An unprivileged OS user a tenant's jobs run as (the local backend's ``run_as``)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        """The user ``name`` (or a numeric uid); KeyError when this machine has no such user."""
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def supervisor_args(self) -> list[str]:
        """How the supervisor is told to drop to this user before it starts the rank."""
        return ["--uid", str(self.uid), "--gid", str(self.gid), "--groups", ",".join(str(g) for g in self.groups)]

    def take(self, path: Path) -> None:
        """Give ``path`` and everything under it to this user (links themselves, never followed)."""
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


@dataclass
class _Stop:
    """Why an attempt is being stopped, and what it reports once every rank is gone."""

    state: AttemptState
    message: str
    #: Fixed by the failing rank; None takes rank 0's code at the end (e.g. -15 after SIGTERM).
    exit_code: int | None = None
    #: Also write the message into the logs (the user cannot otherwise see why it stopped).
    note: bool = False


@dataclass
class _Attempt:
    spec: AttemptAssignment
    dir: Path
    ranks: list[_Rank]
    started_at: float
    env: dict[str, str] = field(default_factory=dict)
    phase: str = "setup"  # setup | run | done
    state: AttemptState = AttemptState.STARTING
    exit_code: int | None = None
    message: str = ""
    stop: _Stop | None = None
    kill_at: float | None = None
    checkpoint_dir: Path | None = None
    master_port: int = 0

    @property
    def workdir(self) -> Path:
        return self.dir / "workdir"


def _job_environment(
    spec: AttemptAssignment, checkpoint_dir: Path, master_port: int, user: RunAs | None = None, home: Path | None = None
) -> dict[str, str]:
    """What every rank sees (the rank adds its own SUANLI_NODE_RANK and CUDA_VISIBLE_DEVICES).

    The agent's own SUANLI_* variables are left out: they may hold the site's token. A job run
    as ``user`` gets that user's HOME (``home`` when it has none), USER and LOGNAME.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env.update(spec.envs)
    env.update(spec.secrets)
    if user is not None:
        env.update(HOME=user.home if Path(user.home).is_dir() else str(home or checkpoint_dir), USER=user.name)
        env["LOGNAME"] = user.name
    env.update(
        SUANLI_JOB_ID=spec.job_id,
        SUANLI_JOB_NAME=spec.job_name,
        SUANLI_ATTEMPT=str(spec.attempt_number),
        SUANLI_NUM_NODES=str(max(1, len(spec.nodes))),
        SUANLI_MASTER_ADDR="127.0.0.1",
        SUANLI_MASTER_PORT=str(master_port),
        SUANLI_CHECKPOINT_DIR=str(checkpoint_dir),
        PYTHONUNBUFFERED="1",
    )
    # `python` in a job is the agent's interpreter (the venv's bin, not its resolved target).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH") or os.defpath])
    return env


def _failure_message(a: _Attempt, rank: int, code: int) -> str:
    if code < 0:
        try:
            words = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            words = f"was killed by signal {-code}"
    else:
        words = f"exited with code {code}"
    gang = len(a.ranks) > 1
    if a.phase == "setup":
        return f"setup {words} on rank {rank}" if gang else f"setup {words}"
    return f"rank {rank} {words}" if gang else f"run {words}"


def _lost_if_cancelled(state: AttemptState) -> AttemptState:
    """An adopted attempt that the previous agent process stopped (or was stopping) is reported
    LOST: whether the stop was the agent's own (shutdown, partition) is gone with that process,
    and the server knows better — the job of a user's cancel still ends CANCELLED there."""
    return AttemptState.LOST if state == AttemptState.CANCELLED else state


def _exit_file(adir: Path, rank: int, phase: str) -> Path:
    return adir / f"rank-{rank}.{phase}.exit"


def _read_exit(path: Path) -> tuple[int | None, bool]:
    """``(exit code, stopped as an orphan)`` from a supervisor's exit file; None: not written."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return int(record["exit_code"]), bool(record.get("orphaned"))
    except (OSError, ValueError, KeyError, TypeError):
        return None, False


def _is_supervisor(pid: int, adir: Path) -> bool:
    """Whether ``pid`` is still a live supervisor of this attempt (not a zombie, not a reused
    pid): its command line names the supervisor and a file in the attempt's folder."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to "a process leads that group"
        try:
            return os.getpgid(pid) == pid
        except OSError:
            return False
    marker = str(adir).encode()
    return SUPERVISOR.encode() in argv and any(arg.startswith(marker) for arg in argv)


def _wait_gone(r: _Rank, adir: Path, timeout: float) -> bool:
    """Wait until a killed rank's supervisor is gone; False if it is still there."""
    if r.proc is not None:
        try:
            r.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while r.pid is not None and _is_supervisor(r.pid, adir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, sig)


def _free_port() -> int:
    """A TCP port free right now, for SUANLI_MASTER_PORT (same for every rank of the gang)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
