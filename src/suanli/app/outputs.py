"""Job outputs: what a job writes to ``SUANLI_OUTPUT_DIR`` becomes a derived dataset.

A job whose spec names ``output: {dataset: NAME}`` gets an empty ``SUANLI_OUTPUT_DIR``. When the
attempt succeeds, its agent packs the folder (``.tar.gz``) and uploads it before it reports the
success; the server checks the archive like a workdir's, then registers it as dataset ``NAME``:

- at the site where the job ran (its home site: the bytes never left it),
- owned by the job's tenant,
- derived from the datasets the job read, with the highest level among them (C3) until someone
  re-grades it; sealed at rest when that level asks for it,
- on the ledger as ``dataset.registered`` and ``dataset.graded`` like any registration, and as
  ``output`` (job, attempt, site, dataset, archive digest).

From then on it moves like any dataset, only through the policy engine: an output of core data
stays at its site, and a copy or download of an important one needs what its route needs.
Only the site running the job's current attempt may upload, once.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from suanli.app import registry
from suanli.app.chain import Chain
from suanli.app.checkpoints import attempt_of_site
from suanli.app.errors import Conflict, Unprocessable
from suanli.app.records import job_spec
from suanli.core.api_data import DatasetOut
from suanli.core.datasets import Classification, inherit
from suanli.core.states import JobState
from suanli.datachain.manifest import DEFAULT_CHUNK, Manifest, build_manifest, check_chunk_size
from suanli.store.models import Dataset, Job


def output_name(job: Job) -> str | None:
    output = job_spec(job).output
    return output.dataset if output is not None else None


def check_upload(session: Session, site: str, attempt_id: int) -> tuple[Job, str]:
    """The job and its output's name if ``site`` may upload it for ``attempt_id`` now."""
    attempt, job = attempt_of_site(session, site, attempt_id)
    name = output_name(job)
    if name is None:
        raise Conflict(f"job {job.id} names no output (output.dataset)")
    if job.current_attempt_id != attempt.id or JobState(job.state).is_terminal():
        raise Conflict(f"attempt {attempt.number} of job {job.id} is not its running attempt; its output is not taken")
    if session.get(Dataset, name) is not None:
        raise Conflict(f"dataset '{name}' is already registered; job {job.id}'s output is not registered again")
    return job, name


def inputs_of(job: Job) -> list[str]:
    return [d.name for d in job_spec(job).datasets]


def grade_of(session: Session, job: Job, now: datetime) -> Classification:
    grades = [registry.classification_of(session, registry.get_dataset(session, d)) for d in inputs_of(job)]
    return inherit(grades, graded_by=f"job {job.id}", graded_at=now)


def register(chain: Chain, site: str, attempt_id: int, archive: Path, digest: str, now: datetime) -> DatasetOut:
    """Register the uploaded archive as the job's output (checks repeated inside the write)."""
    manifest = build_manifest(archive, DEFAULT_CHUNK)
    with chain.db.read() as s:
        job, name = check_upload(s, site, attempt_id)
        sealed = grade_of(s, job, now).sealed_at_rest
    chain.store(site).adopt(name, archive, manifest, at_rest=sealed)
    return _record(chain, site, attempt_id, manifest, digest, now, at_agent=False)


def register_at_site(
    chain: Chain, site: str, attempt_id: int, manifest: Manifest, digest: str, now: datetime
) -> DatasetOut:
    """Register the job's output that its site's agent keeps in its own store (sealed at rest),
    by its manifest: the bytes never leave the site."""
    try:
        check_chunk_size(manifest.chunk_size)
        rooted = manifest.verify_root()
    except ValueError:
        rooted = False
    if not rooted:
        raise Unprocessable("the output's manifest does not make its Merkle root")
    return _record(chain, site, attempt_id, manifest, digest, now, at_agent=True)


def _record(
    chain: Chain, site: str, attempt_id: int, manifest: Manifest, digest: str, now: datetime, *, at_agent: bool
) -> DatasetOut:
    with chain.db.session() as s:
        job, name = check_upload(s, site, attempt_id)
        ds = registry.register(
            s,
            chain,
            name=name,
            owner=job.tenant,
            home_site=site,
            manifest=manifest,
            classification=None,
            derived_from=inputs_of(job),
            graded_by=f"job {job.id}",
            now=now,
        )
        ds.home_at_agent = at_agent
        chain.ledger.record(
            s,
            "output",
            {"job": job.id, "attempt": attempt_id, "site": site, "dataset": name, "archive_sha256": digest},
            now,
        )
        out = registry.dataset_out(s, ds)
    chain.seal()
    return out
