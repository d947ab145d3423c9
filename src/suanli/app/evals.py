"""Evaluations through the front desk: a run splits (model × task) into shard jobs, then a combine job.

``start`` checks every task definition, ships the harness (``evaljob.bundle``) as a workdir, and
submits for each task ``shards`` jobs like any job: each reads the task's benchmark dataset, so
the scheduler places it where the data rules let that dataset be read, scores its positions
against the model and leaves ``shard-K.json`` as its output dataset ``ev-<run>-<task>-s<K>``.
When every shard of a task has succeeded, :func:`advance` submits the combine job, which reads
those outputs, writes ``scores.json`` and ``samples.jsonl`` as dataset ``ev-<run>-<task>`` (the
derived dataset of results, with the per-sample log) and prints the scores, which ``advance``
copies from its log into the run. ``advance`` runs whenever a run is read (``show``, ``ls``,
``--wait`` polls ``show``), so a run moves on without a background loop of its own.
"""

from __future__ import annotations

import gzip
import io
import json
import shlex
import tarfile
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from suanli.app import evalbenchmarks, jobrequests, jobs, workdirs
from suanli.app.control import ControlPlane
from suanli.app.errors import NotFound, ServiceError, Unprocessable
from suanli.app.evalbenchmarks import Resolved
from suanli.core.api import JobSubmit
from suanli.core.api_eval import EvalRunIn, EvalRunOut, EvalUnitOut
from suanli.core.evaluation import HARNESS_VERSION
from suanli.core.evaluation.combine import SCORES_MARK
from suanli.core.evaluation.tasks import TaskSpec
from suanli.core.identity import Identity, Scope
from suanli.core.states import JobState
from suanli.evaljob import bundle
from suanli.store.models import Dataset, EvalRun, EvalUnit, Job, Site

#: Where a shard job sees its benchmark, and a combine job its shards' outputs.
BENCHMARK_MOUNT = "/data/benchmark"
_ENDED_BADLY = {JobState.FAILED.value, JobState.CANCELLED.value}


def shard_output(run_id: str, index: int, k: int) -> str:
    return f"ev-{run_id}-{index}-s{k}"


def results_dataset(run_id: str, index: int) -> str:
    return f"ev-{run_id}-{index}"


def bundle_archive() -> bytes:
    """The harness as a workdir archive, byte-identical for identical files (no times, sorted)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, content in sorted(bundle.files().items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def _ship_harness(control: ControlPlane, who: Identity) -> str:
    data = bundle_archive()
    receiver = workdirs.Receiver(control.settings.blob_dir, len(data) + 1)
    receiver.write(data)
    digest, size, spooled = receiver.finish()
    jobrequests.record_workdir(control, who, digest, size, spooled)
    return digest


def _placed(spec: dict[str, Any], region: str | None) -> dict[str, Any]:
    """A hidden benchmark's jobs stay in the region of its home site."""
    return {**spec, "placement": {"regions": [region]}} if region else spec


def _shard_spec(run_id: str, index: int, k: int, task: TaskSpec, dataset: str, body: EvalRunIn) -> dict[str, Any]:
    args = [
        "python", "-m", "suanli.evaljob", "shard", "--task", "task.json", "--data", BENCHMARK_MOUNT,
        "--endpoint", body.endpoint, "--model", body.model, "--seed", str(body.seed),
        "--index", str(k), "--shards", str(body.shards), "--out", "$SUANLI_OUTPUT_DIR",
    ]  # fmt: skip
    if body.limit is not None:
        args += ["--limit", str(body.limit)]
    command = " ".join('"$SUANLI_OUTPUT_DIR"' if a == "$SUANLI_OUTPUT_DIR" else shlex.quote(a) for a in args)
    return {
        "name": f"eval-{task.name}-{k}"[:63],
        "resources": {"cpus": 1},
        "datasets": [{"name": dataset, "mount": BENCHMARK_MOUNT}],
        "output": {"dataset": shard_output(run_id, index, k)},
        "envs": {"EVAL_TASK": json.dumps(task.to_dict())},
        "run": f"printf '%s' \"$EVAL_TASK\" > task.json\n{command}\n",
        "max_retries": 2,
    }


