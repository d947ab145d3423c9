"""RayBackend: attempts as Ray jobs, through the cluster's Job Submission API.

The agent runs beside the head node and talks to its dashboard (``http://127.0.0.1:8265`` by
default). Each attempt is one Ray job: its workdir is the job's ``runtime_env.working_dir``
(Ray uploads it), its environment ``runtime_env.env_vars``, its GPUs ``entrypoint_num_gpus`` or,
on clusters that name them otherwise (tests use ``GPU_fake``), ``entrypoint_resources``. The
entrypoint runs ``setup`` then ``run`` in one shell. Ray runs an entrypoint on one node, so
this backend takes single-node attempts (no ``MultiNode``): a distributed program inside the
job uses Ray itself.

``ray[default]`` is an optional extra (``pip install 'suanli[ray]'``), imported only when the
first job is submitted; the inventory comes from the dashboard's HTTP API with httpx.

Mapping (Ray → attempt): PENDING → STARTING, RUNNING → RUNNING, SUCCEEDED → SUCCEEDED,
FAILED → FAILED (with the driver's exit code), STOPPED → CANCELLED (exit code -15). Ray has no
time limit: the backend stops a job past ``time_limit_s`` and reports it FAILED.

Logs: Ray keeps one log per job, fetched whole (``get_job_logs``); the backend returns what is
new, with byte offsets as the local backend's, after dropping Ray's own lines from it, and with
the job's secrets masked.

Secrets do not go into ``env_vars``, which Ray shows on its dashboard and in ``ray job list``:
they travel in the uploaded workdir as ``.suanli-secrets.sh`` (mode 0600), which the entrypoint
sources and deletes before setup runs; the agent deletes its own copy once Ray has the upload.

Each job's submission id is ``suanli-<job id>-a<attempt id>-<6 hex>`` and its metadata names the
site (``suanli_site``): an agent that starts stops the live jobs of its site that it does not
hold (``EngineBackend.sweep_orphans``).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import httpx

from suanli import adaptors
from suanli.agent.backends.base import KeptCheckpoints, RunsContainers
from suanli.agent.backends.engine import (
    CANCELLED_EXIT_CODE,
    JOB_PREFIX,
    EngineAttempt,
    EngineBackend,
    EngineJob,
    run_seconds,
)
from suanli.agent.backends.logstream import Utf8Stream
from suanli.agent.backends.staging import (
    job_environment,
    kept_checkpoint_dir,
    note,
    secrets_script,
    stage_attempt,
    write_private,
)
from suanli.core.errors import SuanliError
from suanli.core.protocol import AttemptAssignment, LogChunk, NodeReport
from suanli.core.states import AttemptState

log = logging.getLogger("suanli.agent.ray")

#: Control lines the entrypoint prints; they never reach the user's log.
_MARK = "\x1esuanli:"
_BEGIN = f"{_MARK}begin\n"
_SETUP_FAILED = f"{_MARK}setup-failed\n"
_SECRETS_FILE = ".suanli-secrets.sh"
_ENTRY = """printf '\\036suanli:begin\\n'
if [ -f .suanli-secrets.sh ]; then . ./.suanli-secrets.sh; rm -f .suanli-secrets.sh; fi
if [ -s .suanli-setup.sh ]; then
  bash .suanli-setup.sh; rc=$?
  if [ $rc -ne 0 ]; then printf '\\036suanli:setup-failed\\n'; exit $rc; fi
fi
exec bash .suanli-run.sh
"""
_ENTRYPOINT = "bash .suanli-entry.sh"


class RayUnavailable(SuanliError):
    """The Ray cluster cannot be reached, or ``ray[default]`` is not installed."""


class RayJobs(Protocol):
    """What the backend uses of ``ray.job_submission.JobSubmissionClient``."""

    def submit_job(self, **kwargs: Any) -> str: ...

    def get_job_info(self, job_id: str) -> Any: ...

    def get_job_logs(self, job_id: str) -> str: ...

    def list_jobs(self) -> list[Any]: ...

    def stop_job(self, job_id: str) -> bool: ...

    def delete_job(self, job_id: str) -> bool: ...


def connect(address: str) -> RayJobs:
    """A Job Submission client for ``address``; imports Ray here, not at suanli's import."""
    try:
        job_submission = adaptors.ray_job_submission()
    except adaptors.Missing as exc:
        raise RayUnavailable(str(exc)) from exc
    try:
        client = cast(RayJobs, job_submission.JobSubmissionClient(address))
    except Exception as exc:  # ConnectionError, RuntimeError: Ray raises several kinds
        raise RayUnavailable(f"cannot reach Ray's Job Submission API at {address}: {exc}") from exc
    return client


