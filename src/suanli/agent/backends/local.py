"""LocalBackend: attempts as process groups on the agent's own machine — the embedded default.

Each rank of an attempt is one ``bash -c`` process under a tiny supervisor
(``suanli.agent.supervisor``) started in its own session, so its process group can be signalled
as a whole, children included, and it survives the agent. The supervisor writes the rank's exit
status to a file and stops the group once the agent has been silent past the orphan timeout
(see ``suanli.agent.recovery``); a restarted agent adopts live attempts from ``attempt.json``.
Setup runs first on every rank; ``run`` starts on all ranks together only once every setup
exited 0, so STARTING → RUNNING is exact and the gang starts as one. Everything happens in
``poll``: no thread of its own, so tests drive it deterministically and a cancel never blocks
its caller for the grace period.

Files, under ``work_dir``::

    attempts/<attempt_id>/attempt.json   pids, process groups and state (to re-adopt after a restart)
    attempts/<attempt_id>/rank-<r>.log   stdout + stderr of setup and run of rank r
    attempts/<attempt_id>/rank-<r>.<phase>.exit   exit status of that phase (by its supervisor)
    attempts/<attempt_id>/workdir/       the job's workdir, unpacked from its archive
    checkpoints/<job_id>/                SUANLI_CHECKPOINT_DIR, kept across attempts of the job
    agent.alive                          touched while the agent runs; holds the orphan timeout,
                                         the agent process and its last lease renewal

``time_limit_s`` counts from ``start`` (setup included, as Slurm counts a job's whole life). A
job with ``keep_checkpoint`` false gets a fresh ``checkpoint`` folder inside its attempt folder.

Sandbox (``sandbox="bwrap"``, the default): every rank runs under bubblewrap with only its own
folders, its datasets and a read-only system in view (``sandbox``); with the agent as root it
runs as its tenant's ``run_as`` user, else ``sandbox_user`` (nobody). ``sandbox="none"`` runs
ranks as plain processes, with a warning at start. Memory and CPUs of the rank's reservation
are enforced by cgroup where one can be made (``local_limits``).

Secrets: the assignment's ``secrets`` join the job's environment only. Each rank's supervisor
gets their values over a pipe and masks them (``***``) before the output reaches the rank's
log, so no log on disk holds them; ``attempt.json`` records only their names (a restarted agent
that adopts an attempt still in setup cannot start its run without them: that attempt is LOST
and retried). Run as (``run_as``: tenant → OS user, ``run_as_default``): with the agent
running as root, a tenant's ranks run as that user; see ``local_runas``.

Exit codes follow ``Popen.returncode``: the shell's exit status, or ``-signum`` when the shell
itself was killed by a signal (e.g. -9 after SIGKILL). A command the shell ran that died of a
signal shows as the shell reports it, 128 + signum.

The parts: this module holds ``LocalBackend`` and the life of an attempt (start, setup → run,
stop, the final state); ``local_state`` what an attempt and its ranks are (and reading a rank's
log); ``local_proc`` the rank processes and their supervisors; ``local_records`` ``attempt.json``
and re-adoption from it; ``local_runas`` the OS users jobs run as.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from suanli.agent.backends.base import Backend, KeptCheckpoints, RunsContainers
from suanli.agent.backends.container import LocalContainers
from suanli.agent.backends.gpus import this_machine
from suanli.agent.backends.local_limits import Cgroups
from suanli.agent.backends.local_proc import (
    _exit_file,
    _free_port,
    _job_environment,
    _killpg,
    _reap,
    _spawn,
    _wait_gone,
)
from suanli.agent.backends.local_records import _restore, _save
from suanli.agent.backends.local_runas import RunAs, _resolve_run_as
from suanli.agent.backends.local_state import _Attempt, _failure_message, _fresh_attempt, _Rank, _Stop
from suanli.agent.backends.sandbox import SandboxPlan, bwrap_argv, find_bwrap, host_layout, python_roots
from suanli.agent.backends.staging import kept_checkpoint_dir
from suanli.agent.inputs import dataset_env
from suanli.agent.recovery import Recoverable, liveness_text, read_renewed
from suanli.core.errors import SuanliError
from suanli.core.network import NodeDecl
from suanli.core.protocol import AttemptAssignment, AttemptReport, LogChunk, NodeReport
from suanli.core.resources import format_duration
from suanli.core.states import AttemptState

log = logging.getLogger("suanli.agent.local")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Seconds between touches of the liveness file, at most.
_TOUCH_S = 1.0


class LocalBackend(Backend, Recoverable, KeptCheckpoints, RunsContainers):
    """Runs attempts as local process groups; nodes are declared virtual ones or this machine.

    ``nodes``: declared virtual nodes (e.g. a demo site with one node of 16 × H100 on a laptop;
    their GPU slots are reported with ``gpu_source="virtual"``). Without any, the one node is
    this machine, with its NVIDIA GPUs found through NVML when a driver is present.
    ``kill_grace_s``: how long a failed gang's other ranks and a timed-out attempt get between
    SIGTERM and SIGKILL. ``clock``: monotonic seconds, injectable for tests.
    ``orphan_timeout_s``: attempts stop by themselves when nothing has driven this backend
    (``poll`` or ``keepalive``) for this long, e.g. after a ``kill -9`` of the agent; None: never.
    The agent sets it from the server's lease (``recovery.orphan_timeout``).
    ``run_as``: tenant → OS user (name or uid) its jobs run as, ``run_as_default`` for the other
    tenants (None: they run as the agent's user); both need the agent to run as root.
    ``sandbox``: ``bwrap`` (every rank in a bubblewrap sandbox; SuanliError at start when bwrap
    is missing) or ``none``. ``sandbox_user``: whom sandboxed ranks run as when the agent is
    root and ``run_as`` names no user for the tenant.
    """

    name = "local"

    def __init__(
        self,
        work_dir: Path,
        nodes: Sequence[NodeDecl] | None = None,
        *,
        kill_grace_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        node_name: str | None = None,
        orphan_timeout_s: float | None = 30.0,
        run_as: Mapping[str, str] | None = None,
        run_as_default: str | None = None,
        sandbox: str = "bwrap",
        sandbox_user: str = "nobody",
    ) -> None:
        self.work_dir = Path(work_dir)
        self._nodes = list(nodes or [])
        self._kill_grace_s = kill_grace_s
        self._clock = clock
        self._node_name = node_name
        self._machine: NodeReport | None = None
        self._attempts: dict[int, _Attempt] = {}
        self._lock = threading.RLock()
        self._bash = shutil.which("bash") or "/bin/bash"
        #: podman, for attempts that name an ``image`` (``container``): they run there, not in bwrap.
        self._containers = LocalContainers()
        (self.work_dir / "attempts").mkdir(parents=True, exist_ok=True)
        self._run_as, self._run_as_default = _resolve_run_as(self.work_dir, run_as or {}, run_as_default)
        self._bwrap: str | None = None
        self._sandbox_user: RunAs | None = None
        if sandbox == "bwrap":
            self._bwrap = find_bwrap()
            self._host = host_layout()
            self._python = python_roots()
            if os.geteuid() == 0:
                try:
                    self._sandbox_user = RunAs.lookup(sandbox_user)
                except (KeyError, ValueError):
                    raise SuanliError(
                        f"local.sandbox_user: there is no OS user '{sandbox_user}' on this machine; name one "
                        "(e.g. nobody) for sandboxed jobs to run as"
                    ) from None
        elif sandbox == "none":
            log.warning(
                "sandbox: none — jobs at %s run unsandboxed and can read everything the agent's user can "
                "(its work dir, other jobs' folders); only do this on a machine the jobs' owners own",
                self.work_dir,
            )
        else:
            raise SuanliError(f"local.sandbox must be bwrap or none, not {sandbox!r}")
        tag = hashlib.sha256(str(self.work_dir.resolve()).encode()).hexdigest()[:12]
        self._cgroups = Cgroups.probe(f"suanli-{tag}")
        log.info(
            "local backend at %s: %s; %s",
            self.work_dir,
            "every job in a bubblewrap sandbox" if self._bwrap else "no sandbox",
            self._cgroups.describe(),
        )
        self._alive = self.work_dir / "agent.alive"
        self._orphan_timeout_s = orphan_timeout_s
        self._touched_at: float | None = None
        # The liveness file names this process; a previous one's last lease renewal carries over.
        self._agent_tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._renewed = read_renewed(self._alive)
        self._chunk_ends: dict[tuple[int, int, int], int] = {}
        self.keepalive()

    # -- Backend --------------------------------------------------------------------------
    @property
    def sandbox(self) -> str:
        """``bwrap`` (every rank in a bubblewrap sandbox) or ``none`` (the site declared it)."""
        return "bwrap" if self._bwrap else "none"

    def inventory(self) -> list[NodeReport]:
        if self._nodes:
            return [
                NodeReport(name=n.name, gpu_type=n.gpu_type, gpus_total=n.gpu_count, cpus=n.cpus, memory=n.memory)
                for n in self._nodes
            ]
        with self._lock:
            if self._machine is None:  # NVML is slow to start: look once
                self._machine = this_machine(self._node_name)
            return [self._machine.model_copy()]

    def start(self, assignment: AttemptAssignment, workdir_archive: Path | None) -> None:
        with self._lock:
            if assignment.attempt_id in self._attempts:
                return
            a = self._prepare(assignment)
            self._attempts[assignment.attempt_id] = a
            problem = self._populate(a, workdir_archive) or self._containers.problem(assignment, self.site_name)
            if problem:
                log.warning(
                    "attempt %s of job %s failed before starting: %s", assignment.attempt_id, assignment.job_id, problem
                )
                self._finish(a, _Stop(AttemptState.FAILED, problem, note=True))
                return
            has_setup = bool(assignment.setup and assignment.setup.strip())
            self._launch(a, "setup" if has_setup else "run")
            _save(a, self._clock)

    def poll(self) -> list[AttemptReport]:
        self.keepalive()
        self._containers.reap()
        with self._lock:
            now = self._clock()
            for a in self._attempts.values():
                if a.phase != "done":
                    self._advance(a, now)
            return [
                AttemptReport(
                    attempt_id=a.spec.attempt_id,
                    fencing_token=a.spec.fencing_token,
                    state=a.state,
                    exit_code=a.exit_code,
                    message=a.message,
                )
                for a in self._attempts.values()
            ]

    def cancel(self, attempt_id: int, grace_s: float) -> None:
        """SIGTERM now; the SIGKILL after ``grace_s`` comes from a later ``poll`` (the agent polls
        every ``poll_s``), so the caller never waits for the grace period."""
        with self._lock:
            a = self._attempts.get(attempt_id)
            if a is None or a.phase == "done":
                return
            now = self._clock()
            self._advance(a, now)  # an attempt that has just ended reports its own end, not a cancel
            if a.phase == "done":
                return
            if a.stop is None:
                a.stop = _Stop(AttemptState.CANCELLED, "cancelled")
            self._stop(a, now, grace_s)
            if a.phase != "done":
                _save(a, self._clock)  # a restarted agent must know it was being stopped

    def read_logs(self, max_bytes: int = 256 * 1024) -> list[LogChunk]:
        with self._lock:
            pending = [(a, r) for a in self._attempts.values() for r in a.ranks if not r.drained]
            if not pending:
                return []
            share = max(4096, max_bytes // len(pending))  # no rank starves the others
            budget, chunks = max_bytes, []
            for a, r in pending:
                if budget <= 0:
                    break
                chunk, nread = self._read_rank(a, r, min(share, budget))
                budget -= nread
                if chunk is not None:
                    chunks.append(chunk)
            return chunks

    def logs_drained(self, attempt_id: int) -> bool:
        with self._lock:
            a = self._attempts.get(attempt_id)
            return a is None or (a.phase == "done" and all(r.drained for r in a.ranks))

    def forget(self, attempt_id: int) -> None:
        """Drops the attempt and deletes its folder (the server has its logs by now); a live one
        is killed first. Its checkpoint folder stays: it belongs to the job, not the attempt."""
        with self._lock:
            a = self._attempts.pop(attempt_id, None)
            if a is None:
                return
            if a.phase != "done":
                log.warning("forgetting attempt %s while it runs: killing it", attempt_id)
                self._signal(a, signal.SIGKILL)
                for r in a.ranks:
                    if r.alive and not _wait_gone(r, a.dir, 5.0):
                        log.error("process %s of attempt %s survived SIGKILL", r.pid, attempt_id)
            for key in [k for k in self._chunk_ends if k[0] == attempt_id]:
                del self._chunk_ends[key]
            for r in a.ranks:
                self._cgroups.remove(f"{attempt_id}-{r.rank}")
            self._containers.remove(a)  # a SIGKILLed `podman run` leaves its container behind
            shutil.rmtree(a.dir, ignore_errors=True)

    # -- RunsContainers --------------------------------------------------------------------
    def containers_available(self) -> bool:
        """podman and runc are installed: attempts that name an ``image`` run in it."""
        return self._containers.available()

    # -- KeptCheckpoints -------------------------------------------------------------------
    def checkpoint_dir(self, assignment: AttemptAssignment) -> Path | None:
        return kept_checkpoint_dir(self.work_dir, assignment)

    def held_assignments(self) -> list[AttemptAssignment]:
        with self._lock:
            return [a.spec for a in self._attempts.values()]

    # -- Recoverable ----------------------------------------------------------------------
    def keepalive(self) -> None:
        """Touch ``agent.alive`` (at most once a second, four times an orphan timeout), writing
        the orphan timeout, this process and the last lease renewal into it (``recovery``)."""
        now = time.monotonic()
        with self._lock:
            timeout = self._orphan_timeout_s
            every = min(_TOUCH_S, timeout / 4) if timeout else _TOUCH_S
            if self._touched_at is not None and now - self._touched_at < every:
                return
            self._touched_at = now
            text = liveness_text(timeout, self._agent_tag, os.getpid(), self._renewed)
        tmp = self._alive.with_name(f".agent.alive.{os.getpid()}")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self._alive)
        except OSError as exc:
            log.warning("cannot touch %s: %s", self._alive, exc)

    def set_orphan_timeout(self, seconds: float | None) -> None:
        with self._lock:
            changed = seconds != self._orphan_timeout_s
            self._orphan_timeout_s = seconds
            if changed:
                self._touched_at = None
        self.keepalive()

    def lease_renewed(self, at: float) -> None:
        with self._lock:
            if self._renewed is not None and at <= self._renewed:
                return
            if self._renewed is None or at - self._renewed > 0.5:
                # Written now, before the heartbeat's reply starts anything: a rank started
                # after a long silence must not read the old renewal and stop at once.
                self._touched_at = None
            self._renewed = at
        self.keepalive()

    def last_renewal(self) -> float | None:
        with self._lock:
            return self._renewed

    def logs_accepted(self, chunks: Sequence[LogChunk]) -> None:
        with self._lock:
            dirty: dict[int, _Attempt] = {}
            for c in chunks:
                end = self._chunk_ends.pop((c.attempt_id, c.rank, c.offset), None)
                a = self._attempts.get(c.attempt_id)
                r = next((r for r in a.ranks if r.rank == c.rank), None) if a is not None else None
                if a is None or r is None or end is None or end <= r.accepted:
                    continue
                r.accepted = end
                dirty[c.attempt_id] = a
            for a in dirty.values():
                _save(a, self._clock)

    def adopt(self) -> dict[int, float]:
        """Hold again every attempt ``attempts/*/attempt.json`` records that this backend does
        not hold: live ones keep running (their supervisors report how each rank ends), ended
        ones are reported as they ended. Output resumes at the offsets the server accepted."""
        adopted: dict[int, float] = {}
        with self._lock:
            for path in sorted((self.work_dir / "attempts").glob("*/attempt.json")):
                try:
                    record = json.loads(path.read_text(encoding="utf-8"))
                    attempt_id = int(record["attempt_id"])
                    if attempt_id in self._attempts:
                        continue
                    a = _restore(
                        path.parent,
                        record,
                        clock=self._clock,
                        kill_grace_s=self._kill_grace_s,
                        user_for=self._user_for,
                        sandboxed=self._bwrap is not None,
                    )
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("cannot adopt the attempt recorded in %s: %s", path, exc)
                    continue
                self._attempts[attempt_id] = a
                adopted[attempt_id] = max(0.0, self._clock() - a.started_at)
                live = sum(1 for r in a.ranks if r.alive)
                log.info("adopted attempt %s of job %s (%s, %d live rank(s))", attempt_id, a.spec.job_id, a.phase, live)
        return adopted

    # -- starting -------------------------------------------------------------------------
    def _prepare(self, spec: AttemptAssignment) -> _Attempt:
        """A fresh attempt folder (a leftover one with the same id, from an older server, goes)."""
        return _fresh_attempt(self.work_dir / "attempts" / str(spec.attempt_id), spec, self._clock)

    def _populate(self, a: _Attempt, archive: Path | None) -> str | None:
        """Workdir, checkpoint folder and environment; returns what went wrong, in words."""
        spec = a.spec
        if not spec.nodes:
            return "the assignment names no nodes to run on"
        if not _SAFE_NAME.match(spec.job_id):
            return f"job id {spec.job_id!r} cannot name a checkpoint folder"
        ckpt = self.work_dir / "checkpoints" / spec.job_id if spec.keep_checkpoint else a.dir / "checkpoint"
        ckpt.mkdir(parents=True, exist_ok=True, mode=0o700)
        a.workdir.mkdir()
        if archive is not None:
            try:
                with tarfile.open(archive, "r:gz") as tar:
                    # "data" refuses absolute paths, '..', links leaving the folder and devices.
                    tar.extractall(a.workdir, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                return f"cannot unpack the workdir archive: {exc}"
        user = self._user_for(spec)
        output = spec.envs.get("SUANLI_OUTPUT_DIR")
        if user is not None:
            try:
                a.dir.chmod(0o711)  # the user passes through to its workdir; the records stay the agent's
                for folder in (a.workdir, ckpt, *([Path(output)] if output else [])):
                    user.take(folder)
                    folder.chmod(0o700)  # the user's alone: other tenants' users cannot look in
            except OSError as exc:
                return f"cannot give the workdir and checkpoint folder to user {user.name}: {exc}"
        a.checkpoint_dir, a.master_port = ckpt, _free_port()
        a.env = _job_environment(spec, ckpt, a.master_port, user, a.workdir, sandboxed=self._bwrap is not None)
        return None

    def _user_for(self, spec: AttemptAssignment) -> RunAs | None:
        """The OS user the attempt's ranks run as (None: the agent's own)."""
        return self._run_as.get(spec.tenant, self._run_as_default) or self._sandbox_user

    def _wrap(self, a: _Attempt, r: _Rank, user: RunAs | None) -> list[str] | None:
        """The argv prefix rank ``r`` runs under: its sandbox (None: unsandboxed)."""
        if self._bwrap is None:
            return None
        spec, envs = a.spec, a.spec.envs
        readonly: list[tuple[Path, str]] = []
        if envs.get("SUANLI_DATASETS_DIR"):
            readonly.append((Path(envs["SUANLI_DATASETS_DIR"]), envs["SUANLI_DATASETS_DIR"]))
        for d in spec.datasets:
            fetched = envs.get(dataset_env(d.name))
            if fetched:
                readonly.append((Path(fetched), d.mount))
        home = os.environ.get("SUANLI_HOME")
        plan = SandboxPlan(
            workdir=a.workdir,
            writable=tuple(
                p
                for p in (a.checkpoint_dir, Path(envs["SUANLI_OUTPUT_DIR"]) if envs.get("SUANLI_OUTPUT_DIR") else None)
                if p is not None
            ),
            readonly=tuple(readonly),
            python=self._python,
            hidden=(self.work_dir, *([Path(home)] if home else [])),
            network="none" if spec.network == "none" else "any",
            gpu_indices=tuple(r.gpu_indices),
            uid=user.uid if user is not None else None,
            gid=user.gid if user is not None else None,
            groups=user.groups if user is not None else (),
        )
        return bwrap_argv(plan, self._host, bwrap=self._bwrap, as_root=os.geteuid() == 0, bash=self._bash)

    def _limits(self, a: _Attempt, r: _Rank) -> list[str]:
        """Supervisor options that hold rank ``r`` to the CPUs and memory reserved for it."""
        node = next((n for n in a.spec.nodes if n.rank == r.rank), None)
        if node is None:
            return []
        return self._cgroups.prepare(f"{a.spec.attempt_id}-{r.rank}", node.memory_gib, node.cpus)

    def _launch(self, a: _Attempt, phase: str) -> None:
        """Start ``phase`` (setup or run) on every rank at once."""
        script = (a.spec.setup if phase == "setup" else a.spec.run) or ""
        a.phase = phase
        a.state = AttemptState.STARTING if phase == "setup" else AttemptState.RUNNING
        for r in a.ranks:
            r.proc, r.pid, r.exit_code = None, None, None
        user = self._user_for(a.spec)
        if a.secrets_missing:
            a.stop = _Stop(
                AttemptState.LOST,
                "the site agent restarted during setup and keeps no copy of the job's secrets: retrying the job",
                note=True,
            )
            self._stop(a, self._clock(), 0)
            return
        for r in a.ranks:
            exit_file = _exit_file(a.dir, r.rank, phase)
            exit_file.unlink(missing_ok=True)
            try:
                wrap: list[str] | None
                if a.spec.image:  # in its image, under podman (container.py), not in bwrap
                    env, bash, wrap, limits = self._containers.rank(a, r, user)
                else:
                    env, bash, wrap, limits = a.env, self._bash, self._wrap(a, r, user), self._limits(a, r)
                _spawn(
                    r,
                    script,
                    env,
                    cwd=a.workdir,
                    exit_file=exit_file,
                    alive=self._alive,
                    bash=bash,
                    user=user,
                    wrap=wrap,
                    secrets=list(a.spec.secrets.values()),
                    limits=limits,
                    env_loader=wrap is not None and not a.spec.image,
                )
            except (OSError, ValueError) as exc:
                a.stop = _Stop(AttemptState.FAILED, f"could not start {phase} on rank {r.rank}: {exc}", note=True)
                self._stop(a, self._clock(), 0)
                return
        log.info(
            "attempt %s of job %s: %s started on %d rank(s)", a.spec.attempt_id, a.spec.job_id, phase, len(a.ranks)
        )

    # -- watching -------------------------------------------------------------------------
    def _advance(self, a: _Attempt, now: float) -> None:
        """One step of the attempt's life: collect exits, enforce limits, move phases."""
        for r in a.ranks:
            if r.alive:
                _reap(a, r)
        if a.stop is None and any(r.orphaned for r in a.ranks):
            a.stop = _Stop(AttemptState.LOST, "stopped on its own: the site agent was gone past its lease", note=False)
        if a.stop is not None:
            self._stop(a, now, None)
            return
        limit = a.spec.time_limit_s
        if limit is not None and now - a.started_at >= limit:
            a.stop = _Stop(AttemptState.FAILED, f"time limit {format_duration(limit)} reached", note=True)
            self._stop(a, now, self._kill_grace_s)
            return
        failed = next((r for r in a.ranks if r.exit_code not in (None, 0)), None)
        if failed is not None and failed.exit_code is not None:
            message = _failure_message(a, failed.rank, failed.exit_code, self._memory_of(a, failed))
            a.stop = _Stop(AttemptState.FAILED, message, failed.exit_code, note=failed.oom_kills > 0)
            self._stop(a, now, self._kill_grace_s)
            return
        if all(r.exit_code == 0 for r in a.ranks):
            if a.phase == "setup":
                self._launch(a, "run")
                _save(a, self._clock)
            else:
                self._finish(a, _Stop(AttemptState.SUCCEEDED, "", 0))

    def _stop(self, a: _Attempt, now: float, grace_s: float | None) -> None:
        """Drive an attempt whose ``stop`` is set: SIGTERM (when ``grace_s`` is given), SIGKILL
        once the deadline passes, and the final state once no rank is left."""
        stop = a.stop
        if stop is None:
            return
        if grace_s is not None:
            self._signal(a, signal.SIGTERM)
            deadline = now + max(0.0, grace_s)
            a.kill_at = deadline if a.kill_at is None else min(a.kill_at, deadline)
        for r in a.ranks:
            if r.alive:
                _reap(a, r)
        if any(r.alive for r in a.ranks):
            if a.kill_at is not None and now >= a.kill_at:
                log.info("attempt %s did not stop within its grace period: SIGKILL", a.spec.attempt_id)
                self._signal(a, signal.SIGKILL)
                a.kill_at = None
            return
        if a.phase == "run" and stop.state is not AttemptState.SUCCEEDED and all(r.exit_code == 0 for r in a.ranks):
            # Every rank had ended its run with 0 before the stop reached it: the job did its
            # work. Reporting it stopped (LOST after a fence) would have it run again: twice.
            stop = _Stop(AttemptState.SUCCEEDED, "", 0)
        self._finish(a, stop)

    def _memory_of(self, a: _Attempt, r: _Rank) -> float | None:
        """The memory (GiB) rank ``r`` was held to, when the kernel killed it for going past it."""
        if r.oom_kills <= 0:
            return None
        node = next((n for n in a.spec.nodes if n.rank == r.rank), None)
        return node.memory_gib if node is not None and node.memory_gib else 0.0

    def _signal(self, a: _Attempt, sig: signal.Signals) -> None:
        for r in a.ranks:
            if r.alive and r.pid is not None:
                _killpg(r.pid, sig)

    def _finish(self, a: _Attempt, stop: _Stop) -> None:
        a.phase, a.state, a.message = "done", stop.state, stop.message
        a.exit_code = stop.exit_code if stop.exit_code is not None else a.ranks[0].exit_code
        a.stop, a.kill_at = None, None
        if stop.note:
            with a.ranks[0].log_path.open("ab") as out:
                out.write(f"[suanli] {stop.message}\n".encode())
        _save(a, self._clock)
        self._containers.remove(a)
        log.info(
            "attempt %s of job %s %s%s",
            a.spec.attempt_id,
            a.spec.job_id,
            a.state.value,
            f": {a.message}" if a.message else "",
        )

    # -- logs -----------------------------------------------------------------------------
    def _read_rank(self, a: _Attempt, r: _Rank, limit: int) -> tuple[LogChunk | None, int]:
        ended = a.phase == "done"  # read before the size: no rank writes after this
        offset, text, cost = r.read_log(limit, ended)
        if not text:
            return None, cost
        self._chunk_ends[(a.spec.attempt_id, r.rank, offset)] = r.stream.emitted
        chunk = LogChunk(
            attempt_id=a.spec.attempt_id, fencing_token=a.spec.fencing_token, rank=r.rank, offset=offset, data=text
        )
        return chunk, cost
