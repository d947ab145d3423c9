"""State lives in SQLite under --home: a restarted network still knows its jobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, Cli, Network, free_port, job_processes

pytestmark = pytest.mark.e2e


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    net = Network(home, free_port())
    try:
        net.start()
        cli = Cli(net.url)
        job = cli.submit(EXAMPLES / "hello.yaml", "--name", "e2e-restart")
        net.wait_job(job["id"], "SUCCEEDED")
        assert net.stop() == 0, net.log()
        assert not job_processes(net.sites_dir)

        net.start()
        listed, status = cli.run_many([["jobs", "--json"], ["status", job["id"], "--json"]])
        by_id = {j["id"]: j for j in listed.json()}
        assert job["id"] in by_id, f"{job['id']} missing after the restart: {sorted(by_id)}"
        assert by_id[job["id"]]["name"] == "e2e-restart"
        assert by_id[job["id"]]["state"] == "SUCCEEDED"
        again = status.json()
        assert again["state"] == "SUCCEEDED"
        assert [a["exit_code"] for a in again["attempts"]] == [0]
        assert net.stop() == 0, net.log()
    finally:
        net.close()
