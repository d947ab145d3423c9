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
    agent.alive                          touched while the agent runs; holds the orphan timeout

``time_limit_s`` counts from ``start`` (setup included, as Slurm counts a job's whole life). A
job with ``keep_checkpoint`` false gets a fresh ``checkpoint`` folder inside its attempt folder.

Secrets: the assignment's ``secrets`` join the job's environment, and their values are masked
(``***``) in the output read back (``logstream.Utf8Stream``). ``attempt.json`` keeps them (a
restarted agent needs them to start ``run`` after an adopted ``setup`` and to go on masking),
so it is written with mode 0600 and goes with the attempt's folder when the attempt is forgotten.

Run as (``run_as``: tenant → OS user, ``run_as_default``): with the agent running as root, a
tenant's ranks run as that user (uid, gid and its supplementary groups; HOME, USER, LOGNAME set).
The supervisor stays root and drops privileges only for the rank it starts, so the job can
neither kill it nor forge its exit status; the workdir and the checkpoint folder are given to
the user, the rank writes its log through the descriptor it inherits. The work dir and the
folders above it must let the users through (``x`` for others): the backend checks at start.

Exit codes follow ``Popen.returncode``: the shell's exit status, or ``-signum`` when the shell
itself was killed by a signal (e.g. -9 after SIGKILL). A command the shell ran that died of a
signal shows as the shell reports it, 128 + signum.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from suanli.agent.backends.base import Backend, KeptCheckpoints
from suanli.agent.backends.gpus import this_machine
from suanli.agent.backends.local_parts import (
    SUPERVISOR,
    RunAs,
    _Attempt,
    _exit_file,
    _failure_message,
    _free_port,
    _is_supervisor,
    _job_environment,
    _killpg,
    _lost_if_cancelled,
    _Rank,
    _read_exit,
    _Stop,
    _wait_gone,
)
from suanli.agent.backends.logstream import Utf8Stream
from suanli.agent.backends.staging import kept_checkpoint_dir, write_private
from suanli.agent.recovery import Recoverable
from suanli.core.errors import SuanliError
from suanli.core.network import NodeDecl
from suanli.core.protocol import AttemptAssignment, AttemptReport, LogChunk, NodeReport
from suanli.core.resources import format_duration
from suanli.core.states import AttemptState

log = logging.getLogger("suanli.agent.local")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Seconds between touches of the liveness file, at most.
_TOUCH_S = 1.0


class LocalBackend(Backend, Recoverable, KeptCheckpoints):
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
        (self.work_dir / "attempts").mkdir(parents=True, exist_ok=True)
        self._run_as, self._run_as_default = _resolve_run_as(self.work_dir, run_as or {}, run_as_default)
        self._alive = self.work_dir / "agent.alive"
        self._orphan_timeout_s = orphan_timeout_s
        self._touched_at: float | None = None
        self._chunk_ends: dict[tuple[int, int, int], int] = {}
        self.keepalive()

    # -- Backend --------------------------------------------------------------------------
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
            problem = self._populate(a, workdir_archive)
            if problem:
                log.warning(
                    "attempt %s of job %s failed before starting: %s", assignment.attempt_id, assignment.job_id, problem
                )
                self._finish(a, _Stop(AttemptState.FAILED, problem, note=True))
                return
            has_setup = bool(assignment.setup and assignment.setup.strip())
            self._launch(a, "setup" if has_setup else "run")
            self._save(a)

    def poll(self) -> list[AttemptReport]:
        self.keepalive()
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
                self._save(a)  # a restarted agent must know it was being stopped

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
            shutil.rmtree(a.dir, ignore_errors=True)

    # -- KeptCheckpoints -------------------------------------------------------------------
    def checkpoint_dir(self, assignment: AttemptAssignment) -> Path | None:
        return kept_checkpoint_dir(self.work_dir, assignment)

    def held_assignments(self) -> list[AttemptAssignment]:
        with self._lock:
            return [a.spec for a in self._attempts.values()]

    # -- Recoverable ----------------------------------------------------------------------
    def keepalive(self) -> None:
        """Touch ``agent.alive`` (at most once a second), writing the orphan timeout into it."""
        now = time.monotonic()
        with self._lock:
            if self._touched_at is not None and now - self._touched_at < _TOUCH_S:
                return
            self._touched_at = now
            timeout = self._orphan_timeout_s
        tmp = self._alive.with_name(f".agent.alive.{os.getpid()}")
        try:
            tmp.write_text(f"{timeout or 0:g}\n", encoding="utf-8")
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
                self._save(a)

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
                    a = self._restore(path.parent, record)
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.warning("cannot adopt the attempt recorded in %s: %s", path, exc)
                    continue
                self._attempts[attempt_id] = a
                adopted[attempt_id] = max(0.0, self._clock() - a.started_at)
                live = sum(1 for r in a.ranks if r.alive)
                log.info("adopted attempt %s of job %s (%s, %d live rank(s))", attempt_id, a.spec.job_id, a.phase, live)
        return adopted

    def _restore(self, adir: Path, record: dict[str, object]) -> _Attempt:
        spec = AttemptAssignment.model_validate(record["assignment"])
        phase = str(record["phase"])
        gpus = {n.rank: list(n.gpu_indices) for n in spec.nodes}
        ranks: list[_Rank] = []
        rank_records = record["ranks"]
        assert isinstance(rank_records, list)
        for rr in rank_records:
            r = _Rank(
                rank=int(rr["rank"]),
                node=str(rr["node"]),
                gpu_indices=gpus.get(int(rr["rank"]), []),
                log_path=adir / str(rr["log"]),
                stream=Utf8Stream(spec.secrets.values()),
            )
            r.accepted = int(rr.get("accepted") or 0)
            r.stream.consumed = r.stream.emitted = r.accepted
            r.exit_code = rr.get("exit_code")
            pid = rr.get("pid")
            if phase != "done" and r.exit_code is None and isinstance(pid, int):
                r.pid = pid
                if not _is_supervisor(pid, adir):
                    self._reap_adopted(adir, phase, r)  # ended while no agent watched
            ranks.append(r)
        started = float(record["started_at"])  # type: ignore[arg-type]
        a = _Attempt(spec=spec, dir=adir, ranks=ranks, started_at=self._clock() - max(0.0, time.time() - started))
        a.phase, a.state = phase, AttemptState(str(record["state"]))
        code = record.get("exit_code")
        a.exit_code = code if isinstance(code, int) else None
        a.message = str(record.get("message") or "")
        ckpt = record.get("checkpoint_dir")
        a.checkpoint_dir = Path(str(ckpt)) if ckpt else adir / "checkpoint"
        a.master_port = int(record.get("master_port") or 0)  # type: ignore[call-overload]
        if phase != "done":
            user = self._user_for(spec)
            a.env = _job_environment(spec, a.checkpoint_dir, a.master_port or _free_port(), user, a.workdir)
        stopping = record.get("stopping")
        if phase != "done" and isinstance(stopping, dict):
            a.stop = _Stop(_lost_if_cancelled(AttemptState(stopping["state"])), str(stopping.get("message") or ""))
            a.kill_at = self._clock() + self._kill_grace_s  # the SIGTERM went out before the restart
        elif phase == "done":
            a.state = _lost_if_cancelled(a.state)
        return a

    # -- starting -------------------------------------------------------------------------
    def _prepare(self, spec: AttemptAssignment) -> _Attempt:
        """A fresh attempt folder (a leftover one with the same id, from an older server, goes)."""
        adir = self.work_dir / "attempts" / str(spec.attempt_id)
        if adir.exists():
            shutil.rmtree(adir)
        adir.mkdir(parents=True, mode=0o700)  # its logs and records are the agent's (see run_as)
        secrets = spec.secrets.values()
        ranks = [
            _Rank(
                rank=n.rank,
                node=n.node,
                gpu_indices=list(n.gpu_indices),
                log_path=adir / f"rank-{n.rank}.log",
                stream=Utf8Stream(secrets),
            )
            for n in sorted(spec.nodes, key=lambda n: n.rank)
        ] or [_Rank(rank=0, node="", gpu_indices=[], log_path=adir / "rank-0.log", stream=Utf8Stream(secrets))]
        for r in ranks:
            r.log_path.touch(mode=0o600)  # unmasked output: the agent reads it, other users may not
        return _Attempt(spec=spec, dir=adir, ranks=ranks, started_at=self._clock())

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
        if user is not None:
            try:
                a.dir.chmod(0o711)  # the user passes through to its workdir; the records stay the agent's
                for folder in (a.workdir, ckpt):
                    user.take(folder)
                    folder.chmod(0o700)  # the user's alone: other tenants' users cannot look in
            except OSError as exc:
                return f"cannot give the workdir and checkpoint folder to user {user.name}: {exc}"
        a.checkpoint_dir, a.master_port = ckpt, _free_port()
        a.env = _job_environment(spec, ckpt, a.master_port, user, a.workdir)
        return None

    def _user_for(self, spec: AttemptAssignment) -> RunAs | None:
        """The OS user the attempt's ranks run as (None: the agent's own)."""
        return self._run_as.get(spec.tenant, self._run_as_default)

    def _launch(self, a: _Attempt, phase: str) -> None:
        """Start ``phase`` (setup or run) on every rank at once."""
        script = (a.spec.setup if phase == "setup" else a.spec.run) or ""
        a.phase = phase
        a.state = AttemptState.STARTING if phase == "setup" else AttemptState.RUNNING
        for r in a.ranks:
            r.proc, r.pid, r.exit_code = None, None, None
        user = self._user_for(a.spec)
        for r in a.ranks:
            env = dict(a.env)
            env.update(
                SUANLI_NODE_RANK=str(r.rank),
                SUANLI_NODE_NAME=r.node,
                SUANLI_NUM_GPUS_PER_NODE=str(len(r.gpu_indices)),
                CUDA_VISIBLE_DEVICES=",".join(str(i) for i in r.gpu_indices),
            )
            exit_file = _exit_file(a.dir, r.rank, phase)
            exit_file.unlink(missing_ok=True)
            supervised = [
                sys.executable,
                "-I",
                "-S",
                SUPERVISOR,
                "--exit",
                str(exit_file),
                "--alive",
                str(self._alive),
                "--log",
                str(r.log_path),
                "--grace",
                "3",
                *(user.supervisor_args() if user is not None else []),
                "--",
                self._bash,
                "-c",
                script,
            ]
            try:
                with r.log_path.open("ab") as out:
                    r.proc = subprocess.Popen(
                        supervised,
                        cwd=a.workdir,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: signals reach its children
                    )
                r.pid = r.proc.pid
            except OSError as exc:
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
                self._reap(a, r)
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
            a.stop = _Stop(AttemptState.FAILED, _failure_message(a, failed.rank, failed.exit_code), failed.exit_code)
            self._stop(a, now, self._kill_grace_s)
            return
        if all(r.exit_code == 0 for r in a.ranks):
            if a.phase == "setup":
                self._launch(a, "run")
                self._save(a)
            else:
                self._finish(a, _Stop(AttemptState.SUCCEEDED, "", 0))

    def _reap(self, a: _Attempt, r: _Rank) -> None:
        """Record a rank's exit; kill what its shell left behind in its process group.

        The leader is checked without being reaped first (``WNOWAIT``): while it is a zombie its
        pid cannot be reused, so signalling its group cannot hit an unrelated process.
        """
        proc = r.proc
        if proc is None:
            if r.pid is not None:
                self._reap_adopted(a.dir, a.phase, r)
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
            r.orphaned = _read_exit(_exit_file(a.dir, r.rank, a.phase))[1]

    def _reap_adopted(self, adir: Path, phase: str, r: _Rank) -> None:
        """A rank this process did not start: its supervisor wrote how it ended, or vanished
        without a word (killed with its whole group by SIGKILL)."""
        exit_file = _exit_file(adir, r.rank, phase)
        code, orphaned = _read_exit(exit_file)
        if code is None and r.pid is not None and _is_supervisor(r.pid, adir):
            return
        if code is None:
            code, orphaned = _read_exit(exit_file)  # it may have written just before it went
        r.exit_code = -signal.SIGKILL if code is None else code
        r.orphaned = orphaned

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
                self._reap(a, r)
        if any(r.alive for r in a.ranks):
            if a.kill_at is not None and now >= a.kill_at:
                log.info("attempt %s did not stop within its grace period: SIGKILL", a.spec.attempt_id)
                self._signal(a, signal.SIGKILL)
                a.kill_at = None
            return
        self._finish(a, stop)

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
        self._save(a)
        log.info(
            "attempt %s of job %s %s%s",
            a.spec.attempt_id,
            a.spec.job_id,
            a.state.value,
            f": {a.message}" if a.message else "",
        )

    # -- logs and records -----------------------------------------------------------------
    def _read_rank(self, a: _Attempt, r: _Rank, limit: int) -> tuple[LogChunk | None, int]:
        ended = a.phase == "done"  # read before the size: no rank writes after this
        try:
            size = r.log_path.stat().st_size
        except FileNotFoundError:
            size = 0
        data = b""
        take = min(r.stream.room(limit), size - r.stream.consumed)  # held bytes count: chunks stay about ≤ limit
        if take > 0:
            with r.log_path.open("rb") as fh:
                fh.seek(r.stream.consumed)
                data = fh.read(take)
        final = ended and r.stream.consumed + len(data) >= size
        cost = len(data) + r.stream.held  # the bytes of the chunk, held ones included
        offset, text = r.stream.feed(data, final)
        r.drained = final
        if not text:
            return None, cost
        self._chunk_ends[(a.spec.attempt_id, r.rank, offset)] = r.stream.emitted
        chunk = LogChunk(
            attempt_id=a.spec.attempt_id, fencing_token=a.spec.fencing_token, rank=r.rank, offset=offset, data=text
        )
        return chunk, cost

    def _save(self, a: _Attempt) -> None:
        """``attempt.json``, replaced atomically: enough to find and re-adopt the processes. It
        holds the job's secrets (see the module's docstring), so only the agent's user reads it."""
        record = {
            "attempt_id": a.spec.attempt_id,
            "fencing_token": a.spec.fencing_token,
            "job_id": a.spec.job_id,
            "phase": a.phase,
            "state": a.state.value,
            "exit_code": a.exit_code,
            "message": a.message,
            "started_at": time.time() - (self._clock() - a.started_at),
            "checkpoint_dir": str(a.checkpoint_dir) if a.checkpoint_dir else None,
            "stopping": {"state": a.stop.state.value, "message": a.stop.message} if a.stop else None,
            "master_port": a.master_port,
            "ranks": [
                {
                    "rank": r.rank,
                    "node": r.node,
                    "pid": r.pid,
                    "pgid": r.pid,  # start_new_session: the group is the supervisor's pid
                    "exit_code": r.exit_code,
                    "log": r.log_path.name,
                    "accepted": r.accepted,
                }
                for r in a.ranks
            ],
            "assignment": a.spec.model_dump(mode="json"),
        }
        try:
            write_private(a.dir / "attempt.json", json.dumps(record, indent=2))
        except OSError as exc:
            log.warning("cannot write the record of attempt %s: %s", a.spec.attempt_id, exc)


def _resolve_run_as(
    work_dir: Path, run_as: Mapping[str, str], default: str | None
) -> tuple[dict[str, RunAs], RunAs | None]:
    """Look the configured users up; refuse to start when they cannot be used as asked."""
    if not run_as and not default:
        return {}, None
    if os.geteuid() != 0:
        raise SuanliError(
            f"local.run_as: running jobs as other OS users needs the agent to run as root, and it runs as uid "
            f"{os.geteuid()}; start the agent as root or remove run_as and run_as_default from its config"
        )
    users: dict[str, RunAs] = {}
    for tenant, name in [*run_as.items(), ("", default)]:
        if not name:
            continue
        try:
            user = RunAs.lookup(str(name))
        except (KeyError, ValueError):
            where = f"run_as of tenant '{tenant}'" if tenant else "run_as_default"
            raise SuanliError(f"local.{where}: there is no OS user '{name}' on this machine") from None
        users[tenant] = user
    default_user = users.pop("", None) if default else None
    # Its users pass through to their own folders, but cannot list the others'.
    work_dir.chmod(work_dir.stat().st_mode | 0o111)
    for path in (work_dir / "attempts", work_dir / "checkpoints"):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o711)
    for user in [*users.values(), *([default_user] if default_user else [])]:
        blocked = _blocked_for(work_dir, user)
        if blocked is not None:
            raise SuanliError(
                f"local.run_as: user {user.name} cannot reach the work dir {work_dir}: {blocked} does not let it "
                f"through (chmod o+x {blocked}, or choose a work dir under e.g. /var/lib/suanli)"
            )
    return users, default_user


def _blocked_for(path: Path, user: RunAs) -> Path | None:
    """The first folder on the way to ``path`` that ``user`` may not pass through, if any."""
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        st = folder.stat()
        if st.st_uid == user.uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in user.groups or st.st_gid == user.gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return folder
    return None
