"""The local backend's processes: each rank is one ``bash -c`` under its own supervisor
(``suanli.agent.supervisor``), started in a session of its own so that its process group can be
signalled as a whole and outlives the agent.

Here: the environment a rank starts with, starting a rank under its supervisor, collecting how
it ended (``_reap`` for a rank this process started, ``_reap_adopted`` for one it adopted after a
restart, through the exit file the supervisor writes), and signalling and waiting for groups.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from suanli.agent.backends.local_runas import RunAs
from suanli.agent.backends.local_state import _Attempt, _Rank
from suanli.core.protocol import AttemptAssignment

#: The per-rank supervisor program (agent/supervisor.py).
SUPERVISOR = str(Path(__file__).resolve().parent.parent / "supervisor.py")
#: The supervisor's own environment: nothing of the job's, nothing of the agent's.
SUPERVISOR_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _job_environment(
    spec: AttemptAssignment,
    checkpoint_dir: Path,
    master_port: int,
    user: RunAs | None = None,
    home: Path | None = None,
    *,
    sandboxed: bool = False,
) -> dict[str, str]:
    """What every rank sees (the rank adds its own SUANLI_NODE_RANK and CUDA_VISIBLE_DEVICES).

    The agent's own SUANLI_* variables are left out: they may hold the site's token. A job run
    as ``user`` gets that user's HOME (``home`` when it has none), USER and LOGNAME. In the
    sandbox HOME is always ``home`` (the workdir: no other home is visible there), and ``pip
    install`` goes to ``<workdir>/.packages`` (PIP_TARGET, on PYTHONPATH): the venv is read-only.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env.update(spec.envs)
    env.update(spec.secrets)
    if user is not None:
        env.update(HOME=user.home if Path(user.home).is_dir() else str(home or checkpoint_dir), USER=user.name)
        env["LOGNAME"] = user.name
    if sandboxed and home is not None:
        env["HOME"] = str(home)
        packages = str(home / ".packages")
        env.setdefault("PIP_TARGET", packages)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (packages, env.get("PYTHONPATH")) if p)
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


def _spawn(
    r: _Rank,
    script: str,
    env: dict[str, str],
    *,
    cwd: Path,
    exit_file: Path,
    alive: Path,
    bash: str,
    user: RunAs | None,
    wrap: list[str] | None = None,
    secrets: Sequence[str] = (),
    limits: Sequence[str] = (),
    env_loader: bool = False,
) -> None:
    """Start ``script`` on rank ``r`` under its supervisor, in a session (process group) of its
    own; sets ``r.proc`` and ``r.pid``. ``env``: the attempt's, to which the rank's own are added.
    ``wrap``: the argv prefix of its sandbox or container (``sandbox.bwrap_argv``), which then
    drops to ``user`` itself; without one, the supervisor does. ``secrets``: values the
    supervisor masks before they reach the log, given to it over a pipe. ``limits``: more
    supervisor options (``--cgroup``, ``--rlimit-as``). ``env_loader``: ``wrap`` ends in
    ``sandbox.ENV_LOADER``, which takes the environment after the drop to the job's user.

    The supervisor (root, with ``run_as`` or a sandbox) starts with ``SUPERVISOR_ENV`` alone; the
    rank's environment goes to it over the same pipe as the secrets, so nothing a job sets
    (``LD_PRELOAD``…) reaches a process that holds privileges. Raises OSError when it cannot be
    started."""
    env = dict(env)
    env.update(
        SUANLI_NODE_RANK=str(r.rank),
        SUANLI_NODE_NAME=r.node,
        SUANLI_NUM_GPUS_PER_NODE=str(len(r.gpu_indices)),
        CUDA_VISIBLE_DEVICES=",".join(str(i) for i in r.gpu_indices),
    )
    supervised = [
        sys.executable,
        "-I",
        "-S",
        SUPERVISOR,
        "--exit",
        str(exit_file),
        "--alive",
        str(alive),
        "--log",
        str(r.log_path),
        "--grace",
        "3",
        *(user.supervisor_args() if user is not None and wrap is None else []),
        *(["--wrapped"] if wrap else []),
        *(["--env-loader"] if wrap and env_loader else []),
        *limits,
    ]
    read_end, write_end = os.pipe()
    try:
        supervised += ["--secrets-fd", str(read_end), "--", *(wrap or []), bash, "-c", script]
        with r.log_path.open("ab") as out:
            r.proc = subprocess.Popen(
                supervised,
                cwd=cwd,
                env=SUPERVISOR_ENV,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach its children
                pass_fds=(read_end,),
            )
        os.close(read_end)
        read_end = -1
        with os.fdopen(write_end, "wb") as fh:
            write_end = -1
            fh.write(json.dumps({"secrets": list(secrets), "env": env}).encode("utf-8"))
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    r.pid = r.proc.pid


def _reap(a: _Attempt, r: _Rank) -> None:
    """Record a rank's exit; kill what its shell left behind in its process group.

    The leader is checked without being reaped first (``WNOWAIT``): while it is a zombie its
    pid cannot be reused, so signalling its group cannot hit an unrelated process.
    """
    proc = r.proc
    if proc is None:
        if r.pid is not None:
            _reap_adopted(a.dir, a.phase, r)
        return
    waitid = getattr(os, "waitid", None)
    if waitid is not None:
        try:
            if waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return
        except ChildProcessError:
            pass
        else:
            _killpg(proc.pid, signal.SIGKILL)
    r.exit_code = proc.poll()
    if r.exit_code is not None:
        _, r.orphaned, r.oom_kills = _read_exit(_exit_file(a.dir, r.rank, a.phase))


def _reap_adopted(adir: Path, phase: str, r: _Rank) -> None:
    """A rank this process did not start: its supervisor wrote how it ended, or vanished
    without a word (killed with its whole group by SIGKILL)."""
    exit_file = _exit_file(adir, r.rank, phase)
    code, orphaned, ooms = _read_exit(exit_file)
    if code is None and r.pid is not None and _is_supervisor(r.pid, adir):
        return
    if code is None:
        code, orphaned, ooms = _read_exit(exit_file)  # it may have written just before it went
    r.exit_code = -signal.SIGKILL if code is None else code
    r.orphaned, r.oom_kills = orphaned, ooms


def _exit_file(adir: Path, rank: int, phase: str) -> Path:
    return adir / f"rank-{rank}.{phase}.exit"


def _read_exit(path: Path) -> tuple[int | None, bool, int]:
    """``(exit code, stopped as an orphan, OOM kills in its cgroup)`` from a supervisor's exit
    file; None: not written."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return int(record["exit_code"]), bool(record.get("orphaned")), int(record.get("oom_kills") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None, False, 0


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
