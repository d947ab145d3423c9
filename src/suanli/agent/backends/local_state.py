"""The local backend's state of an attempt: what an attempt and its ranks are (``_Attempt``,
``_Rank``), why one is stopping (``_Stop``) and the words it reports when it ends; a fresh
attempt's folder with a log file per rank (``_fresh_attempt``), and reading a rank's log from
where the last read ended (``_Rank.read_log``). ``local_records`` writes this state to
``attempt.json`` and reads it back; ``local_proc`` starts and watches the ranks' processes."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.logstream import Utf8Stream
from suanli.core.protocol import AttemptAssignment
from suanli.core.states import AttemptState


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
    #: Processes the kernel killed in its memory cgroup (it went past its memory).
    oom_kills: int = 0

    @property
    def alive(self) -> bool:
        return (self.proc is not None or self.pid is not None) and self.exit_code is None

    def read_log(self, limit: int, ended: bool) -> tuple[int, str, int]:
        """The next piece of this rank's log, read from where the last one ended: ``(offset,
        text, cost)``, ``text`` decoded and masked (empty when there is nothing to send yet),
        ``cost`` its bytes, held ones included. ``ended``: the attempt had ended before this
        read began, so the whole log is there and this read may be its last (``drained``)."""
        try:
            size = self.log_path.stat().st_size
        except FileNotFoundError:
            size = 0
        data = b""
        take = min(self.stream.room(limit), size - self.stream.consumed)  # held bytes count: chunks stay about ≤ limit
        if take > 0:
            with self.log_path.open("rb") as fh:
                fh.seek(self.stream.consumed)
                data = fh.read(take)
        final = ended and self.stream.consumed + len(data) >= size
        cost = len(data) + self.stream.held  # the bytes of the chunk, held ones included
        offset, text = self.stream.feed(data, final)
        self.drained = final
        return offset, text, cost


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
    #: Adopted after a restart from a record that keeps no secrets, though the job has some:
    #: a phase still to start cannot be given them.
    secrets_missing: bool = False

    @property
    def workdir(self) -> Path:
        return self.dir / "workdir"


def _fresh_attempt(adir: Path, spec: AttemptAssignment, clock: Callable[[], float]) -> _Attempt:
    """The attempt ``spec`` assigns, in a fresh folder ``adir`` (a leftover one goes) with an
    empty log per rank; ``started_at`` is ``clock()`` once they are there."""
    if adir.exists():
        shutil.rmtree(adir)
    adir.mkdir(parents=True, mode=0o700)  # its logs and records are the agent's (see local_runas)
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
    return _Attempt(spec=spec, dir=adir, ranks=ranks, started_at=clock())


def _failure_message(a: _Attempt, rank: int, code: int, oom_gib: float | None = None) -> str:
    """Why the attempt failed, in words; ``oom_gib``: the rank was killed for going past this
    much memory (0: its limit is not known)."""
    if oom_gib is not None:
        limit = f"{oom_gib:g} GiB memory" if oom_gib else "its memory limit"
        where = f" on rank {rank}" if len(a.ranks) > 1 else ""
        return f"killed: exceeded {limit}{where} ({'setup' if a.phase == 'setup' else 'run'} exited with code {code})"
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
