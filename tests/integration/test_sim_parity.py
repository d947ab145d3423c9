"""The simulator agrees with the live server: ``bench/sim_parity.py`` on a small committed excerpt.

The same 36 philly jobs (three tenants, priorities, faults with retries) run through the real
server (HTTP, agents with FakeBackend, a ManualClock) and through the simulator's default
policy; both must place them at the same sites at nearly the same times."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import sim_parity  # noqa: E402

TRACE = ROOT / "tests" / "data" / "sim" / "philly-parity.csv"


def test_simulator_and_live_server_agree_on_a_philly_excerpt() -> None:
    result = sim_parity.parity(TRACE, jobs=36, seed=1)
    # What the excerpt must exercise for the comparison to mean anything.
    assert result["tenants"] == 3
    assert result["high_jobs"]
    assert result["low_jobs"]
    assert result["jobs_with_faults"]
    assert result["preempted_live"]
    assert result["preempted_sim"]
    assert result["attempts_live"] > result["submitted"]
    # The parity targets of the full benchmark.
    assert result["jobs"] >= 30
    assert result["same_site_fraction"] >= 0.95
    assert abs(result["avg_jct_rel_diff"]) <= 0.05
    assert result["start_time_mae_s"] <= 60.0
