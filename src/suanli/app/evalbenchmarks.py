"""Benchmarks: a registered dataset plus the task definition it is graded with, open or hidden.

A **hidden** benchmark can be run by any tenant and read by its owner only. Every job of a
hidden task (shards and combine) is its owner's job, pinned to the region of the dataset's home
site, so the ordinary rules keep its bytes, logs and outputs from the run's tenant (another
tenant's job, log or dataset answers 404): the run's tenant sees the scores and the aggregate,
the owner sees the per-sample log in the results dataset. The task definition is the owner's
(a tenant's own template could leak answers through its scores), and the questions go only to
the model endpoints the owner allows: a model server sees every prompt it is asked.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from suanli.app.access import require
from suanli.app.control import ControlPlane
from suanli.app.datasets import owned_dataset
from suanli.app.errors import Conflict, Forbidden, Unprocessable
from suanli.core.api_eval import EvalBenchmarkIn, EvalBenchmarkOut, EvalTaskIn
from suanli.core.evaluation.tasks import TaskError, TaskSpec, task_from_dict
from suanli.core.identity import Identity, Scope
from suanli.store.models import Dataset, EvalBenchmark, Site


@dataclass(frozen=True)
class Resolved:
    """A task of a run as it will be scored."""

    spec: TaskSpec
    dataset: str
    #: The tenant whose jobs score it (the benchmark's owner when hidden).
    runs_as: str
    hidden: bool
    #: Hidden: the region the jobs are pinned to (the dataset's home site's).
    region: str | None = None


def _checked(definition: dict[str, object]) -> TaskSpec:
    try:
        return task_from_dict(dict(definition))
    except TaskError as exc:
        raise Unprocessable(str(exc)) from None


def register(control: ControlPlane, who: Identity, body: EvalBenchmarkIn) -> EvalBenchmarkOut:
    """Register the caller's tenant's dataset as a benchmark (once; 409 for a second time)."""
    spec = _checked(body.definition)
    if body.hidden and not body.allowed_endpoints:
        raise Unprocessable(
            "a hidden benchmark names the model endpoints its questions may go to (allowed_endpoints): "
            "a model server sees every prompt it is asked"
        )
    if any(not e.startswith(("http://", "https://")) for e in body.allowed_endpoints):
        raise Unprocessable("allowed_endpoints are http(s) URL prefixes")
    with control.db.session() as session:
        ds = owned_dataset(session, who, body.dataset)
        if session.get(EvalBenchmark, ds.name) is not None:
            raise Conflict(f"dataset '{ds.name}' is already a benchmark")
        row = EvalBenchmark(
            dataset=ds.name,
            owner=ds.owner,
            task=spec.name,
            spec=spec.to_dict(),
            hidden=body.hidden,
            allowed_endpoints=list(body.allowed_endpoints),
            created_at=control.clock.now(),
        )
        session.add(row)
        session.flush()
        return _out(row, who)


def _out(row: EvalBenchmark, who: Identity) -> EvalBenchmarkOut:
    mine = who.sees_tenant(row.owner)
    return EvalBenchmarkOut(
        dataset=row.dataset,
        owner=row.owner,
        task=row.task,
        hidden=row.hidden,
        definition=row.spec if mine or not row.hidden else None,
        allowed_endpoints=list(row.allowed_endpoints) if mine else [],
        created_at=row.created_at,
    )


def listing(control: ControlPlane, who: Identity) -> list[EvalBenchmarkOut]:
    """The caller's tenant's benchmarks, and every hidden one: those are published for any tenant
    to run, so anyone may know they exist (not what they hold). Another tenant's open benchmark
    is its own data, absent here like its other datasets."""
    require(who, Scope.JOBS_READ)
    with control.db.read() as session:
        rows = session.scalars(select(EvalBenchmark).order_by(EvalBenchmark.dataset))
        return [_out(r, who) for r in rows if r.hidden or who.sees_tenant(r.owner)]


def resolve(session: Session, tenant: str, wanted: EvalTaskIn, endpoint: str) -> Resolved:
    """How ``tenant``'s run scores ``wanted``: its own definition, or the benchmark's."""
    bench = session.get(EvalBenchmark, wanted.dataset)
    hidden = bench is not None and bench.hidden and bench.owner != tenant
    if not hidden:
        definition = wanted.definition if wanted.definition is not None else (bench.spec if bench else None)
        if definition is None:
            raise Unprocessable(
                f"dataset '{wanted.dataset}' is not registered as a benchmark; give the task definition to run on it"
            )
        return Resolved(_checked(definition), wanted.dataset, tenant, False)
    assert bench is not None
    if wanted.definition is not None and _checked(wanted.definition).to_dict() != bench.spec:
        raise Unprocessable(
            f"'{bench.dataset}' is a hidden benchmark of tenant '{bench.owner}': it is graded with its owner's "
            "task definition; name the dataset without a definition"
        )
    if not any(endpoint.startswith(prefix) for prefix in bench.allowed_endpoints):
        raise Forbidden(
            f"the hidden benchmark '{bench.dataset}' sends its questions only to the model endpoints its owner "
            f"allows, and {endpoint} is not one of them; ask tenant '{bench.owner}' to allow it"
        )
    home = session.scalar(select(Dataset.home_site).where(Dataset.name == bench.dataset))
    region = session.scalar(select(Site.region).where(Site.name == home))
    return Resolved(_checked(bench.spec), bench.dataset, bench.owner, True, region)
