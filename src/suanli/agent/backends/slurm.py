"""SlurmBackend: attempts as Slurm batch jobs, beside the site's own users of the cluster.

The agent runs on a login node. Each attempt becomes one batch job (``sbatch``, or slurmrestd's
``job/submit``) whose script runs ``setup`` then ``run`` with ``srun`` on every node, one task
per node; a multi-node attempt is one gang, as Slurm allocates it. The script gives each rank
the job environment of docs/job-spec.md: ``SUANLI_NODE_RANK`` from ``SLURM_PROCID``, ``SUANLI_MASTER_ADDR`` the
first host of ``SLURM_JOB_NODELIST``; Slurm sets ``CUDA_VISIBLE_DEVICES`` from ``--gres``.

Mapping (squeue → attempt): PENDING/CONFIGURING → STARTING (with Slurm's reason), RUNNING → STARTING
while setup runs and RUNNING after, COMPLETED → SUCCEEDED, FAILED/TIMEOUT/OUT_OF_MEMORY/… → FAILED
with a message, CANCELLED → CANCELLED (exit code -15), NODE_FAIL → LOST, PREEMPTED → PREEMPTED.
A job the controller has forgotten (``MinJobAge``) is looked up in ``sacct``.

Logs: ``srun --output`` writes one file per rank into the attempt folder (``rank-<r>.log``),
read incrementally with the same offsets as the local backend, so ``work_dir`` must be on a file
system that the compute nodes and the login node share. ``cancel`` is ``scancel``: Slurm sends
SIGTERM, and SIGKILL after its own ``KillWait`` (the site's grace period, not the server's).

Each job is named ``suanli-<job id>-<attempt number>`` and carries ``--comment=suanli-site=<site>``:
an agent that starts cancels the live jobs of its site that it does not hold
(``EngineBackend.sweep_orphans``).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.base import AttemptUsage, GpuAccounting, KeptCheckpoints, MultiNode, RunsContainers
from suanli.agent.backends.engine import JOB_PREFIX, EngineAttempt, EngineBackend, EngineJob, run_seconds, site_marker
from suanli.agent.backends.logstream import Utf8Stream
from suanli.agent.backends.slurm_api import (
    JobRequest,
    SlurmApi,
    SlurmCli,
    SlurmJob,
    SlurmRejected,
    parse_gres,
)
from suanli.agent.backends.staging import (
    RankLog,
    job_environment,
    kept_checkpoint_dir,
    note,
    stage_attempt,
)
from suanli.core.images import parse_image
from suanli.core.protocol import AssignedNode, AttemptAssignment, LogChunk, NodeReport
from suanli.core.states import AttemptState

log = logging.getLogger("suanli.agent.slurm")

_HEALTHY = {"idle", "mixed", "allocated", "completing", "reserved"}
_SICK_FLAGS = {"DRAIN", "DRAINING", "DRAINED", "FAIL", "FAILING", "NOT_RESPONDING", "POWERED_DOWN", "MAINTENANCE"}
_LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "STOPPED", "SIGNALING"}

# The batch script: setup then run on every node (one task each), the first failure ends the gang.
_BATCH = """#!/bin/bash
# suanli attempt {attempt_id} of job {job_id} (written by the agent; Slurm runs it on the first node)
D={dir}
export SUANLI_MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
export SUANLI_MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
step() {{
  srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 --open-mode=append \\
    --output="$D/rank-%t.log" --error="$D/rank-%t.log"{container} bash "$D/rank.sh" "$1"
}}
if [ -s "$D/setup.sh" ]; then
  step setup; rc=$?
  if [ $rc -ne 0 ]; then echo "setup $rc" >"$D/result"; exit $rc; fi
