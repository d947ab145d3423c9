"""/api/v1/evals: run an evaluation (shard jobs, then a combine job), list runs, show one; benchmarks."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from suanli.app import evalbenchmarks, evalboard, evals
from suanli.core.api import Page
from suanli.core.api_eval import EvalBenchmarkIn, EvalBenchmarkOut, EvalRunIn, EvalRunOut, LeaderboardOut
from suanli.server.deps import Caller, Control

router = APIRouter(prefix="/api/v1/evals", tags=["evals"])


@router.post("", status_code=201, response_model=EvalRunOut)
async def create(body: EvalRunIn, control: Control, who: Caller) -> EvalRunOut:
    return await run_in_threadpool(evals.start, control, who, body)


@router.get("", response_model=Page[EvalRunOut])
def list_runs(control: Control, who: Caller) -> Page[EvalRunOut]:
    return Page(items=evals.list_runs(control, who))


@router.post("/benchmarks", status_code=201, response_model=EvalBenchmarkOut)
def register_benchmark(body: EvalBenchmarkIn, control: Control, who: Caller) -> EvalBenchmarkOut:
    return evalbenchmarks.register(control, who, body)


@router.get("/benchmarks", response_model=Page[EvalBenchmarkOut])
def list_benchmarks(control: Control, who: Caller) -> Page[EvalBenchmarkOut]:
    return Page(items=evalbenchmarks.listing(control, who))


@router.get("/leaderboard", response_model=LeaderboardOut)
def leaderboard(control: Control, who: Caller, task: list[str] | None = Query(default=None)) -> LeaderboardOut:
    """Runs ranked by one task (``task=T``) or a suite (``task=T1&task=T2``: the mean, runs that scored all)."""
    return evalboard.leaderboard(control, who, task)


@router.get("/{run_id}", response_model=EvalRunOut)
def get(run_id: str, control: Control, who: Caller) -> EvalRunOut:
    return evals.get(control, who, run_id)
