"""The lease fence at the supervisor (issue 16, "work ran twice"): a rank whose agent process
dies is frozen at once, goes on when a restarted agent adopts it within the lease, and is killed
before the server may requeue its attempt; a rank whose agent cannot renew its lease stops too.

Real processes: a "fake agent" is a sleeping process named by the liveness file, as the local
backend writes it (``recovery.liveness_text``); its ``kill -9`` is the agent's death.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from suanli.agent.backends.container import find_podman
from suanli.agent.backends.local_proc import SUPERVISOR
from suanli.agent.recovery import fence_deadline, liveness_text, orphan_timeout
from tests.container_support import container_exists, require_test_image

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds")

#: A rank that appends a line to ``ticks`` every 20 ms: it does something as long as it runs.
TICKING = "while :; do echo x >> ticks; sleep 0.02; done"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Site:
    """A liveness file, the fake agents that write it, and supervised ranks."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.alive = root / "agent.alive"
        self.agents: list[subprocess.Popen[bytes]] = []
        self.ranks: list[subprocess.Popen[bytes]] = []

    def agent(self, timeout: float, renewed: float | None = None) -> subprocess.Popen[bytes]:
        """A new agent process, which writes the liveness file once (``touch`` to write again)."""
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        self.agents.append(proc)
        self.touch(timeout, renewed)
        return proc

    def touch(self, timeout: float, renewed: float | None = None) -> None:
        proc = self.agents[-1]
        tmp = self.alive.with_name(".alive.tmp")
        tmp.write_text(liveness_text(timeout, f"{proc.pid}-{uuid.uuid4().hex[:4]}", proc.pid, renewed))
        os.replace(tmp, self.alive)

    def rank(self, script: str = TICKING) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-I", "-S", SUPERVISOR, "--exit", str(self.root / "exit"), "--alive", str(self.alive)]
        argv += ["--log", str(self.root / "log"), "--grace", "3", "--", "/bin/bash", "-c", script]
        proc = subprocess.Popen(argv, cwd=self.root, start_new_session=True, stdout=subprocess.DEVNULL)
        self.ranks.append(proc)
        wait_until(lambda: self.ticks() > 2, "the rank to tick")
        return proc

    def ticks(self) -> int:
        try:
            return (self.root / "ticks").read_text().count("\n")
        except FileNotFoundError:
            return 0

    def still(self, seconds: float = 0.4) -> bool:
        """Whether the rank did nothing for ``seconds``."""
        before = self.ticks()
        time.sleep(seconds)
        return self.ticks() == before

    def kill_agent(self) -> None:
        proc = self.agents[-1]
        proc.kill()
        proc.wait()

    def exit_record(self) -> dict[str, object]:
        return dict(json.loads((self.root / "exit").read_text()))

    def close(self) -> None:
        for proc in self.ranks:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in self.agents:
            proc.kill()
            proc.wait()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.close()


def test_the_rank_freezes_the_moment_its_agent_dies_and_goes_on_when_an_agent_adopts_it(site: Site) -> None:
    site.agent(timeout=30)
    rank = site.rank()
    site.kill_agent()
    died = time.monotonic()
    wait_until(site.still, "the rank to be frozen", timeout=5)
    assert time.monotonic() - died < 1.5  # at once, not after the orphan timeout (30 s)
    assert rank.poll() is None  # paused, not stopped: a restarted agent may still adopt it
    site.agent(timeout=30)  # a restarted agent touches the liveness file within the lease
    before = site.ticks()
    wait_until(lambda: site.ticks() > before + 5, "the rank to go on")
    assert "paused until an agent adopts it" in (site.root / "log").read_text()
    assert "adopted this attempt: it goes on" in (site.root / "log").read_text()


def test_a_frozen_rank_is_killed_before_the_server_may_requeue_it(site: Site) -> None:
    lease = 2.0
    site.agent(timeout=orphan_timeout(lease))
    rank = site.rank()
    last_touch = site.alive.stat().st_mtime
    site.kill_agent()
    wait_until(site.still, "the rank to be frozen", timeout=5)
    frozen_at = site.ticks()
    rank.wait(timeout=10)
    ended = (site.root / "exit").stat().st_mtime
    # The server may requeue once the lease has run out after the last renewal (at most the
    # last touch): the rank is gone before then, and did nothing after the agent died.
    assert ended - last_touch < lease, (ended - last_touch, fence_deadline(lease))
    assert site.ticks() == frozen_at
    assert site.exit_record()["orphaned"] is True
    assert site.exit_record()["exit_code"] == -signal.SIGKILL
    assert "gone past its lease" in (site.root / "log").read_text()


