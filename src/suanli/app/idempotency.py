"""``Idempotency-Key`` on submissions: a retried ``POST /api/v1/jobs`` never makes a second job.

The convention is Stripe's and the IETF draft's (draft-ietf-httpapi-idempotency-key-header):
the client sends a unique key with each new request and the same key with every retry of it.
Within :data:`RETENTION` the server answers a repeat with the job the first request made (201,
the job as it is now, and ``Idempotent-Replayed: true``). The same key with a different body,
or from another user of the tenant, is refused with 422: reusing a key for a new request is a
client bug, and answering it with an old job would hide the bug.

Keys are unique per tenant (the table's primary key), and the key is claimed in the same
transaction as the job (:func:`submit_once`), so concurrent duplicates make one job: the
second claim finds the first's row (on PostgreSQL it waits for the first to commit), its job
is rolled back, and it answers with the first job.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from suanli.app import arrays, jobs
from suanli.app.errors import Conflict, Unprocessable
from suanli.core.api import JobOut, JobSubmit
from suanli.store.db import Database
from suanli.store.models import IdempotencyKey, Job

HEADER = "Idempotency-Key"
#: How long a key is remembered (and a retry answered with the first job).
RETENTION = timedelta(hours=24)
#: Printable ASCII without spaces, 1 to 255 characters (a UUID is 36).
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def parse_key(raw: str | None) -> str | None:
    """The key from the header (None: no header). The IETF draft writes it as a structured-field
    string (``"…"``); Stripe's clients send it bare. Both are taken."""
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not _KEY_RE.match(key):
        raise Unprocessable(
            f"the {HEADER} header must be 1 to 255 printable ASCII characters without spaces "
            "(a fresh UUID per submission, e.g. uuid4); send the same key only when retrying the same request"
        )
    return key


def fingerprint(body: JobSubmit) -> str:
    """The request body in a canonical form (sorted keys), hashed: key order does not matter."""
    text = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def replay(session: Session, *, tenant: str, key: str, user: str, print_: str, now: datetime) -> JobOut | None:
    """The job a live earlier request with this key made (None: the key is new, or expired).
    Raises 422 when the key was used with another body or by another user."""
    row = session.get(IdempotencyKey, (tenant, key))
    if row is None:
        return None
    job = session.scalar(select(Job).where(Job.id == row.job_id))
    array = arrays.find_array(session, row.job_id) if job is None else None
    if row.created_at <= now - RETENTION or (job is None and array is None):
        session.delete(row)  # expired and not swept yet: the key is free again
        session.flush()
        return None
    if row.user != user:
        raise Unprocessable(
            f"the {HEADER} '{key}' was already used by another user of tenant {tenant}; "
            "send a fresh key with every new submission"
        )
    if row.fingerprint != print_:
        raise Unprocessable(
            f"the {HEADER} '{key}' was already used for a different request (job {row.job_id}); "
            "send a fresh key with every new submission, and the same key only to retry the same request"
        )
    if job is not None:
        return jobs.to_out(job, jobs.attempts_of(session, [job])[job.seq])
    return arrays.show(session, *array) if array is not None else None


def submit_once(
    db: Database,
    *,
    tenant: str,
    key: str,
    user: str,
    body: JobSubmit,
    now: datetime,
    make: Callable[[Session], JobOut],
    look_first: bool = False,
) -> tuple[JobOut, bool]:
    """Make the job with ``make`` (in a write transaction) unless this tenant's ``key`` made one
    already; returns the job and whether it is that earlier one. The key is claimed in the
    job's own transaction, after the job's insert, with ``ON CONFLICT DO NOTHING``: a new key
    costs one statement and no read; a taken one rolls the new job back and answers with the
    first. ``look_first``: look the key up before ``make`` (when ``make`` could refuse a retry
    the first job made possible, e.g. a budget it used up)."""
    print_ = fingerprint(body)
    for _ in range(2):  # a second round only after an expired key was cleared
        try:
            with db.session() as session:
                if look_first:
                    first = replay(session, tenant=tenant, key=key, user=user, print_=print_, now=now)
                    if first is not None:
                        return first, True
                out = make(session)
                if not _claim(session, tenant=tenant, key=key, user=user, print_=print_, job_id=out.id, now=now):
                    raise Taken  # rolls this job back
                return out, False
        except Taken:
            with db.session() as session:
                first = replay(session, tenant=tenant, key=key, user=user, print_=print_, now=now)
            if first is not None:
                return first, True
    raise Conflict(f"a request with {HEADER} '{key}' is in progress; retry it in a moment")


class Taken(Exception):
    """The key was claimed already (maybe a moment ago, by a concurrent request)."""


def claim_or_raise(
    session: Session, *, tenant: str, key: str, user: str, body: JobSubmit, job_id: str, now: datetime
) -> None:
    """Claim ``key`` for ``job_id`` in ``session`` (the group commit's batch); raises :class:`Taken`
    when the tenant has the key already, so the batch is written again one submission at a time
    and :func:`submit_once` answers the retry."""
    if not _claim(session, tenant=tenant, key=key, user=user, print_=fingerprint(body), job_id=job_id, now=now):
        raise Taken


def _claim(session: Session, *, tenant: str, key: str, user: str, print_: str, job_id: str, now: datetime) -> bool:
    """Record the key beside the job; False when the tenant has it already. On PostgreSQL a
    concurrent transaction holding the same key makes this wait for it, then answer False."""
    statement = _CLAIM["postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"]
    row = {"tenant": tenant, "key": key, "user": user, "fingerprint": print_, "job_id": job_id, "created_at": now}
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT DO NOTHING.
    return session.execute(statement, row).first() is not None


#: Built once (a Core statement on the table; its compiled form is cached): on the hot path.
_TABLE = cast(Table, IdempotencyKey.__table__)
_CLAIM = {
    "sqlite": sqlite_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.key),
    "postgresql": pg_insert(_TABLE).on_conflict_do_nothing().returning(_TABLE.c.key),
}


def sweep(session: Session, now: datetime) -> int:
    """Forget keys older than the retention; returns how many."""
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - RETENTION))
    return int(getattr(result, "rowcount", 0) or 0)
