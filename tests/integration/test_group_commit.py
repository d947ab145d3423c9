"""Group commit (``app/groupcommit.py``): submissions that arrive together share one
transaction, each is answered with its own job once it committed, and one refused submission
costs the others nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, func, select

from suanli.app import jobrequests
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.groupcommit import GroupCommit, write_batch
from suanli.app.settings import Settings
from suanli.core.api import JobSubmit
from suanli.core.clock import ManualClock
from suanli.core.identity import Identity, Role, Scope
from suanli.core.network import parse_network
from suanli.store.models import Job
from tests.integration.conftest import NETWORK

T = TypeVar("T")
ADMIN = Identity("admin", Role.ADMIN, None, scopes=frozenset(Scope))


def run_apart(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` on a thread of its own: this thread may already run an event loop
    (Playwright's sync API leaves one behind in the browser tests that run earlier)."""
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(main())))
    thread.start()
    thread.join()
    assert out, "the coroutine raised (see the thread's traceback above)"
    return out[0]


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(Settings(home=tmp_path / "home"), clock=ManualClock())
    plane.migrate()
    plane.apply_network(parse_network(NETWORK))
    try:
        yield plane
    finally:
        plane.close()


def _submission(control: ControlPlane, spec: dict[str, Any], key: str | None = None) -> jobrequests.Submission:
    return jobrequests.prepare_submit(control, ADMIN, JobSubmit(spec=spec), key)


def _commits(control: ControlPlane) -> list[int]:
    commits: list[int] = []
    event.listen(control.db.engine, "commit", lambda _conn: commits.append(1))
    return commits


def test_submissions_that_arrive_together_share_one_commit(control: ControlPlane) -> None:
    commits = _commits(control)
    group = GroupCommit()

    async def burst() -> list[tuple[Any, bool]]:
        return await asyncio.gather(*(group.write(_submission(control, {"run": f"job {i}"})) for i in range(5)))

    answers = run_apart(burst)
    assert len(commits) == 1
    assert len({out.id for out, _ in answers}) == 5
    assert not any(replayed for _, replayed in answers)
    with control.db.read() as session:
        runs = {row.id: row.spec["run"] for row in session.execute(select(Job.id, Job.spec))}
    assert [runs[out.id] for out, _ in answers] == [f"job {i}" for i in range(5)]


def test_one_refused_submission_leaves_the_others_their_jobs(control: ControlPlane) -> None:
    batch = [
        _submission(control, {"run": "first"}),
        _submission(control, {"run": "waits", "after": ["zzzzzzzz"]}),
        _submission(control, {"run": "third"}),
    ]
    outcomes = write_batch(batch)
    assert isinstance(outcomes[1], Unprocessable)
    assert "no job 'zzzzzzzz'" in str(outcomes[1])
    firsts = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(o, tuple) for o in firsts)
    with control.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2


def test_keyed_submissions_share_one_commit_and_claim_their_keys(control: ControlPlane) -> None:
    commits = _commits(control)
    group = GroupCommit()

    async def burst() -> list[tuple[Any, bool]]:
        return await asyncio.gather(*(group.write(_submission(control, {"run": "x"}, key=f"k-{i}")) for i in range(4)))

    answers = run_apart(burst)
    assert len(commits) == 1
    assert len({out.id for out, _ in answers}) == 4

    async def retry() -> tuple[Any, bool]:
        return await group.write(_submission(control, {"run": "x"}, key="k-2"))

    again, replayed = run_apart(retry)
    assert replayed
    assert again.id == answers[2][0].id


def test_a_key_twice_in_one_batch_makes_one_job(control: ControlPlane) -> None:
    group = GroupCommit()

    async def burst() -> list[tuple[Any, bool]]:
        return await asyncio.gather(
            group.write(_submission(control, {"run": "x"}, key="k-1")),
            group.write(_submission(control, {"run": "x"}, key="k-1")),
            group.write(_submission(control, {"run": "y"}, key="k-2")),
            group.write(_submission(control, {"run": "x", "array": "0-2"})),
        )

    (first, first_replayed), (again, replayed), (other, _), (array, _) = run_apart(burst)
    assert first.id == again.id
    assert [first_replayed, replayed] == [False, True]
    assert other.id != first.id
    assert array.array is not None
    with control.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.array_id.is_(None))) == 2
