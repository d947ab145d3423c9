"""State lives in SQLite under --home: a restarted network still knows its jobs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, SLEEPER, Cli, Network, describe, free_port, job_processes, write

pytestmark = pytest.mark.e2e


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    net = Network(home, free_port())
    try:
        net.start()
        cli = Cli(net.url, net.home)
        done = cli.submit(EXAMPLES / "hello.yaml", "--name", "e2e-restart")
        running = cli.submit(write(tmp_path / "sleeper.yaml", SLEEPER))
        net.wait_job(done["id"], "SUCCEEDED")
        net.wait_job(running["id"], "RUNNING")
        assert net.stop() == 0, net.log()
        left = job_processes(net.sites_dir)
        assert not left, f"job processes outlived 'suanli up':\n{describe(left)}"

        net.move_to(free_port())  # a fresh port: this test is about the state under --home
        net.start()
        cli = Cli(net.url, net.home)
        listed, status = cli.run_many([["jobs", "--json"], ["status", done["id"], "--json"]])
        by_id = {j["id"]: j for j in listed.json()}
        assert done["id"] in by_id, f"{done['id']} missing after the restart: {sorted(by_id)}"
        assert running["id"] in by_id, f"{running['id']} missing after the restart: {sorted(by_id)}"
        assert by_id[done["id"]]["name"] == "e2e-restart"
        assert by_id[done["id"]]["state"] == "SUCCEEDED"
        again = status.json()
        assert again["state"] == "SUCCEEDED"
        assert [a["exit_code"] for a in again["attempts"]] == [0]

        # The job that was running when the network stopped runs again, as a new attempt.
        resumed = net.wait_job(running["id"], "RUNNING", predicate=lambda j: len(j["attempts"]) >= 2)
        assert resumed["attempts"][0]["state"] != "RUNNING", resumed["attempts"]
        assert net.stop() == 0, net.log()
        assert not job_processes(net.sites_dir)
    finally:
        net.close()


def test_up_restarts_on_the_same_port(tmp_path: Path) -> None:
    """Ctrl-C, then the same `suanli up` again at once (the default port is always the same).

    The harness's HTTP client holds a keep-alive connection to the server when it stops, as a
    browser on the dashboard or a `suanli logs -f` would.
    """
    net = Network(tmp_path / "home", free_port())
    try:
        net.start()
        assert net.stop() == 0, net.log()
        with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
            socket.create_connection(("127.0.0.1", net.port), timeout=2).close()
        net.start(timeout=30)
        assert net.stop() == 0, net.log()
    finally:
        net.close()
