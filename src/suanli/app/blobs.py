"""Keeping the blob store (``app/blobstore.py``) from growing without end: workdir archives and
checkpoints that nothing needs any more are deleted.

A blob is kept while anything may still read it:

- the workdir of a job that has not ended, or ended less than ``retention`` ago (a retry, a
  ``suanli logs``-style look back, an operator's question);
- the latest checkpoint of such a job (``job_checkpoints``; an older one of the same job was
  replaced and is not served any more);
- a workdir uploaded less than ``retention`` ago (a client uploads before it submits).

Everything else goes: the file, its ``blobs``/``blob_tenants`` rows, and the checkpoint rows of
jobs that ended before the retention. Upload leftovers (``.upload-*``, from a server stopped
mid-upload) go after a day, and no blob written within the last hour is touched. The scheduler
loop runs this every hour.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from suanli.app.blobstore import BlobStore
from suanli.store.models import Blob, BlobTenant, Job, JobCheckpoint

log = logging.getLogger("suanli.server")

#: How long an aborted upload's temporary file may stay.
UPLOAD_LEFTOVER_S = 86400.0
#: A blob written this recently is never deleted: an upload puts its bytes in the store just
#: before its row is written, and the sweep must not fall between the two.
RECENT_S = 3600.0


@dataclass
class Swept:
    files: int = 0
    bytes: int = 0


def needed(session: Session, now: datetime, retention: timedelta) -> set[str]:
    """Digests of the blobs something may still read."""
    cutoff = now - retention
    live = or_(Job.finished_at.is_(None), Job.finished_at >= cutoff)
    keep = {d for (d,) in session.execute(select(Job.workdir_digest).where(live, Job.workdir_digest.is_not(None)))}
    keep |= {
        d
        for (d,) in session.execute(
            select(JobCheckpoint.digest).join(Job, Job.seq == JobCheckpoint.job_seq).where(live)
        )
    }
    keep |= {d for (d,) in session.execute(select(Blob.digest).where(Blob.created_at >= cutoff))}
    return {d for d in keep if d}


def sweep(session: Session, store: BlobStore, spool: Path, now: datetime, retention: timedelta) -> Swept:
    """Delete what nothing needs (archives first, then rows, in the caller's transaction), and
    upload leftovers in ``spool`` older than a day."""
    keep = needed(session, now, retention)
    swept = Swept()
    wall = time.time()
    for path in spool.glob(".upload-*"):
        try:
            st = path.stat()
            if wall - st.st_mtime <= UPLOAD_LEFTOVER_S:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        swept.files += 1
        swept.bytes += st.st_size
    stale = store.stale(session, keep, now, timedelta(seconds=RECENT_S))
    gone = [digest for digest, _ in stale]
    store.remove(session, gone)
    swept.files += len(stale)
    swept.bytes += sum(size for _, size in stale)
    cutoff = now - retention
    ended = select(Job.seq).where(Job.finished_at < cutoff)
    session.execute(delete(JobCheckpoint).where(JobCheckpoint.job_seq.in_(ended)))
    for start in range(0, len(gone), 500):
        batch = gone[start : start + 500]
        session.execute(delete(BlobTenant).where(BlobTenant.digest.in_(batch)))
        session.execute(delete(Blob).where(Blob.digest.in_(batch)))
    if swept.files:
        log.info("deleted %d blobs nothing needs any more (%.1f MiB)", swept.files, swept.bytes / 2**20)
    return swept
