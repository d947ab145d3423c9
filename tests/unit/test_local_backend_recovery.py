"""LocalBackend across agent restarts: adoption, supervisors' exit files, the orphan watchdog.

An "agent death" here is a backend object that is simply abandoned (nothing stops its attempts,
as after ``kill -9``); a "restarted agent" is a second backend on the same work dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suanli.agent.agent import Agent
from suanli.agent.backends.local import LocalBackend
from suanli.agent.recovery import Recoverable, orphan_timeout, read_renewed
from suanli.core.protocol import AssignedNode, AttemptAssignment
from suanli.core.states import AttemptState
from tests.unit.test_agent_loop import FakeClient
from tests.unit.test_local_backend import Watcher, assignment, group_exists, wait_until

_DIES = """
import json, os, sys, time
from pathlib import Path
from suanli.agent.backends.local import LocalBackend
from suanli.core.protocol import AttemptAssignment
timeout = float(sys.argv[2])
backend = LocalBackend(Path(sys.argv[1]), orphan_timeout_s=timeout or None)
for line in sys.stdin:
    backend.start(AttemptAssignment.model_validate_json(line), None)
backend.poll()
deadline = time.monotonic() + 10
for path, text in json.loads(sys.argv[3]):  # what must have happened while the agent lived
    while not (Path(path).exists() and text in Path(path).read_text()) and time.monotonic() < deadline:
        backend.poll()
        time.sleep(0.01)