@dataclass
class _Log:
    """The user's part of Ray's job log, as a growing byte stream."""

    stream: Utf8Stream = field(default_factory=Utf8Stream)
    text: bytes = b""
    #: ``text`` was fetched after the job ended: it is the whole log.
    complete: bool = False
    #: When ``text`` was fetched (the agent reads ten times a second; Ray sends the whole log).
    fetched_at: float = -1e9
    drained: bool = False


@dataclass(kw_only=True)
class _Attempt(EngineAttempt):
    """An attempt as one Ray job. ``elapsed_s``: seconds since Ray started the job (to its end
    once ended)."""

    started_at: float
    submission_id: str | None = None
    timed_out: bool = False
    log: _Log = field(default_factory=_Log)

    @property
    def engine_id(self) -> str | None:
        return self.submission_id


def user_output(raw: str, submission_id: str, ended: bool) -> str:
    """Ray's job log without Ray's own lines: everything before the entrypoint's first line,
    the "Running entrypoint" line and suanli's control lines go. While the job runs, a trailing
    partial line that may still become one of those is held back."""
    start = raw.find(_BEGIN)
    if start < 0:
        return ""
    text = raw[start + len(_BEGIN) :]
    text = text.replace(f"Running entrypoint for job {submission_id}: {_ENTRYPOINT}\n", "", 1)
    text = text.replace(_SETUP_FAILED, "")
    if not ended:
        tail = text.rsplit("\n", 1)[-1]
        if tail and (_MARK.startswith(tail[: len(_MARK)]) or "Running entrypoint for job".startswith(tail[:26])):
            text = text[: len(text) - len(tail)]
    return text