def _combine_spec(run: EvalRun, unit: EvalUnit, region: str | None) -> dict[str, Any]:
    mounts = [f"/data/shard-{k}" for k in range(run.shards)]
    inputs = " ".join(mounts)
    return _placed(
        {
            "name": f"eval-{unit.task}-combine"[:63],
            "resources": {"cpus": 1},
            "datasets": [{"name": shard_output(run.id, unit.index, k), "mount": m} for k, m in enumerate(mounts)],
            "output": {"dataset": results_dataset(run.id, unit.index)},
            "envs": {"EVAL_TASK": json.dumps(unit.spec)},
            "run": (
                "printf '%s' \"$EVAL_TASK\" > task.json\n"
                f'python -m suanli.evaljob combine --task task.json --out "$SUANLI_OUTPUT_DIR" {inputs}\n'
            ),
            "max_retries": 2,
        },
        region,
    )


def _resolve(control: ControlPlane, who: Identity, body: EvalRunIn) -> tuple[str, list[Resolved]]:
    if not body.endpoint.startswith(("http://", "https://")):
        raise Unprocessable(f"the model endpoint must be an http(s) URL ending in /v1, not {body.endpoint!r}")
    tenant = jobs.tenant_for_submit(who, body.tenant, control.default_tenant)
    with control.db.read() as session:
        tasks = [evalbenchmarks.resolve(session, tenant, t, body.endpoint) for t in body.tasks]
    names = [t.spec.name for t in tasks]
    if len(set(names)) != len(names):
        raise Unprocessable("each task may appear once in a run")
    return tenant, tasks


def _submit(control: ControlPlane, who: Identity, task: Resolved, spec: dict[str, Any], digest: str) -> str:
    """A shard job: the caller's own, through the ordinary submit path; a hidden benchmark's owner's."""
    if not task.hidden:
        submission = JobSubmit(spec=spec, workdir_digest=digest, tenant=task.runs_as)
        return jobrequests.prepare_submit(control, who, submission, None).write()[0].id
    checked = jobs.validate_spec(_placed(spec, task.region))
    jobs.check_fits(checked, control.capacity())
    with control.db.session() as session:
        out = jobs.submit(
            session,
            checked,
            tenant=task.runs_as,
            workdir_digest=digest,
            now=control.clock.now(),
            sites=control.capacity(),
            rules=control.scheduler_config.data_rules,
        )
    control.kick()
    return out.id