fi
touch "$D/running"
step run; rc=$?
echo "run $rc" >"$D/result"
exit $rc
"""

_RANK = """#!/bin/bash
# One rank: the job environment of docs/job-spec.md, then the job's setup or run in its workdir.
export SUANLI_NODE_RANK="${{SLURM_PROCID:-${{SLURM_NODEID:-0}}}}"
export SUANLI_NODE_NAME="$(hostname -s)"
export SUANLI_NUM_GPUS_PER_NODE={gpus}
cd {workdir} || exit 1
exec bash {dir}/"$1".sh
"""


@dataclass(kw_only=True)
class _Attempt(EngineAttempt):
    """An attempt as one Slurm job: its rank logs and what Slurm said of the job last.
    ``elapsed_s``: how long the job has held its allocation (Slurm's start to now, or to its end)."""

    logs: list[RankLog]
    job_id: int | None = None
    #: When the controller forgot it and sacct was asked (monotonic), to ask again later.
    missing_since: float | None = None
    usage: AttemptUsage | None = None
    slurm: SlurmJob | None = field(default=None, repr=False)

    @property
    def engine_id(self) -> int | None:
        return self.job_id


class SlurmBackend(EngineBackend[_Attempt], MultiNode, GpuAccounting, KeptCheckpoints, RunsContainers):
    """Runs attempts as Slurm jobs. ``api``: ``SlurmCli()`` (the default) or ``SlurmRest(...)``.

    ``partition``/``account``: where the jobs go (the site's config). ``gpu_type``: the type
    to report for nodes whose gres has none (``Gres=gpu:4``). ``cpus_per_task`` and
    ``mem_per_node_gib``: asked for jobs whose assignment does not carry their own request;
    None leaves Slurm's defaults (``DefMemPerCPU``). ``pin_nodes``: ask for the nodes the server
    placed the attempt on (``--nodelist``), so the server's picture of the site stays true.
    ``refresh_s``: how stale squeue's answer may be (poll is called ten times a second).
    ``oci_bundles``: a folder the nodes share holding one OCI bundle per image (``bundle_for``),
    for Slurm's ``--container`` (22.05+: ``oci.conf`` must name the runtime, e.g. runc); None:
    this site runs no jobs that name an ``image:``.
    """

    name = "slurm"
    engine = "Slurm"
    _log = log

    def __init__(
        self,
        work_dir: Path,
        api: SlurmApi | None = None,
        *,
        partition: str | None = None,
        account: str | None = None,
        gpu_type: str | None = None,
        cpus_per_task: float | None = None,
        mem_per_node_gib: float | None = None,
        pin_nodes: bool = True,
        extra_args: Sequence[str] = (),
        oci_bundles: Path | None = None,
        refresh_s: float = 0.2,
        forgotten_grace_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(work_dir, refresh_s=refresh_s, clock=clock)
        self.api = api or SlurmCli()
        self.partition, self.account, self.gpu_type = partition, account, gpu_type
        self.cpus_per_task, self.mem_per_node_gib = cpus_per_task, mem_per_node_gib
        self.pin_nodes, self.extra_args = pin_nodes, tuple(extra_args)
        self.oci_bundles = oci_bundles
        self._forgotten_grace_s = forgotten_grace_s
        self._node_types: dict[str, str | None] = {}

    # -- KeptCheckpoints ------------------------------------------------------------------
    def checkpoint_dir(self, assignment: AttemptAssignment) -> Path | None:
        return kept_checkpoint_dir(self.work_dir, assignment)

    # -- RunsContainers -------------------------------------------------------------------
    def containers_available(self) -> bool | None:
        """No without ``oci_bundles``; otherwise the network file's ``containers:`` decides."""
        return None if self.oci_bundles is not None else False

    def bundle_for(self, image: str) -> Path | None:
        """The OCI bundle of ``image`` under ``oci_bundles``: the reference with every character
        but letters, digits, '.', '_' and '-' as '_' (``localhost/train:1`` → ``localhost_train_1``);
        an archive's file name without its extension. None: no such bundle here."""
        if self.oci_bundles is None:
            return None
        ref = parse_image(image)
        stem = Path(ref.path).name.split(".")[0] if ref.path else ref.text
        bundle = self.oci_bundles / re.sub(r"[^A-Za-z0-9._-]", "_", stem)
        return bundle if (bundle / "config.json").is_file() else None

    # -- Backend --------------------------------------------------------------------------
    def inventory(self) -> list[NodeReport]:
        reports = []
        for n in self.api.nodes():
            if self.partition and self.partition not in n.partitions:
                continue
            gres_type, gpus = parse_gres(n.gres)
            self._node_types[n.name] = gres_type
            sick = n.state not in _HEALTHY or bool(_SICK_FLAGS & set(n.flags))
            words = " ".join([n.state.upper(), *n.flags]).strip()
            reports.append(
                NodeReport(
                    name=n.name,
                    gpu_type=(gres_type or self.gpu_type or "GPU") if gpus else None,
                    gpus_total=gpus,
                    cpus=float(n.cpus),
                    memory=round(n.memory_mb / 1024, 1),
                    healthy=not sick,
                    reason=f"Slurm says {words}" + (f": {n.reason}" if n.reason else "") if sick else "",
                    gpu_source="slurm",
                )
            )
        return reports

    def start(self, assignment: AttemptAssignment, workdir_archive: Path | None) -> None:
        with self._lock:
            if assignment.attempt_id in self._attempts:
                return
            staged = stage_attempt(self.work_dir, assignment, workdir_archive)
            ranks = max(1, len(assignment.nodes))
            a = _Attempt(
                spec=assignment,
                dir=staged.dir,
                logs=[
                    RankLog(rank=r, path=staged.dir / f"rank-{r}.log", stream=Utf8Stream(assignment.secrets.values()))
                    for r in range(ranks)
                ],
            )
            self._attempts[assignment.attempt_id] = a
            problem = staged.problem or self._image_problem(assignment)
            if problem:
                self._fail(a, problem)
                return
            request = self._request(a, staged.workdir, staged.checkpoint_dir)
            try:
                a.job_id = self.api.submit(request)
            except SlurmRejected as exc:
                self._fail(a, f"Slurm refused the job: {exc}")
                return
            self._save(a)
            self._seen_at = -1e9  # look at once
            log.info("attempt %s of job %s is Slurm job %s", assignment.attempt_id, assignment.job_id, a.job_id)

    def read_logs(self, max_bytes: int = 256 * 1024) -> list[LogChunk]:
        with self._lock:
            pending = [(a, r) for a in self._attempts.values() for r in a.logs if not r.drained]
            if not pending:
                return []
            share = max(4096, max_bytes // len(pending))
            budget, chunks = max_bytes, []
            for a, r in pending:
                if budget <= 0:
                    break
                chunk, cost = r.read(a.spec.attempt_id, a.spec.fencing_token, min(share, budget), a.ended)
                budget -= cost
                if chunk is not None:
                    chunks.append(chunk)
            return chunks

    def logs_drained(self, attempt_id: int) -> bool:
        with self._lock:
            a = self._attempts.get(attempt_id)
            return a is None or (a.ended and all(r.drained for r in a.logs))

    def forget(self, attempt_id: int) -> None:
        with self._lock:
            a = self._attempts.pop(attempt_id, None)
            if a is None:
                return
            if not a.ended and a.job_id is not None:
                log.warning("forgetting attempt %s while Slurm job %s runs: cancelling it", attempt_id, a.job_id)
                self.api.cancel(a.job_id)
            shutil.rmtree(a.dir, ignore_errors=True)

    # -- GpuAccounting --------------------------------------------------------------------
    def usage(self, attempt_id: int) -> AttemptUsage | None:
        """From ``sacct`` once the job has ended: elapsed time and AllocTRES."""
        with self._lock:
            a = self._attempts.get(attempt_id)
            if a is None or a.job_id is None or not a.ended:
                return None
            if a.usage is None:
                job = self.api.accounting([a.job_id]).get(a.job_id)
                # slurmdbd may list the job before its AllocTRES: not accounted until they are
                # there (a record without them would meter 0 GPUs).
                if job is None or job.elapsed_s is None or not job.allocated:
                    return None
                node_names = [n.node for n in a.spec.nodes]
                a.usage = AttemptUsage(
                    elapsed_s=job.elapsed_s,
                    allocated=dict(job.allocated),
                    gpus=int(job.allocated.get("gres/gpu", 0)),
                    gpu_type=a.spec.gpu_type,
                    cpus=job.allocated.get("cpu", 0.0),
                    nodes=int(job.allocated.get("node", len(node_names) or 1)),
                )
            return a.usage

    # -- inside ---------------------------------------------------------------------------
    def _request(self, a: _Attempt, workdir: Path, checkpoint_dir: Path) -> JobRequest:
        spec = a.spec
        gpus = max((len(n.gpu_indices) for n in spec.nodes), default=0)
        (a.dir / "setup.sh").write_text(spec.setup or "", encoding="utf-8")
        (a.dir / "run.sh").write_text(spec.run, encoding="utf-8")
        (a.dir / "rank.sh").write_text(
            _RANK.format(gpus=gpus, workdir=shlex.quote(str(workdir)), dir=shlex.quote(str(a.dir))), encoding="utf-8"
        )
        batch = a.dir / "batch.sh"
        bundle = self.bundle_for(spec.image) if spec.image else None
        container = f" --container={shlex.quote(str(bundle))}" if bundle is not None else ""
        batch.write_text(
            _BATCH.format(
                attempt_id=spec.attempt_id, job_id=spec.job_id, dir=shlex.quote(str(a.dir)), container=container
            ),
            encoding="utf-8",
        )
        typed = any(self._node_types.get(n.node) for n in spec.nodes)
        # The job's own request (what the scheduler reserved per node) wins over the site default.
        first = spec.nodes[0] if spec.nodes else AssignedNode(node="", rank=0)
        mem_gib = first.memory_gib or self.mem_per_node_gib
        return JobRequest(
            name=f"{JOB_PREFIX}{spec.job_id}-{spec.attempt_number}",
            script=batch,
            workdir=workdir,
            output=a.dir / "batch.log",
            env=job_environment(spec, checkpoint_dir),
            nodes=max(1, len(spec.nodes)),
            gpus_per_node=gpus,
            gpu_type=spec.gpu_type if typed else None,
            cpus_per_task=first.cpus or self.cpus_per_task,
            mem_per_node_mb=int(mem_gib * 1024) if mem_gib else None,
            time_limit_s=spec.time_limit_s,
            partition=self.partition,
            account=self.account,
            nodelist=[n.node for n in spec.nodes] if self.pin_nodes and self._pinnable(spec) else (),
            extra_args=self.extra_args,
            comment=site_marker(self.site_name) if self.site_name else None,
        )

    def _image_problem(self, spec: AttemptAssignment) -> str | None:
        if not spec.image:
            return None
        where = f"site {self.site_name}" if self.site_name else "this site"
        if self.oci_bundles is None:
            return f"image {spec.image}: {where} runs no containers (its agent's slurm.oci_bundles is not set)"
        if self.bundle_for(spec.image) is None:
            return (
                f"image {spec.image} not found at {where}: no OCI bundle for it under {self.oci_bundles}; "
                "ask its operator to unpack it there (e.g. `umoci unpack`), or name an image the site has"
            )
        return None

    def _pinnable(self, spec: AttemptAssignment) -> bool:
        """Pin only to nodes Slurm has (an assignment from a declared network may name others)."""
        if not self._node_types:
            try:
                self.inventory()
            except Exception as exc:  # pinning is an optimisation: submit unpinned
                log.debug("cannot list Slurm's nodes to pin attempt %s: %s", spec.attempt_id, exc)
                return False
        return all(n.node in self._node_types for n in spec.nodes)

    def _stop(self, a: _Attempt) -> None:
        """``scancel``; the grace period is Slurm's ``KillWait``."""
        if a.job_id is not None:
            self.api.cancel(a.job_id)

    def _list_jobs(self) -> list[EngineJob]:
        """``squeue``: every job the controller holds; the site from ``--comment``."""
        marker = site_marker("")
        return [
            EngineJob(
                engine_id=job.job_id,
                name=job.name,
                site=job.comment[len(marker) :] if job.comment.startswith(marker) else None,
                live=job.state.upper() in _LIVE,
            )
            for job in self.api.jobs().values()
        ]

    def _cancel_job(self, engine_id: int | str) -> None:
        self.api.cancel(int(engine_id))

    def _ask_engine(self, live: list[_Attempt], now: float) -> None:
        """``squeue`` for all, then ``sacct`` for the jobs the controller has forgotten."""
        jobs = self.api.jobs()
        self._seen_at = now
        missing = []
        for a in live:
            job = jobs.get(a.job_id) if a.job_id is not None else None
            if job is None:
                a.missing_since = a.missing_since if a.missing_since is not None else now
                missing.append(a)
            else:
                self._apply(a, job)
        if missing:  # the controller forgot them (MinJobAge): ask the accounting database
            known = self.api.accounting([a.job_id for a in missing if a.job_id is not None])
            for a in missing:
                job = known.get(a.job_id) if a.job_id is not None else None
                if job is not None:
                    self._apply(a, job)
                elif a.missing_since is not None and now - a.missing_since > self._forgotten_grace_s:
                    self._end(a, AttemptState.LOST, None, f"Slurm has no record of job {a.job_id} any more")

    def _apply(self, a: _Attempt, job: SlurmJob) -> None:
        a.slurm = job
        state = job.state.upper()
        if job.start_time > 0 and state != "PENDING":
            a.elapsed_s = run_seconds(job.start_time, None if state in _LIVE else job.end_time, time.time())
        if state in _LIVE:
            if state == "PENDING":
                a.state = AttemptState.STARTING
                a.message = f"queued in Slurm ({job.reason})" if job.reason not in ("", "None") else "queued in Slurm"
            elif state == "RUNNING":
                a.state = AttemptState.RUNNING if (a.dir / "running").exists() else AttemptState.STARTING
                a.message = ""
            return
        phase, code = self._result(a)
        code = code if code is not None else job.exit_code
        if state == "COMPLETED":
            self._succeeded(a)
        elif state == "CANCELLED":
            self._cancelled(a, "cancelled in Slurm")
        elif state == "TIMEOUT":
            self._timed_out(a, code)
        elif state == "OUT_OF_MEMORY":
            self._end(a, AttemptState.FAILED, code, "ran out of memory (Slurm OUT_OF_MEMORY)", note_it=True)
        elif state == "NODE_FAIL":
            self._end(a, AttemptState.LOST, code, f"a node failed under Slurm job {job.job_id}")
        elif state == "PREEMPTED":
            self._end(a, AttemptState.PREEMPTED, code, "preempted by Slurm")
        elif state == "FAILED" and code is not None:
            self._exited(a, phase or "run", code, " on some rank" if len(a.logs) > 1 else "")
        else:
            self._end(
                a, AttemptState.FAILED, code, f"Slurm ended job {job.job_id} as {state} ({job.reason})", note_it=True
            )

    def _result(self, a: _Attempt) -> tuple[str | None, int | None]:
        """What the batch script wrote at its end: the phase and srun's exit code."""
        try:
            phase, code = (a.dir / "result").read_text().split()
            return phase, int(code)
        except (OSError, ValueError):
            return None, None

    def _ended(self, a: _Attempt, note_it: bool) -> None:
        """The note goes into rank 0's log; ``attempt.json`` records the end."""
        if note_it:
            note(a.logs[0].path, a.message)
        self._save(a)

    def _fail(self, a: _Attempt, message: str) -> None:
        log.warning("attempt %s of job %s failed before starting: %s", a.spec.attempt_id, a.spec.job_id, message)
        self._end(a, AttemptState.FAILED, None, message, note_it=True)

    def _save(self, a: _Attempt) -> None:
        """``attempt.json``: which Slurm job holds the attempt (for operators and re-adoption)."""
        record = {
            "attempt_id": a.spec.attempt_id,
            "fencing_token": a.spec.fencing_token,
            "job_id": a.spec.job_id,
            "slurm_job_id": a.job_id,
            "state": a.state.value,
            "exit_code": a.exit_code,
            "message": a.message,
            "assignment": a.spec.model_dump(mode="json", exclude={"secrets"}),  # never on disk in clear
        }
        try:
            (a.dir / "attempt.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write the record of attempt %s: %s", a.spec.attempt_id, exc)