def test_a_rank_whose_agent_cannot_renew_its_lease_stops_though_the_agent_lives(site: Site) -> None:
    lease = 2.0
    renewed = time.time()
    site.agent(timeout=orphan_timeout(lease), renewed=renewed)  # then no renewal: a partition
    rank = site.rank("trap 'echo got TERM >> ticks; exit 143' TERM; while :; do echo x >> ticks; sleep 0.02; done")
    deadline = time.monotonic() + 10
    while rank.poll() is None:  # the agent lives and touches the file, but renews nothing
        assert time.monotonic() < deadline, "the rank was not stopped"
        site.touch(orphan_timeout(lease), renewed)
        time.sleep(0.05)
    ended = (site.root / "exit").stat().st_mtime
    assert ended - renewed < lease, ended - renewed
    assert site.exit_record()["orphaned"] is True
    assert "got TERM" in (site.root / "ticks").read_text()  # not frozen: SIGTERM, then the grace
    assert "could not renew its lease" in (site.root / "log").read_text()


def test_the_fence_comes_before_the_requeue_for_every_lease() -> None:
    for lease in (2, 3, 5, 8, 12, 20, 30, 60, 300, 3600):
        assert fence_deadline(lease) < lease, lease


def test_a_rank_whose_lease_is_over_before_it_starts_never_runs(site: Site, tmp_path: Path) -> None:
    """An attempt handed over late (a burst of starts, a long silence): if the last renewal is
    already older than the orphan timeout, the job must not do anything at all."""
    site.agent(timeout=6, renewed=time.time() - 10)
    argv = [sys.executable, "-I", "-S", SUPERVISOR, "--exit", str(tmp_path / "exit"), "--alive", str(site.alive)]
    argv += ["--log", str(tmp_path / "log"), "--", "/bin/bash", "-c", "echo x >> ticks"]
    subprocess.run(argv, cwd=tmp_path, start_new_session=True, timeout=30, check=False)
    assert site.ticks() == 0
    assert site.exit_record() == {"exit_code": -signal.SIGKILL, "orphaned": True, "oom_kills": 0}
    assert "was not started" in (tmp_path / "log").read_text()


def test_a_frozen_rank_whose_agent_folder_is_gone_is_killed_not_left_paused(site: Site) -> None:
    """No orphan timeout (0: the agent does not fence), the agent dies, and its work folder is
    removed: no agent can ever adopt the rank, so it must not stay paused for ever."""
    site.agent(timeout=0)
    rank = site.rank()
    site.kill_agent()
    wait_until(site.still, "the rank to be frozen", timeout=5)
    site.alive.unlink()
    rank.wait(timeout=10)
    assert site.exit_record()["orphaned"] is True
    assert "work folder is gone" in (site.root / "log").read_text()


def test_a_ranks_container_is_paused_with_it_and_removed_when_it_is_killed(site: Site) -> None:
    """podman runs a container outside the rank's process group: SIGSTOP to the group stops the
    ``podman run`` client only, so the freeze pauses the container too, and the kill removes it."""
    image = require_test_image()
    podman = find_podman() or "podman"
    name = f"suanli-fence-{uuid.uuid4().hex[:8]}"
    site.agent(timeout=30)
    run = [podman, "--runtime", "runc", "run", "--rm", "--name", name, "--ulimit", "nofile=1024:1024"]
    run += ["--ulimit", "nproc=1024:1024", "--network", "none", "-v", f"{site.root}:/w", image]
    run += ["sh", "-c", "while :; do echo x >> /w/ticks; sleep 0.02; done"]
    argv = [sys.executable, "-I", "-S", SUPERVISOR, "--exit", str(site.root / "exit"), "--alive", str(site.alive)]
    argv += ["--log", str(site.root / "log"), "--container", name, "--podman", podman, "--", *run]
    rank = subprocess.Popen(argv, cwd=site.root, start_new_session=True, stdout=subprocess.DEVNULL)
    site.ranks.append(rank)
    try:
        wait_until(lambda: site.ticks() > 2, "the container to tick", timeout=30)
        site.kill_agent()
        wait_until(site.still, "the container to be paused", timeout=5)  # long before the 30 s fence
        assert rank.poll() is None
        site.alive.unlink()  # no agent can adopt it any more: killed, and its container removed
        rank.wait(timeout=20)
        assert site.still(), "the container did nothing once its rank was killed"
        assert not container_exists(name)
        assert site.exit_record()["orphaned"] is True
    finally:
        subprocess.run([podman, "rm", "--force", "--ignore", "--time", "0", name], capture_output=True, check=False)
