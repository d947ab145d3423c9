"""The databases the suite runs on: SQLite (the embedded default) and PostgreSQL.

``SUANLI_TEST_DB=postgres`` puts every in-process network (``start_net``) and every
``suanli up`` the e2e harness starts on its own fresh PostgreSQL database, cloned from a migrated
template in one private cluster that this test session starts (``suanli.launch.postgres``: initdb
into a temporary folder, a free loopback port, no system service). ``make test`` runs the
integration and e2e tests a second time that way.

A test that always needs PostgreSQL calls :func:`require_postgres`: without PostgreSQL's server
programs it is skipped with a loud reason on a developer's machine and FAILS under ``CI=true``
(``make test`` installs Debian's ``postgresql`` package when root).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from suanli.adaptors import psycopg_module
from suanli.launch.postgres import LocalPostgres, PostgresUnavailable
from suanli.store.db import Database
from tests.engines_support import in_ci

TEMPLATE = "suanli_template"
_names = itertools.count()


class _Session:
    """This test session's cluster, or why it could not start (tried once)."""

    lock = threading.Lock()
    cluster: LocalPostgres | None = None
    problem: str | None = None


def backend() -> str:
    """The database the integration and e2e tests run on: 'sqlite' (default) or 'postgres'."""
    chosen = os.environ.get("SUANLI_TEST_DB", "sqlite").strip().lower() or "sqlite"
    if chosen not in ("sqlite", "postgres"):
        raise ValueError(f"SUANLI_TEST_DB must be 'sqlite' or 'postgres', not {chosen!r}")
    return chosen


def _stop(cluster: LocalPostgres) -> None:
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.folder, ignore_errors=True)


def cluster() -> LocalPostgres:
    """The session's PostgreSQL cluster (started on first use, stopped at exit), with the
    template database migrated to the newest schema."""
    with _Session.lock:
        if _Session.cluster is not None:
            return _Session.cluster
        if _Session.problem is not None:
            raise PostgresUnavailable(_Session.problem)
        try:
            made = LocalPostgres(Path(tempfile.mkdtemp(prefix="suanli-test-pg-")))
            made.init()
            made.start(durable=False)
            atexit.register(_stop, made)
            db = Database(made.create_database(TEMPLATE))
            try:
                db.migrate()
            finally:
                db.dispose()
        except PostgresUnavailable as exc:
            _Session.problem = str(exc)
            raise
        _Session.cluster = made
        return made


def require_postgres() -> LocalPostgres:
    """The cluster, or skip loudly (fail under CI=true) when PostgreSQL cannot start here."""
    try:
        return cluster()
    except PostgresUnavailable as exc:
        if in_ci():
            pytest.fail(f"CI=true and PostgreSQL cannot start: {exc}", pytrace=False)
        pytest.skip(f"POSTGRESQL TEST SKIPPED: {exc}")


def fresh_database() -> str:
    """A new, migrated PostgreSQL database for one test; returns its SQLAlchemy URL."""
    pg = require_postgres()
    return pg.create_database(f"t{os.getpid()}_{next(_names)}", template=TEMPLATE)


def drop_database(url: str) -> None:
    """Drop a database :func:`fresh_database` made (its connections are closed by force)."""
    if _Session.cluster is None:
        return
    name = url.rsplit("/", 1)[1]
    with psycopg_module().connect(_Session.cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url_for_test() -> str | None:
    """For SUANLI_TEST_DB=postgres a fresh database's URL; None means SQLite under the home."""
    return fresh_database() if backend() == "postgres" else None


def dump_database(url: str) -> bytes:
    """Everything a database holds, as ``pg_dump`` writes it (plain SQL)."""
    pg = require_postgres()
    name = url.rsplit("/", 1)[1]
    argv = [str(pg.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "--no-owner", name]
    env = {**os.environ, "PGPASSWORD": pg.password}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=True)
    return done.stdout
