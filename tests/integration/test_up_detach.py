"""``suanli up --detach`` starts the network in the background and returns once it answers;
``suanli down`` stops exactly that (its pid is kept in <home>/up.pid), from another process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from suanli.core.spec import parse_job_spec
from suanli.sdk import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def suanli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUANLI_HOME": str(home)}
    env.pop("SUANLI_SERVER", None)
    return subprocess.run(
        [sys.executable, "-m", "suanli", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_up_detach_then_down_stops_what_it_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    assert suanli(home, "down").stderr.startswith(f"nothing to stop: no 'suanli up --detach' runs from {home}")
    up = suanli(home, "up", "--detach", "--port", str(port))
    assert up.returncode == 0, up.stderr
    assert f"suanli is up at {url}" in up.stderr
    assert "running in the background: pid" in up.stderr
    recorded = json.loads((home / "up.pid").read_text())
    assert recorded["url"] == url
    pid = recorded["pid"]
    os.kill(pid, 0)  # it runs after the command returned
    again = suanli(home, "up", "--detach", "--port", str(free_port()))
    assert again.returncode == 1
    assert f"already runs from {home} (pid {pid}" in again.stderr

    token = (home / "admin.token").read_text().strip()
    with Client(url, token=token) as client:
        job = client.submit(parse_job_spec("name: hi\nrun: echo hi\n"))
        assert client.job(job.id).id == job.id

    down = suanli(home, "down", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout) == {"stopped": True, "pid": pid}
    assert not (home / "up.pid").exists()
    assert not Path(f"/proc/{pid}").exists() or ") Z " in Path(f"/proc/{pid}/stat").read_text()
    assert "stopped." in (home / "up.log").read_text()  # it stopped its agents and server itself
