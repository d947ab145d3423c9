"""Budget holds: in submit order, counting the jobs already let through in the same pass."""

from __future__ import annotations

from decimal import Decimal

from suanli.app.budgets import budget_states, hold_over_budget, never_fits_budget
from suanli.core.scheduler import PendingJob
from suanli.core.spec import Resources


def job(seq: int, tenant: str = "t") -> PendingJob:
    return PendingJob(id=f"j{seq}", seq=seq, resources=Resources(), tenant=tenant)


def test_jobs_past_the_budget_wait_in_submit_order() -> None:
    jobs = [job(3), job(1), job(2), job(4, tenant="free")]
    estimates = {"j1": 40_000_000, "j2": 40_000_000, "j3": 10_000_000, "j4": 10**12}
    held = hold_over_budget(jobs, {"t": Decimal(100)}, {"t": 15_000_000}, estimates).held
    # 15 spent: j1 → 55, j2 → 95 fit; j3 would make 105. A tenant without a budget is never held.
    assert set(held) == {"j3"}
    assert held["j3"] == "tenant t: 95.00 of 100 CNY this month; this job's estimate is 10.00 CNY"


def test_never_fits_and_states() -> None:
    assert never_fits_budget("t", Decimal(10), 11_000_000) is not None
    assert never_fits_budget("t", Decimal(10), 10_000_000) is None
    assert never_fits_budget("t", None, 10**12) is None
    states = {
        s.tenant: s.state
        for s in budget_states(
            {"a": Decimal(10), "b": Decimal(10), "c": Decimal(10)}, {"a": 7_900_000, "b": 8_000_000, "c": 10_000_000}
        )
    }
    assert states == {"a": "ok", "b": "warning", "c": "exhausted"}