os._exit(0)  # like kill -9: nothing is stopped, the supervisors are orphaned
"""


def start_in_an_agent_that_dies(
    site_dir: Path, *assignments: AttemptAssignment, orphan_timeout_s: float = 30, until: dict[Path, str] | None = None
) -> None:
    """Start attempts from another process that then exits, as a killed agent would: at once, or
    once each file of ``until`` holds its text (the ranks freeze the moment their agent dies)."""
    lines = "".join(a.model_dump_json() + "\n" for a in assignments)
    wait = json.dumps([[str(path), text] for path, text in (until or {}).items()])
    subprocess.run(
        [sys.executable, "-c", _DIES, str(site_dir), str(orphan_timeout_s), wait], input=lines, text=True, check=True
    )


def gate_of(site_dir: Path, attempt_id: int = 1) -> Path:
    """A file the test creates to let a job go on (in its workdir: a sandboxed job sees it)."""
    return site_dir / "attempts" / str(attempt_id) / "workdir" / "gate"


def record(site_dir: Path, attempt_id: int = 1) -> dict[str, object]:
    return dict(json.loads((site_dir / "attempts" / str(attempt_id) / "attempt.json").read_text()))


def pgids(site_dir: Path, attempt_id: int = 1) -> list[int]:
    ranks = record(site_dir, attempt_id)["ranks"]
    assert isinstance(ranks, list)
    return [int(r["pgid"]) for r in ranks]


@pytest.fixture
def cleanup() -> list[LocalBackend]:
    """Backends to stop at the end of a test, so no process outlives it."""
    held: list[LocalBackend] = []
    yield held  # type: ignore[misc]
    for backend in held:
        backend.stop_all(grace_s=0.1, timeout_s=5)


def test_local_backend_is_recoverable(tmp_path: Path) -> None:
    assert isinstance(LocalBackend(tmp_path), Recoverable)
    assert (tmp_path / "agent.alive").read_text().splitlines()[0] == "30"


def test_a_restarted_backend_adopts_a_live_attempt_and_learns_its_exit_code(
    tmp_path: Path, cleanup: list[LocalBackend]
) -> None:
    gate = gate_of(tmp_path)
    run = "echo before; while [ ! -e gate ]; do sleep 0.02; done; echo after; exit 3"
    log = tmp_path / "attempts" / "1" / "rank-0.log"
    start_in_an_agent_that_dies(tmp_path, assignment(run=run), until={log: "before"})
    wait_until(lambda: log.read_text() == "before\n", "the first line")
    data = record(tmp_path)
    data["ranks"][0]["accepted"] = len(b"before\n")  # type: ignore[index]  # the server stored it
    (tmp_path / "attempts" / "1" / "attempt.json").write_text(json.dumps(data))

    second = LocalBackend(tmp_path)
    cleanup.append(second)
    adopted = second.adopt()
    assert list(adopted) == [1]
    assert adopted[1] >= 0
    report = second.poll()[0]
    assert (report.state, report.fencing_token) == (AttemptState.RUNNING, 101)
    gate.touch()
    w2 = Watcher(second)
    w2._next_offset[(1, 0)] = len(b"before\n")  # output resumes where the server's copy ends
    report = w2.finish(1)
    assert (report.state, report.exit_code, report.message) == (AttemptState.FAILED, 3, "run exited with code 3")
    # Frozen when its agent died (a note says so), going on once adopted.
    assert [line for line in w2.output(1).splitlines() if not line.startswith("[suanli]")] == ["after"]
    assert second.adopt() == {}  # held already: adopting again changes nothing


def test_adopted_setup_goes_on_to_run(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    gate = gate_of(tmp_path)
    setup = "while [ ! -e gate ]; do sleep 0.02; done"
    start_in_an_agent_that_dies(
        tmp_path, assignment(setup=setup, run="echo run on rank $SUANLI_NODE_RANK of $SUANLI_NUM_NODES")
    )
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    assert list(second.adopt()) == [1]
    assert second.poll()[0].state is AttemptState.STARTING
    gate.touch()
    w = Watcher(second)
    assert w.finish(1).state is AttemptState.SUCCEEDED
    assert w.output(1) == "run on rank 0 of 1\n"


def test_an_attempt_that_ended_while_no_agent_watched_reports_its_end(
    tmp_path: Path, cleanup: list[LocalBackend]
) -> None:
    exit_file = tmp_path / "attempts" / "1" / "rank-0.run.exit"
    # It ended just before its agent died, which had no time to report it.
    start_in_an_agent_that_dies(tmp_path, assignment(run="echo done"), until={exit_file: "exit_code"})
    wait_until(exit_file.exists, "the supervisor to write the exit status")
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    second.adopt()
    w = Watcher(second)
    report = w.finish(1)
    assert (report.state, report.exit_code) == (AttemptState.SUCCEEDED, 0)
    assert w.output(1) == "done\n"


def test_an_attempt_killed_with_its_group_is_reported_killed(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    start_in_an_agent_that_dies(tmp_path, assignment(run="exec sleep 60"))
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    second.adopt()
    assert second.poll()[0].state is AttemptState.RUNNING
    os.killpg(pgids(tmp_path)[0], signal.SIGKILL)
    report = Watcher(second).finish(1)
    assert (report.state, report.exit_code) == (AttemptState.FAILED, -9)


def test_cancel_and_forget_reach_adopted_attempts(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    run = "echo ready; exec sleep 60"
    logs = {tmp_path / "attempts" / str(i) / "rank-0.log": "ready" for i in (1, 2)}
    start_in_an_agent_that_dies(tmp_path, assignment(1, run=run), assignment(2, run=run), until=logs)
    for attempt_id in (1, 2):  # the supervisors are up (a signal before that kills them outright)
        log = tmp_path / "attempts" / str(attempt_id) / "rank-0.log"
        wait_until(lambda log=log: log.read_text() == "ready\n", "the job to start")  # type: ignore[misc]
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    assert sorted(second.adopt()) == [1, 2]
    second.cancel(1, grace_s=5)
    report = Watcher(second).finish(1)
    assert (report.state, report.exit_code) == (AttemptState.CANCELLED, -15)
    group = pgids(tmp_path, 2)[0]
    second.forget(2)
    wait_until(lambda: not group_exists(group), "the process group to be gone")
    assert not (tmp_path / "attempts" / "2").exists()


def test_an_orphaned_attempt_stops_itself_and_is_reported_lost(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    run = "trap 'echo got TERM; exit 143' TERM; while true; do sleep 0.02; done"
    start_in_an_agent_that_dies(tmp_path, assignment(run=run), orphan_timeout_s=0.5)
    group = pgids(tmp_path)[0]
    # The agent is gone: nobody touches agent.alive any more.
    wait_until(lambda: not group_exists(group), "the supervisor to stop the orphan", timeout=10)
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    second.adopt()
    w = Watcher(second)
    report = w.finish(1)
    assert report.state is AttemptState.LOST
    assert "gone past its lease" in report.message
    # Frozen the moment its agent died, then killed: it ran no more of its code (not even its
    # SIGTERM handler), so nothing it did can go unreported.
    assert "got TERM" not in w.output(1)
    assert "paused until an agent adopts it" in w.output(1)


def test_keepalive_holds_off_the_watchdog_and_none_turns_it_off(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    backend = LocalBackend(tmp_path, orphan_timeout_s=1.0)
    cleanup.append(backend)
    backend.start(assignment(1, run="exec sleep 60"), None)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert backend.poll()[0].state is AttemptState.RUNNING  # poll touches agent.alive
        time.sleep(0.1)
    backend.set_orphan_timeout(None)
    assert (tmp_path / "agent.alive").read_text().splitlines()[0] == "0"
    time.sleep(1.5)  # untouched, but the watchdog is off
    assert group_exists(pgids(tmp_path)[0])


def test_gang_ranks_are_adopted_together(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    gate = gate_of(tmp_path)
    nodes = [AssignedNode(node="a", rank=0), AssignedNode(node="b", rank=1)]
    run = "while [ ! -e gate ]; do sleep 0.02; done; echo r$SUANLI_NODE_RANK"
    start_in_an_agent_that_dies(tmp_path, assignment(run=run, nodes=nodes))
    second = LocalBackend(tmp_path)
    cleanup.append(second)
    second.adopt()
    gate.touch()
    w = Watcher(second)
    assert w.finish(1).state is AttemptState.SUCCEEDED
    assert (w.output(1, 0), w.output(1, 1)) == ("r0\n", "r1\n")


def test_orphan_timeout_stays_inside_the_lease() -> None:
    assert orphan_timeout(30) == 24
    assert orphan_timeout(8) == 4
    assert all(orphan_timeout(lease) < lease for lease in (1, 5, 8, 30, 300))


def test_an_agent_reports_adopted_attempts_with_their_tokens(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    start_in_an_agent_that_dies(tmp_path, assignment(7, run="exec sleep 60"))
    backend = LocalBackend(tmp_path)
    cleanup.append(backend)
    client = FakeClient()
    agent = Agent(client, "s", backend, tmp_path, agent_id="a")
    agent.register()
    assert (tmp_path / "agent.alive").read_text().splitlines()[0] == "24"  # from the 30 s lease
    agent.step()
    report = client.heartbeats[-1].attempts[0]
    assert (report.attempt_id, report.fencing_token, report.state) == (7, 107, AttemptState.RUNNING)
    assert report.elapsed_s is not None
    assert report.elapsed_s >= 0


def test_attempts_the_last_agent_stopped_are_reported_lost(tmp_path: Path, cleanup: list[LocalBackend]) -> None:
    run = "echo ready; exec sleep 60"
    log = tmp_path / "attempts" / "1" / "rank-0.log"
    ended = tmp_path / "attempts" / "2" / "rank-0.run.exit"
    start_in_an_agent_that_dies(
        tmp_path, assignment(1, run=run), assignment(2, run="true"), until={log: "ready", ended: "exit_code"}
    )
    wait_until(lambda: log.read_text() == "ready\n", "the job to start")
    wait_until((tmp_path / "attempts" / "2" / "rank-0.run.exit").exists, "attempt 2 to end")
    # Attempt 1 was being stopped, attempt 2 had been cancelled, when the agent died.
    stopping = record(tmp_path, 1) | {"stopping": {"state": "CANCELLED", "message": "the agent is shutting down"}}
    (tmp_path / "attempts" / "1" / "attempt.json").write_text(json.dumps(stopping))
    ended = record(tmp_path, 2) | {"phase": "done", "state": "CANCELLED", "message": "cancelled"}
    (tmp_path / "attempts" / "2" / "attempt.json").write_text(json.dumps(ended))
    backend = LocalBackend(tmp_path, kill_grace_s=0.2)
    cleanup.append(backend)
    backend.adopt()
    w = Watcher(backend)
    first, second = w.finish(1), w.finish(2)
    assert (first.state, first.exit_code, first.message) == (AttemptState.LOST, -9, "the agent is shutting down")
    assert second.state is AttemptState.LOST


def test_a_renewal_reaches_the_liveness_file_before_the_reply_starts_anything(tmp_path: Path) -> None:
    """After a silence (a server restart), the heartbeat that renews the leases also brings new
    attempts: their supervisors must read the new renewal, or they stop their rank at once."""
    backend = LocalBackend(tmp_path, orphan_timeout_s=6)
    backend.lease_renewed(time.time() - 10)  # the last renewal before the server went away
    backend.lease_renewed(now := time.time())  # back: well within a second of the last touch
    renewed = read_renewed(tmp_path / "agent.alive")
    assert renewed is not None
    assert renewed >= now - 0.01
