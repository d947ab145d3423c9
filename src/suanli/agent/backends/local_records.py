"""The local backend's ``attempt.json``: one per attempt, enough for a restarted agent to find
the attempt's processes again and adopt it (``LocalBackend.adopt``).

It records the phase and state, each rank's supervisor pid (= its process group), how far the
server has accepted each rank's log, whether the attempt was being stopped, and the assignment
itself without the job's secrets: only their names (secrets are never at rest at a site; the
running ranks have them in their environment and the supervisors mask them in the logs). A
restarted agent that adopts an attempt still in setup cannot start its run: it reports it LOST
and the server retries the job. The file is written with mode 0600 all the same.
``_save`` writes it, replacing it atomically; ``_restore`` rebuilds the attempt from it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from suanli.agent.backends.local_proc import _free_port, _is_supervisor, _job_environment, _reap_adopted
from suanli.agent.backends.local_runas import RunAs
from suanli.agent.backends.local_state import _Attempt, _lost_if_cancelled, _Rank, _Stop
from suanli.agent.backends.logstream import Utf8Stream
from suanli.agent.backends.staging import write_private
from suanli.core.protocol import AttemptAssignment
from suanli.core.states import AttemptState

log = logging.getLogger("suanli.agent.local")


def _save(a: _Attempt, clock: Callable[[], float]) -> None:
    """``attempt.json``, replaced atomically: enough to find and re-adopt the processes. It
    holds the job's secrets (see the module's docstring), so only the agent's user reads it.
    ``clock``: the backend's monotonic clock, which ``a.started_at`` is on."""
    record = {
        "attempt_id": a.spec.attempt_id,
        "fencing_token": a.spec.fencing_token,
        "job_id": a.spec.job_id,
        "phase": a.phase,
        "state": a.state.value,
        "exit_code": a.exit_code,
        "message": a.message,
        "started_at": time.time() - (clock() - a.started_at),
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
        "assignment": a.spec.model_dump(mode="json", exclude={"secrets"}),
        "secret_names": sorted(a.spec.secrets) or (["?"] if a.secrets_missing else []),
    }
    try:
        write_private(a.dir / "attempt.json", json.dumps(record, indent=2))
    except OSError as exc:
        log.warning("cannot write the record of attempt %s: %s", a.spec.attempt_id, exc)


def _restore(
    adir: Path,
    record: dict[str, object],
    *,
    clock: Callable[[], float],
    kill_grace_s: float,
    user_for: Callable[[AttemptAssignment], RunAs | None],
    sandboxed: bool = False,
) -> _Attempt:
    """The attempt ``record`` (read from ``adir/attempt.json``) describes, its live ranks held
    by pid; a rank whose supervisor is gone is reaped from its exit file at once. Raises
    KeyError, ValueError or TypeError on a record it cannot read."""
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
                _reap_adopted(adir, phase, r)  # ended while no agent watched
        ranks.append(r)
    started = float(record["started_at"])  # type: ignore[arg-type]
    a = _Attempt(spec=spec, dir=adir, ranks=ranks, started_at=clock() - max(0.0, time.time() - started))
    a.phase, a.state = phase, AttemptState(str(record["state"]))
    a.secrets_missing = bool(record.get("secret_names")) and not spec.secrets
    code = record.get("exit_code")
    a.exit_code = code if isinstance(code, int) else None
    a.message = str(record.get("message") or "")
    ckpt = record.get("checkpoint_dir")
    a.checkpoint_dir = Path(str(ckpt)) if ckpt else adir / "checkpoint"
    a.master_port = int(record.get("master_port") or 0)  # type: ignore[call-overload]
    if phase != "done":
        user = user_for(spec)
        a.env = _job_environment(
            spec, a.checkpoint_dir, a.master_port or _free_port(), user, a.workdir, sandboxed=sandboxed
        )
    stopping = record.get("stopping")
    if phase != "done" and isinstance(stopping, dict):
        a.stop = _Stop(_lost_if_cancelled(AttemptState(stopping["state"])), str(stopping.get("message") or ""))
        a.kill_at = clock() + kill_grace_s  # the SIGTERM went out before the restart
    elif phase == "done":
        a.state = _lost_if_cancelled(a.state)
    return a
