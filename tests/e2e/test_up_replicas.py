"""``suanli up --replicas 2 --postgres``: a PostgreSQL cluster of its own and two front desks with
homes of their own; a job uploaded and submitted through the second runs from the database's
blob store, and Ctrl-C stops everything, the cluster included."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from suanli.core.spec import JobSpec
from suanli.sdk import Client
from tests.db_support import require_postgres
from tests.e2e.conftest import REPO, clean_env, free_port, wait_until

NETWORK = """\
regions: [beijing]
sites:
  - {name: beijing, region: beijing, nodes: [{name: bj-01, cpus: 2, memory: 4}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""


def _online(url: str, token_file: Path) -> bool:
    if not token_file.exists():
        return False
    headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    try:
        response = httpx.get(f"{url}/api/v1/sites", headers=headers, timeout=5)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and any(s["online"] for s in response.json()["items"])


def test_up_with_two_replicas_on_postgres_runs_a_job_sent_to_the_second(tmp_path: Path) -> None:
    require_postgres()  # PostgreSQL's programs must be here (fails under CI=true otherwise)
    (tmp_path / "net.yaml").write_text(NETWORK)
    home, port, log = tmp_path / "home", free_port(), tmp_path / "up.log"
    argv = ["up", "--replicas", "2", "--postgres", "--network", str(tmp_path / "net.yaml"), "--home", str(home)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suanli", *argv, "--port", str(port)],
            cwd=REPO,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        second = f"http://127.0.0.1:{port + 1}"
        wait_until(
            "the site to come online through the second front desk", lambda: _online(second, home / "admin.token"), 120
        )
        workdir = tmp_path / "wd"
        workdir.mkdir()
        (workdir / "main.sh").write_text("cat data.txt\n")
        (workdir / "data.txt").write_text("sent to the second front desk\n")
        with Client(second, token=(home / "admin.token").read_text().strip()) as client:
            job = client.submit(JobSpec.model_validate({"run": "sh main.sh"}), workdir=workdir)
            wait_until("the job to end", lambda: client.job(job.id).state.value in ("SUCCEEDED", "FAILED"), 60)
            assert client.job(job.id).state.value == "SUCCEEDED"
            assert "sent to the second front desk" in "".join(client.logs(job.id))
        front_desks = [home / "blobs", *(home / "replicas").glob("*/blobs")]
        assert len(front_desks) == 2
        assert [p for b in front_desks for p in b.iterdir()] == [], "the archive is in the database only"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=90) == 0
        text = log.read_text(errors="replace")
        assert "stopped." in text
        cluster = re.search(r"a cluster for this run, in (\S+)\)", text)
        assert cluster is not None, text
        assert not Path(cluster.group(1)).exists(), "the cluster is removed at stop"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