class RayBackend(EngineBackend[_Attempt], KeptCheckpoints, RunsContainers):
    """Runs attempts as Ray jobs on the cluster whose dashboard is at ``address``.

    ``gpu_resource``: the Ray resource that counts GPUs (``GPU``; ``GPU_fake`` in the tests).
    ``gpu_type``: the type to report when the nodes carry no ``accelerator_type:*`` resource.
    ``cpus_per_job``: ``entrypoint_num_cpus`` for every job (None: Ray's default, 0).
    ``jobs``: a client to use instead of connecting (tests).
    ``containers``: the cluster's nodes have podman, so a job's ``image:`` goes to Ray as
    ``runtime_env.image_uri`` (Ray runs the job's tasks and actors in it; the entrypoint itself
    runs on the head node as usual). False: this site runs no jobs that name an image.
    """

    name = "ray"
    engine = "Ray"
    _log = log

    def __init__(
        self,
        work_dir: Path,
        address: str = "http://127.0.0.1:8265",
        *,
        gpu_resource: str = "GPU",
        gpu_type: str | None = None,
        cpus_per_job: float | None = None,
        jobs: RayJobs | None = None,
        containers: bool = False,
        refresh_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(work_dir, refresh_s=refresh_s, clock=clock)
        self.address = address.rstrip("/")
        self.gpu_resource, self.gpu_type, self.cpus_per_job = gpu_resource, gpu_type, cpus_per_job
        self._jobs = jobs
        self.containers = containers

    def containers_available(self) -> bool | None:
        """RunsContainers: no unless configured; then the network file's ``containers:`` decides."""
        return None if self.containers else False

    @property
    def jobs(self) -> RayJobs:
        if self._jobs is None:
            self._jobs = connect(self.address)
        return self._jobs

    # -- Backend --------------------------------------------------------------------------
    def checkpoint_dir(self, assignment: AttemptAssignment) -> Path | None:
        """KeptCheckpoints: the folder ``stage_attempt`` gives the job."""
        return kept_checkpoint_dir(self.work_dir, assignment)

    def inventory(self) -> list[NodeReport]:
        try:
            r = httpx.get(f"{self.address}/api/v0/nodes", params={"limit": 10000}, timeout=10)
            r.raise_for_status()
            rows = r.json()["data"]["result"]["result"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise RayUnavailable(f"cannot list the Ray cluster's nodes at {self.address}: {exc}") from exc
        reports = []
        for n in rows:
            res: dict[str, float] = n.get("resources_total") or {}
            gpus = int(res.get(self.gpu_resource, 0))
            accel = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")), None)
            alive = n.get("state") == "ALIVE"
            reports.append(
                NodeReport(
                    name=str(n.get("node_name") or n.get("node_ip") or n.get("node_id")),
                    gpu_type=(accel or self.gpu_type or "GPU") if gpus else None,
                    gpus_total=gpus,
                    cpus=float(res.get("CPU", 0)),
                    memory=round(float(res.get("memory", 0)) / 2**30, 1),
                    healthy=alive,
                    reason="" if alive else f"Ray says the node is {n.get('state')}: {n.get('state_message') or ''}",
                    gpu_source="ray",
                )
            )
        return reports

    def start(self, assignment: AttemptAssignment, workdir_archive: Path | None) -> None:
        with self._lock:
            if assignment.attempt_id in self._attempts:
                return
            staged = stage_attempt(self.work_dir, assignment, workdir_archive)
            a = _Attempt(spec=assignment, dir=staged.dir, started_at=self._clock())
            a.log.stream = Utf8Stream(assignment.secrets.values())
            self._attempts[assignment.attempt_id] = a
            problem = staged.problem
            if problem is None and len(assignment.nodes) > 1:
                problem = (
                    f"the Ray backend runs an attempt on one node, and this one asks for {len(assignment.nodes)}; "
                    "use num_nodes: 1 and Ray's own API for distributed work, or a Slurm site"
                )
            if problem is None and assignment.image and not self.containers:
                where = f"site {self.site_name}" if self.site_name else "this site"
                problem = f"image {assignment.image}: {where} runs no containers (its agent's ray.containers is false)"
            if problem:
                self._end(a, AttemptState.FAILED, None, problem)
                return
            (staged.workdir / ".suanli-entry.sh").write_text(_ENTRY, encoding="utf-8")
            (staged.workdir / ".suanli-setup.sh").write_text(assignment.setup or "", encoding="utf-8")
            (staged.workdir / ".suanli-run.sh").write_text(assignment.run, encoding="utf-8")
            secrets_file = staged.workdir / _SECRETS_FILE
            if assignment.secrets:
                write_private(secrets_file, secrets_script(assignment.secrets))
            env = job_environment(assignment, staged.checkpoint_dir, inherit=False, secrets=False)
            gpus = max((len(n.gpu_indices) for n in assignment.nodes), default=0)
            env.update(SUANLI_NODE_RANK="0", SUANLI_MASTER_ADDR="127.0.0.1", SUANLI_NUM_GPUS_PER_NODE=str(gpus))
            options: dict[str, Any] = {}
            if gpus and self.gpu_resource == "GPU":
                options["entrypoint_num_gpus"] = gpus  # Ray sets CUDA_VISIBLE_DEVICES
            elif gpus:
                options["entrypoint_resources"] = {self.gpu_resource: gpus}
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for n in assignment.nodes[:1] for i in n.gpu_indices)
            if self.cpus_per_job:
                options["entrypoint_num_cpus"] = self.cpus_per_job
            sid = f"{JOB_PREFIX}{assignment.job_id}-a{assignment.attempt_id}-{uuid.uuid4().hex[:6]}"
            runtime_env: dict[str, Any] = {"working_dir": str(staged.workdir), "env_vars": env}
            if assignment.image:
                runtime_env["image_uri"] = assignment.image  # podman on the nodes; never pulled by suanli
            try:
                a.submission_id = self.jobs.submit_job(
                    entrypoint=_ENTRYPOINT,
                    submission_id=sid,
                    runtime_env=runtime_env,
                    metadata=self._metadata(assignment),
                    **options,
                )
            except RayUnavailable:
                raise
            except (ConnectionError, OSError) as exc:
                raise RayUnavailable(f"cannot submit to Ray at {self.address}: {exc}") from exc
            except Exception as exc:  # Ray raises RuntimeError for a job it refuses
                self._end(a, AttemptState.FAILED, None, f"Ray refused the job: {exc}")
                return
            finally:
                secrets_file.unlink(missing_ok=True)  # Ray has its upload by now
            self._seen_at = -1e9
            log.info("attempt %s of job %s is Ray job %s", assignment.attempt_id, assignment.job_id, sid)

    def read_logs(self, max_bytes: int = 256 * 1024) -> list[LogChunk]:
        with self._lock:
            chunks: list[LogChunk] = []
            budget = max_bytes
            for a in self._attempts.values():
                if budget <= 0:
                    break
                if a.log.drained:
                    continue
                ended = a.ended  # before fetching: no output is written after this
                now = self._clock()
                read_all = len(a.log.text) <= a.log.stream.consumed
                stale = (read_all and now - a.log.fetched_at >= self._refresh_s) or (ended and not a.log.complete)
                if a.submission_id is not None and stale:
                    raw = self.jobs.get_job_logs(a.submission_id)
                    a.log.text = user_output(raw, a.submission_id, ended).encode()
                    a.log.complete, a.log.fetched_at = ended, now
                elif a.submission_id is None:
                    a.log.complete = ended
                data = a.log.text
                take = max(0, min(a.log.stream.room(budget), len(data) - a.log.stream.consumed))
                final = a.log.complete and a.log.stream.consumed + take >= len(data)
                offset, text = a.log.stream.feed(data[a.log.stream.consumed : a.log.stream.consumed + take], final)
                budget -= take + a.log.stream.held
                a.log.drained = final
                if text:
                    chunks.append(
                        LogChunk(
                            attempt_id=a.spec.attempt_id,
                            fencing_token=a.spec.fencing_token,
                            rank=0,
                            offset=offset,
                            data=text,
                        )
                    )
            return chunks

    def logs_drained(self, attempt_id: int) -> bool:
        with self._lock:
            a = self._attempts.get(attempt_id)
            return a is None or (a.ended and a.log.drained)

    def forget(self, attempt_id: int) -> None:
        with self._lock:
            a = self._attempts.pop(attempt_id, None)
            if a is None:
                return
            if a.submission_id is not None:
                try:
                    if not a.ended:
                        self.jobs.stop_job(a.submission_id)
                    else:
                        self.jobs.delete_job(a.submission_id)
                except Exception as exc:  # cleanup only: the job's record stays in Ray
                    log.debug("cannot remove Ray job %s: %s", a.submission_id, exc)
            shutil.rmtree(a.dir, ignore_errors=True)

    # -- inside ---------------------------------------------------------------------------
    def _metadata(self, assignment: AttemptAssignment) -> dict[str, str]:
        """The job's metadata in Ray: the suanli job and attempt, and the site (the sweep's marker)."""
        metadata = {"suanli_job": assignment.job_id, "suanli_attempt": str(assignment.attempt_id)}
        if self.site_name:
            metadata["suanli_site"] = self.site_name
        return metadata

    def _list_jobs(self) -> list[EngineJob]:
        """``list_jobs``: every job Ray knows; the site from ``metadata.suanli_site``."""
        jobs = []
        for info in self.jobs.list_jobs():
            sid = getattr(info, "submission_id", None)
            if not isinstance(sid, str):
                continue  # a driver run outside the Job Submission API: never suanli's
            metadata = getattr(info, "metadata", None) or {}
            site = metadata.get("suanli_site") if isinstance(metadata, dict) else None
            status = str(getattr(info.status, "value", info.status))
            jobs.append(
                EngineJob(
                    engine_id=sid,
                    name=sid,
                    site=site if isinstance(site, str) else None,
                    live=status in ("PENDING", "RUNNING"),
                )
            )
        return jobs

    def _cancel_job(self, engine_id: int | str) -> None:
        self.jobs.stop_job(str(engine_id))

    def _stop(self, a: _Attempt) -> None:
        """``stop_job``: Ray sends SIGTERM, and SIGKILL after its own wait
        (``RAY_JOB_STOP_WAIT_TIME_S``, 3 s by default)."""
        if a.submission_id is not None:
            self.jobs.stop_job(a.submission_id)

    def _ask_engine(self, live: list[_Attempt], now: float) -> None:
        """``get_job_info`` for each; a job past its time limit is stopped."""
        self._seen_at = now
        for a in live:
            assert a.submission_id is not None
            info = self.jobs.get_job_info(a.submission_id)
            status = str(getattr(info.status, "value", info.status))
            started, ended = getattr(info, "start_time", None), getattr(info, "end_time", None)
            if isinstance(started, int | float) and started > 0 and status != "PENDING":
                until = ended if isinstance(ended, int | float) else None
                a.elapsed_s = run_seconds(started, until, time.time() * 1000) / 1000
            limit = a.spec.time_limit_s
            late = limit is not None and now - a.started_at >= limit
            if status in ("PENDING", "RUNNING") and late and not a.timed_out:
                a.timed_out = True
                self.jobs.stop_job(a.submission_id)
            if status == "PENDING":
                a.state, a.message = AttemptState.STARTING, str(info.message or "")
            elif status == "RUNNING":
                a.state, a.message = AttemptState.RUNNING, ""
            elif status == "SUCCEEDED":
                self._succeeded(a)
            elif status == "STOPPED" and a.timed_out:
                self._timed_out(a, CANCELLED_EXIT_CODE)
            elif status == "STOPPED":
                self._cancelled(a, "stopped in Ray")
            elif status == "FAILED":
                code = getattr(info, "driver_exit_code", None)
                if isinstance(code, int):
                    phase = "setup" if _SETUP_FAILED in self.jobs.get_job_logs(a.submission_id) else "run"
                    self._exited(a, phase, code)
                else:
                    self._end(
                        a, AttemptState.FAILED, None, f"Ray failed the job: {_first_line(info.message)}", note_it=True
                    )

    def _ended(self, a: _Attempt, note_it: bool) -> None:
        """The note goes into ``suanli.log`` in the attempt's folder, and is the whole log of an
        attempt that never reached Ray."""
        if note_it or a.submission_id is None:
            note(a.dir / "suanli.log", a.message)
            if a.submission_id is None:  # never reached Ray: the note is the whole log
                a.log.text = f"[suanli] {a.message}\n".encode()


def _first_line(text: object) -> str:
    lines = [ln for ln in re.split(r"\r?\n", str(text or "")) if ln.strip()]
    return lines[0] if lines else "no reason given"
