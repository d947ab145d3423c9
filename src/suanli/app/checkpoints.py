"""Checkpoints that follow a job from site to site.

An agent uploads a job's ``SUANLI_CHECKPOINT_DIR`` (a ``.tar.gz``) when an attempt ends and,
while it runs, whenever the folder changed (every minute at most). The server keeps the latest
one per job (:class:`JobCheckpoint`; the bytes by SHA-256 under ``$SUANLI_HOME/blobs``, checked
like workdirs). When the job's next attempt is placed at another site than the one that made it,
the attempt's assignment names it and that site's agent fetches it before the job starts.

Who may do what, all by the site token, and every time through an attempt the site holds:

- An upload names an attempt of the uploading site; it becomes the job's checkpoint if the
  attempt is the job's current one, or an older one while the current attempt has not yet been
  handed to its agent (a late final upload then still reaches the retry). Otherwise it is stale
  (409): a newer attempt may already have resumed from something else.
- A download names the digest and an active attempt of the fetching site; it is served only if
  the digest is the checkpoint of that attempt's job. No request names a job, so no site ever
  gets another job's (or another tenant's) checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from suanli.app.errors import Conflict, NotFound
from suanli.app.records import job_spec
from suanli.app.sites import ACTIVE_ATTEMPT_STATES
from suanli.core.protocol import CheckpointReceipt
from suanli.core.states import JobState
from suanli.store.models import Attempt, Job, JobCheckpoint


def keeps_checkpoint(job: Job) -> bool:
    return job_spec(job).checkpoint.keep


def attempt_of_site(session: Session, site: str, attempt_id: int) -> tuple[Attempt, Job]:
    """The attempt and its job, if the attempt is ``site``'s; else NotFound (as for a missing one)."""
    attempt = session.get(Attempt, attempt_id)
    job = session.get(Job, attempt.job_seq) if attempt is not None and attempt.site == site else None
    if attempt is None or job is None:
        raise NotFound(f"no attempt {attempt_id} at site '{site}'")
    return attempt, job


def check_upload(session: Session, site: str, attempt_id: int) -> tuple[Attempt, Job]:
    """The attempt and its job if ``site`` may upload the job's checkpoint for it now; raises
    NotFound (not this site's attempt) or Conflict (stale, or a job that keeps no checkpoint)."""
    attempt, job = attempt_of_site(session, site, attempt_id)
    if not keeps_checkpoint(job):
        raise Conflict(f"job {job.id} does not keep its checkpoint folder (checkpoint.keep: false)")
    if JobState(job.state).is_terminal():
        raise Conflict(f"job {job.id} has ended ({job.state}); its checkpoint is no longer needed")
    if job.current_attempt_id != attempt.id:
        current = session.get(Attempt, job.current_attempt_id) if job.current_attempt_id is not None else None
        if current is not None and current.delivered:
            raise Conflict(
                f"attempt {attempt.number} of job {job.id} is no longer its current one: attempt "
                f"{current.number} at {current.site} has started, so this checkpoint is stale"
            )
    latest = session.get(JobCheckpoint, job.seq)
    if latest is not None and latest.attempt_id > attempt.id:
        raise Conflict(f"job {job.id} already has a checkpoint from a newer attempt")
    return attempt, job


def record_upload(
    session: Session, site: str, attempt_id: int, digest: str, size: int, now: datetime
) -> CheckpointReceipt:
    """Make the uploaded archive the job's latest checkpoint (checked again: the upload took time)."""
    attempt, job = check_upload(session, site, attempt_id)
    row = session.get(JobCheckpoint, job.seq)
    if row is None:
        row = JobCheckpoint(job_seq=job.seq, digest=digest, size=size, site=site, attempt_id=attempt.id, created_at=now)
        session.add(row)
    else:
        row.digest, row.size, row.site, row.attempt_id, row.created_at = digest, size, site, attempt.id, now
    return CheckpointReceipt(job_id=job.id, attempt_id=attempt.id, digest=digest, size=size, site=site, stored_at=now)


def carried_digest(session: Session, job: Job, attempt: Attempt) -> str | None:
    """The checkpoint ``attempt`` must start from, if another site made the job's latest one
    (an attempt at the site that made it finds its own, at least as new, in its folder)."""
    if not keeps_checkpoint(job):
        return None
    latest = session.get(JobCheckpoint, job.seq)
    if latest is None or latest.site == attempt.site:
        return None
    return latest.digest


def may_download(session: Session, site: str, attempt_id: int, digest: str) -> bool:
    """Whether ``attempt_id`` is an active attempt at ``site`` whose job's checkpoint is ``digest``."""
    attempt = session.get(Attempt, attempt_id)
    if attempt is None or attempt.site != site or attempt.state not in ACTIVE_ATTEMPT_STATES:
        return False
    latest = session.get(JobCheckpoint, attempt.job_seq)
    return latest is not None and latest.digest == digest


def latest_of(session: Session, job: Job) -> JobCheckpoint | None:
    """The job's latest checkpoint (for listings and tests)."""
    return session.get(JobCheckpoint, job.seq)