def start(control: ControlPlane, who: Identity, body: EvalRunIn) -> EvalRunOut:
    """Submit every shard job of a run; the run and its tasks are recorded once all are in."""
    tenant, tasks = _resolve(control, who, body)
    digest = _ship_harness(control, who)
    run_id = jobs.new_job_id()
    submitted: list[str] = []
    shard_jobs: list[list[str]] = []
    try:
        for index, task in enumerate(tasks):
            ids = []
            for k in range(body.shards):
                job_id = _submit(
                    control, who, task, _shard_spec(run_id, index, k, task.spec, task.dataset, body), digest
                )
                ids.append(job_id)
                submitted.append(job_id)
            shard_jobs.append(ids)
    except ServiceError:
        for job_id in submitted:
            jobs_cancel(control, job_id)
        raise
    now = control.clock.now()
    with control.db.session() as session:
        session.add(
            EvalRun(
                id=run_id,
                tenant=tenant,
                submitted_by=who.name,
                endpoint=body.endpoint,
                model=body.model,
                model_version=body.model_version,
                seed=body.seed,
                limit=body.limit,
                shards=body.shards,
                harness_version=HARNESS_VERSION,
                harness_digest=bundle.digest(),
                state="running",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        for index, task in enumerate(tasks):
            session.add(
                EvalUnit(
                    run_id=run_id,
                    index=index,
                    task=task.spec.name,
                    task_version=task.spec.version,
                    task_digest=task.spec.digest(),
                    spec=task.spec.to_dict(),
                    dataset=task.dataset,
                    shard_jobs=shard_jobs[index],
                    combine_job=None,
                    state="running",
                    scores=None,
                    message="",
                    runs_as=task.runs_as,
                    hidden=task.hidden,
                )
            )
    return get(control, who, run_id)


def jobs_cancel(control: ControlPlane, job_id: str) -> None:
    """Cancel a job this run submitted (its own or a hidden benchmark owner's) after a refusal."""
    with control.db.session() as session:
        job = session.scalar(select(Job).where(Job.id == job_id))
        if job is not None and not JobState(job.state).is_terminal():
            jobs.cancel(session, job, control.clock.now())
    control.capacity_changed()


def _states(session: Session, ids: list[str]) -> dict[str, str]:
    return {str(i): str(s) for i, s in session.execute(select(Job.id, Job.state).where(Job.id.in_(ids)))}


def _scores_from_log(session: Session, job: Job) -> dict[str, Any] | None:
    text = "".join(c.data for c in jobs.last_log_chunks(session, job, 50))
    for line in reversed(text.splitlines()):
        if line.startswith(SCORES_MARK + " "):
            found = json.loads(line[len(SCORES_MARK) + 1 :])
            return found if isinstance(found, dict) else None
    return None


def _advance_unit(control: ControlPlane, session: Session, run: EvalRun, unit: EvalUnit, now: datetime) -> None:
    if unit.state == "running":
        states = _states(session, list(unit.shard_jobs))
        bad = sorted(j for j, s in states.items() if s in _ENDED_BADLY)
        if bad:
            jobs_named = f"tenant '{unit.runs_as}' can see why" if unit.hidden else ", ".join(bad)
            unit.state, unit.message = "failed", f"a shard job ended {states[bad[0]]} ({jobs_named})"
            return
        if any(states.get(j) != JobState.SUCCEEDED.value for j in unit.shard_jobs):
            return
        claimed = session.execute(
            update(EvalUnit)
            .where(EvalUnit.run_id == run.id, EvalUnit.index == unit.index, EvalUnit.state == "running")
            .values(state="combining")
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return  # another reader submitted it
        region = _region_of(session, unit) if unit.hidden else None
        spec = jobs.validate_spec(_combine_spec(run, unit, region))
        out = jobs.submit(
            session,
            spec,
            tenant=unit.runs_as,
            workdir_digest=_workdir_of(session, unit.shard_jobs[0]),
            now=now,
            sites=control.capacity(),
            rules=control.scheduler_config.data_rules,
        )
        session.expire(unit)
        unit.combine_job = out.id
        control.kick()
    elif unit.state == "combining" and unit.combine_job:
        job = session.scalar(select(Job).where(Job.id == unit.combine_job))
        if job is None or job.state in _ENDED_BADLY:
            named = f"tenant '{unit.runs_as}' can see why" if unit.hidden else unit.combine_job
            unit.state, unit.message = "failed", f"the combine job ended {job.state if job else 'gone'} ({named})"
        elif job.state == JobState.SUCCEEDED.value:
            scores = _scores_from_log(session, job)
            if scores is None:
                unit.state, unit.message = "failed", f"combine job {job.id} printed no {SCORES_MARK} line"
            else:
                unit.state, unit.scores = "succeeded", scores
                unit.ledger_index = control.chain.ledger.record(session, "eval.score", score_entry(run, unit), now)


def score_entry(run: EvalRun, unit: EvalUnit) -> dict[str, Any]:
    """What the ledger keeps of a score: enough to say which model, task, data and harness made it."""
    scores = unit.scores or {}
    return {
        "run": run.id,
        "tenant": run.tenant,
        "model": {"endpoint": run.endpoint, "name": run.model, "version": run.model_version},
        "task": unit.task,
        "task_version": unit.task_version,
        "task_sha256": unit.task_digest,
        "dataset": unit.dataset,
        "data_sha256": (scores.get("run") or {}).get("data_digest"),
        "seed": run.seed,
        "limit": run.limit,
        "shards": run.shards,
        "harness_version": run.harness_version,
        "harness_sha256": run.harness_digest,
        "metrics": dict(scores.get("metrics") or {}),
        "samples": scores.get("samples"),
    }


def _region_of(session: Session, unit: EvalUnit) -> str | None:
    home = session.scalar(select(Dataset.home_site).where(Dataset.name == unit.dataset))
    return session.scalar(select(Site.region).where(Site.name == home))


def _workdir_of(session: Session, job_id: str) -> str | None:
    return session.scalar(select(Job.workdir_digest).where(Job.id == job_id))


def advance(control: ControlPlane, run_id: str) -> None:
    """Move a run on: combine the tasks whose shards all succeeded, take the scores of combined ones."""
    now = control.clock.now()
    with control.db.session() as session:
        run = session.get(EvalRun, run_id)
        if run is None or run.state != "running":
            return
        units = list(session.scalars(select(EvalUnit).where(EvalUnit.run_id == run_id).order_by(EvalUnit.index)))
        recorded = [u.ledger_index for u in units]
        for unit in units:
            _advance_unit(control, session, run, unit, now)
        states = {u.state for u in units}
        if states <= {"succeeded", "failed"}:
            run.state = "failed" if "failed" in states else "succeeded"
        run.updated_at = now
        sealed = recorded != [u.ledger_index for u in units]
    if sealed:
        control.chain.seal()


def _visible(session: Session, who: Identity, run_id: str) -> EvalRun:
    if not who.can(Scope.JOBS_READ):
        raise NotFound(f"no evaluation {run_id}")
    run = session.get(EvalRun, run_id)
    if run is None or not (who.all_tenants or who.tenant == run.tenant):
        raise NotFound(f"no evaluation {run_id}")
    return run


def to_out(session: Session, run: EvalRun, who: Identity) -> EvalRunOut:
    units = session.scalars(select(EvalUnit).where(EvalUnit.run_id == run.id).order_by(EvalUnit.index))
    return EvalRunOut(
        id=run.id,
        tenant=run.tenant,
        endpoint=run.endpoint,
        model=run.model,
        model_version=run.model_version,
        seed=run.seed,
        limit=run.limit,
        shards=run.shards,
        harness_version=run.harness_version,
        harness_digest=run.harness_digest,
        state=run.state,
        created_at=run.created_at,
        updated_at=run.updated_at,
        units=[_unit_out(run, u, who) for u in units],
    )


def _unit_out(run: EvalRun, unit: EvalUnit, who: Identity) -> EvalUnitOut:
    """A hidden task's jobs and results dataset are its owner's: others see the scores only."""
    scores = unit.scores or {}
    shown = not unit.hidden or who.sees_tenant(unit.runs_as)
    return EvalUnitOut(
        index=unit.index,
        task=unit.task,
        task_version=unit.task_version,
        task_digest=unit.task_digest,
        dataset=unit.dataset,
        state=unit.state,
        shard_jobs=list(unit.shard_jobs) if shown else [],
        combine_job=unit.combine_job if shown else None,
        metrics={k: float(v) for k, v in (scores.get("metrics") or {}).items()},
        samples=scores.get("samples"),
        data_digest=(scores.get("run") or {}).get("data_digest"),
        results_dataset=results_dataset(run.id, unit.index) if unit.state == "succeeded" and shown else None,
        message=unit.message,
        hidden=unit.hidden,
        ledger_index=unit.ledger_index,
    )


def get(control: ControlPlane, who: Identity, run_id: str) -> EvalRunOut:
    with control.db.read() as session:
        _visible(session, who, run_id)
    advance(control, run_id)
    with control.db.read() as session:
        return to_out(session, _visible(session, who, run_id), who)


#: How often the scheduler loop moves running evaluations on (their combine jobs, their scores).
ADVANCE_EVERY_S = 2.0


def advance_all(control: ControlPlane) -> None:
    """Move on every running evaluation: the scheduler loop's periodic work (:meth:`ControlPlane.every`)."""
    with control.db.read() as session:
        running = [str(i) for i in session.scalars(select(EvalRun.id).where(EvalRun.state == "running"))]
    for run_id in running:
        advance(control, run_id)


def advance_running(control: ControlPlane, who: Identity) -> None:
    """Move on every run the caller can see that is still running (before a list or a board)."""
    query = select(EvalRun.id).where(EvalRun.state == "running")
    if not who.all_tenants:
        query = query.where(EvalRun.tenant == who.tenant)
    with control.db.read() as session:
        running = [str(i) for i in session.scalars(query)]
    for run_id in running:
        advance(control, run_id)


def list_runs(control: ControlPlane, who: Identity, limit: int = 100) -> list[EvalRunOut]:
    """The caller's tenant's runs (every run for the admin), newest first."""
    if not who.can(Scope.JOBS_READ):
        return []
    advance_running(control, who)
    query = select(EvalRun.id).order_by(EvalRun.created_at.desc(), EvalRun.id).limit(limit)
    if not who.all_tenants:
        query = query.where(EvalRun.tenant == who.tenant)
    with control.db.read() as session:
        rows = [str(i) for i in session.scalars(query)]
    with control.db.read() as session:
        return [to_out(session, r, who) for r in (session.get(EvalRun, i) for i in rows) if r is not None]
