"""`make demo` (scripts/demo.sh) runs its whole tour and stops the network it started."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.db_support import database_url_for_test, drop_database
from tests.e2e.conftest import REPO, clean_env, database_env, describe, free_port, job_processes

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
def test_demo_script(tmp_path: Path) -> None:
    home = tmp_path / "home"
    database = database_url_for_test()
    env = clean_env(DEMO_EXIT="1", SUANLI_PORT=str(free_port()), SUANLI_HOME=str(home), **database_env(database))
    try:
        proc = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=200,
            check=False,
        )
    finally:
        if database is not None:
            drop_database(database)
    output = proc.stdout
    up_log = home / "demo-up.log"
    context = f"{output}\n--- {up_log}\n{up_log.read_text() if up_log.exists() else '(none)'}"
    assert proc.returncode == 0, context
    assert "hello from job" in output, context
    # The served test model answered curl through the front desk, whole and streamed.
    assert '"prompt_tokens":5,"completion_tokens":8' in output.replace(" ", ""), context
    assert "data: [DONE]" in output, context
    assert "no site can ever hold" in output, context
    assert "sum of ranks+1 = 3" in output, context
    assert "done: accuracy" in output, context
    assert "copied, encrypted and verified (for job" in output, context  # compute to data
    assert "general (inherited, re-grade it)" in output, context  # the job's output, derived
    assert "the downloaded output holds the sha256 of the notes at beijing" in output, context  # suanli download
    assert "signed checkpoints verified, cosigned by demo.suanli.local/witness" in output, context
    assert "Traceback" not in output, context

    deadline = time.monotonic() + 15  # the script's trap waits for 'suanli up' to stop
    while (left := job_processes(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes outlived the demo:\n{describe(left)}"
