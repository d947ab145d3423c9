"""Several front-desk replicas on one PostgreSQL database: exactly one schedules (the leader,
holding an advisory lock), a replica takes over when the leader's session dies, and a deposed
leader's late write is refused by the fencing epoch (``app/leadership.py``)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from suanli.app.control import ControlPlane
from suanli.app.leadership import LOCK_KEY
from suanli.app.settings import Settings
from suanli.core.spec import JobSpec
from tests.db_support import drop_database, fresh_database
from tests.integration.conftest import start_net

JOB = JobSpec.model_validate({"run": "true", "resources": {"cpus": 1}})


def _kill_lock_session(control: ControlPlane) -> None:
    """What the leader's death looks like to PostgreSQL: the session holding the lock ends."""
    with control.db.engine.connect() as conn:
        pid = conn.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = :low AND granted"),
            {"low": LOCK_KEY & 0xFFFFFFFF},
        ).scalar_one()
        # Returns once the session has ended (its lock released), or fails after 10 s.
        assert conn.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()


def test_one_replica_leads_another_takes_over_and_a_deposed_leaders_write_is_refused(tmp_path: Path) -> None:
    url = fresh_database()
    try:
        with start_net(tmp_path, database_url=url) as net:
            net.fake_agent("beijing")
            a = net.control
            b = ControlPlane(a.settings, clock=net.clock)  # a second replica: same database and keys
            try:
                a.tick()
                assert a.leadership.leads
                assert a.leadership.epoch == 1
                assert b.tick().placed == 0
                assert not b.leadership.leads

                first = net.client.submit(JOB)
                b.tick()  # a follower places nothing
                assert net.state(first.id) == "PENDING"
                net.cycle()  # the leader does
                assert net.state(first.id) != "PENDING"

                second = net.client.submit(JOB)
                _kill_lock_session(a)  # the leader's session dies; it does not know yet
                assert b.lead()
                assert b.leadership.epoch == 2
                assert a.tick().placed == 0  # its write is fenced off: epoch 1 is not the leader's
                assert not a.leadership.leads
                assert net.state(second.id) == "PENDING"
                assert b.tick().placed == 1
                assert net.state(second.id) != "PENDING"

                b.close()  # the lead is given up at shutdown; the old leader takes it back
                assert a.lead()
                assert a.leadership.epoch == 3
            finally:
                b.close()
    finally:
        drop_database(url)


def test_on_sqlite_the_one_server_always_leads(tmp_path: Path) -> None:
    with start_net(tmp_path, database_url=f"sqlite:///{tmp_path / 'one.db'}") as net:
        assert net.control.lead()
        assert net.control.leadership.epoch == 0


def test_a_bump_on_one_replica_wakes_a_waiter_on_another_and_a_followers_kick_reaches_the_leader(
    tmp_path: Path,
) -> None:
    url = fresh_database()
    a = ControlPlane(Settings(home=tmp_path / "a", database_url=url))
    b = ControlPlane(Settings(home=tmp_path / "b", database_url=url))
    try:
        for replica in (a, b):
            replica.signals.relay = replica.crosstalk.send  # what start() does, without the loop
            replica.crosstalk.start()
            assert replica.crosstalk.listening.wait(10)
        seen = b.signals.version("site:beijing")
        a.signals.bump("site:beijing")  # e.g. an attempt assigned: beijing's long poll is on b
        assert b.signals.wait("site:beijing", seen, timeout=10) == seen + 1
        assert a.signals.version("site:beijing") == 1  # its own notification is not counted twice

        assert a.lead()
        assert not b.lead()
        woken = threading.Event()
        a._kick.clear()
        threading.Thread(target=lambda: woken.set() if a._kick.wait(10) else None, daemon=True).start()
        b.kick()  # a submission on the follower asks the leader for a pass
        assert woken.wait(10)
    finally:
        a.close()
        b.close()
        drop_database(url)
