"""``python -m suanli.federation`` as jobs run it: two client processes and an aggregator process
reach the front desk outward with their tokens and finish a run; each client's metrics stay in
its own output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suanli.sdk import Client
from tests.integration.test_datachain import DataNet, dnet

__all__ = ["dnet"]

ROOT = Path(__file__).resolve().parents[2]
ROWS = {"ward-bj": [[1.0, 1.0], [3.0, 3.0]], "ward-sg": [[10.0, 4.0]]}
SITES = {"ward-bj": "beijing", "ward-sg": "singapore"}


def test_client_and_aggregator_processes_finish_a_run(dnet: DataNet) -> None:
    c = dnet.client
    c.create_user("alice", role="member", tenant="bj-ai")
    token = c.create_token(user="alice").token
    paths = {}
    for name, rows in ROWS.items():
        paths[name] = dnet.tmp / f"{name}.json"
        paths[name].write_text(json.dumps(rows))
        c.register_dataset(
            name=name, owner="bj-ai", home_site=SITES[name], path=str(paths[name]), classification={"level": "general"}
        )
    alice = Client(c.server, token=token)
    run = alice.create_federation(datasets=list(ROWS), rounds=2, params=[0.0, 0.0])
    alice.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "SUANLI_SERVER": c.server,
        "SUANLI_TOKEN": token,
        "SUANLI_FEDERATION": run.id,
    }
    cmd = [sys.executable, "-m", "suanli.federation"]
    poll = ["--poll-s", "0.05", "--wait-s", "20"]
    procs = {
        name: subprocess.Popen(
            [*cmd, "client", "--dataset", name, "--app", "tests.integration.fed_app", "--data", str(path), *poll],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in paths.items()
    }
    procs["aggregator"] = subprocess.Popen(
        [*cmd, "aggregator", *poll], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outs = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"{name}: {err[-2000:]}"
        outs[name] = json.loads(out.strip().splitlines()[-1])
    assert outs["aggregator"]["params"] == pytest.approx([14 / 3, 8 / 3], abs=1e-6)
    assert outs["ward-sg"]["params"] == outs["aggregator"]["params"]
    assert outs["ward-sg"]["metrics"]["sq_error"] == pytest.approx((10 - 14 / 3) ** 2 + (4 - 8 / 3) ** 2, abs=1e-5)


def test_the_entry_point_says_what_is_missing() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SUANLI_SERVER"}
    env["PYTHONPATH"] = str(ROOT / "src")
    done = subprocess.run(
        [sys.executable, "-m", "suanli.federation", "aggregator", "--run", "x"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "set SUANLI_SERVER" in done.stderr
