"""The leaderboard: runs ranked by their scores on a task or a suite of tasks, each score tied to
its ledger entry (``eval.score``) so a row can be checked offline against an exported ledger.

A row is one run (one model at one version, seed and shard count). The board ranks by each
task's first metric; over a suite it ranks by the mean of those, and lists only the runs that
scored every task of the suite. A caller sees its own tenant's runs (the admin and auditors: all).
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import select

from suanli.app import evals
from suanli.app.control import ControlPlane
from suanli.core.api_eval import LeaderboardOut, LeaderboardRow
from suanli.core.identity import Identity, Role, Scope
from suanli.store.models import EvalRun, EvalUnit


def leaderboard(control: ControlPlane, who: Identity, tasks: list[str] | None = None) -> LeaderboardOut:
    if not who.can(Scope.JOBS_READ):
        return LeaderboardOut(tasks=tasks or [], metrics={}, rows=[])
    evals.advance_running(control, who)
    query = (
        select(EvalRun, EvalUnit)
        .join(EvalUnit, EvalUnit.run_id == EvalRun.id)
        .where(EvalUnit.state == "succeeded")
        .order_by(EvalRun.created_at, EvalRun.id, EvalUnit.index)
    )
    if tasks:
        query = query.where(EvalUnit.task.in_(tasks))
    if not (who.all_tenants or who.role == Role.AUDITOR):
        query = query.where(EvalRun.tenant == who.tenant)
    with control.db.read() as session:
        pairs = [(run, unit) for run, unit in session.execute(query)]
    by_run: dict[str, list[EvalUnit]] = defaultdict(list)
    runs: dict[str, EvalRun] = {}
    metrics: dict[str, str] = {}
    for run, unit in pairs:
        runs[run.id] = run
        by_run[run.id].append(unit)
        metrics.setdefault(unit.task, str(unit.spec["metrics"][0]))
    wanted = tasks or sorted(metrics)
    rows = []
    for run_id, units in by_run.items():
        scored = {u.task: u for u in units}
        if tasks and set(tasks) - set(scored):
            continue
        run = runs[run_id]
        values = {t: float((u.scores or {})["metrics"][metrics[t]]) for t, u in scored.items()}
        rows.append(
            LeaderboardRow(
                run=run.id,
                tenant=run.tenant,
                model=run.model,
                model_version=run.model_version,
                endpoint=run.endpoint,
                seed=run.seed,
                shards=run.shards,
                harness_version=run.harness_version,
                scores=values,
                mean=math.fsum(values.values()) / len(values),
                ledger={t: u.ledger_index for t, u in scored.items() if u.ledger_index is not None},
                data_sha256={t: str(((u.scores or {}).get("run") or {}).get("data_digest")) for t, u in scored.items()},
                task_sha256={t: u.task_digest for t, u in scored.items()},
            )
        )
    rows.sort(key=lambda r: (-r.mean, r.run))
    return LeaderboardOut(tasks=wanted, metrics={t: metrics[t] for t in wanted if t in metrics}, rows=rows)
