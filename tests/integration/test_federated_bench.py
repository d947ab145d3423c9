"""``bench/federated.py`` end to end, with fewer rounds: a real front desk, three uneven sites,
federated accuracy within a point of centralised, and no dataset bytes moved per the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_federated_bench_matches_centralised_without_moving_data() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("SUANLI_TOKEN", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "federated.py"), "--json", "--rounds", "5"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(out) >= {"centralised_acc", "federated_acc", "rounds", "raw_bytes_moved"}
    assert out["rounds"] == 5
    assert out["raw_bytes_moved"] == 0
    assert abs(out["federated_acc"] - out["centralised_acc"]) <= 0.01
