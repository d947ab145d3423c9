"""What site agents ask of the front desk, one call per request: register, report and take
orders, fetch a workdir, a dataset or a checkpoint, hand in a checkpoint or an output. Each call
authenticates the site by its token in the same transaction as its work. The heartbeat's long
poll (waiting for orders without holding a thread) stays with the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from suanli.app import agents, checkpoints, outputs, registry, uploads
from suanli.app.blobstore import BlobRead
from suanli.app.control import ControlPlane
from suanli.app.errors import Conflict, NotFound, Unauthorized
from suanli.app.sites import authenticate_site, site_for_token
from suanli.core.api_data import DatasetOut
from suanli.core.protocol import CheckpointReceipt, HeartbeatRequest, RegisterRequest, RegisterResponse, StoreOrder
from suanli.datachain.manifest import Manifest

HeartbeatOutcome = agents.HeartbeatOutcome


def register(control: ControlPlane, req: RegisterRequest, token: str | None) -> RegisterResponse:
    now = control.clock.now()
    with control.db.session() as session:
        site = authenticate_site(session, req.site, token)
        changed = agents.register(session, site, req, now)
    if changed:
        control.invalidate_capacity()
    control.capacity_changed()
    return RegisterResponse(
        site=req.site, lease_s=control.settings.lease_s, heartbeat_s=control.settings.heartbeat_s, server_time=now
    )


def record_heartbeat(control: ControlPlane, req: HeartbeatRequest, token: str | None) -> HeartbeatOutcome:
    """The site's reports written, its first orders collected, and whoever waits on what
    changed (the scheduler, log followers, job lists) woken."""
    policy = control.scheduler_config.policy
    with control.db.session() as session:
        site = authenticate_site(session, req.site, token)
        out = agents.record_heartbeat(
            session,
            site,
            req,
            control.clock.now(),
            control.settings.lease_s,
            policy.preempt_grace_s,
            control.secrets,
            policy=policy,
        )
    if out.inventory_changed:
        control.invalidate_capacity()
    if out.logs_added or out.changed_jobs:
        control.signals.bump("logs", "jobs")
    if out.freed_capacity or out.inventory_changed:
        control.capacity_changed()
    return out


def collect_orders(control: ControlPlane, req: HeartbeatRequest, token: str | None, out: HeartbeatOutcome) -> None:
    """Orders placed for the site since its report, added to ``out`` (a long poll's wake-up)."""
    grace = control.scheduler_config.policy.preempt_grace_s
    with control.db.session() as session:
        site = authenticate_site(session, req.site, token)
        agents.collect_orders(session, site, control.clock.now(), out, grace, control.secrets)


def data_orders(control: ControlPlane, site: str) -> tuple[list[StoreOrder], list[StoreOrder]]:
    """What the (authenticated) site's agent is to send from its store, and to take into it."""
    send, store = control.agent_copies.orders(site)
    return send, uploads.store_orders(control, site) + store


def workdir_file(control: ControlPlane, token: str | None, digest: str) -> BlobRead:
    """The workdir archive ``digest``, if a job placed at the token's site runs from it."""
    with control.db.read() as session:
        site = site_for_token(session, token)
        if not agents.site_runs_workdir(session, site.name, digest):
            raise NotFound(f"no workdir {digest} for site '{site.name}'")
    found = control.blobs.read(digest)
    if found is None:
        raise NotFound(f"no workdir {digest}")
    return found


@dataclass(frozen=True)
class DatasetBytes:
    chunks: Iterator[bytes]
    size: int


def dataset_bytes(control: ControlPlane, token: str | None, attempt: int, name: str) -> DatasetBytes:
    """A dataset's plain bytes from the site's own copy (each chunk verified against its
    manifest), for an attempt at that site whose job reads it. Nothing crosses sites here.

    The read is a movement of bytes (from the site's store to the job), so it goes on the
    ledger (``read``: dataset, site, job, attempt, Merkle root, size) before the first byte is
    handed out; a fetch the agent repeats is another read, and another entry."""
    now = control.clock.now()
    with control.db.session() as session:
        site = site_for_token(session, token)
        _check_read(session, site.name, attempt, name)
        store = control.chain.store(site.name)
        if not store.has(name):
            raise NotFound(
                f"the server holds no copy of dataset '{name}' for site '{site.name}': "
                "a dataset registered at the site rests in its agent's store, which reads it there"
            )
        manifest = store.manifest_of(name)
        _record_read(control, session, site.name, attempt, name, manifest.root, manifest.size, "server", now)
    control.chain.seal()
    return DatasetBytes(store.read_plain(name), manifest.size)


def record_site_read(control: ControlPlane, token: str | None, attempt: int, name: str, root: str) -> DatasetOut:
    """An agent about to hand a job the copy of ``name`` in its own store: the read goes on the
    ledger (``read``, ``"from": "site store"``) before the job gets a byte. The copy must be the
    registered one (its Merkle root), at the dataset's home or a replica of this site."""
    now = control.clock.now()
    with control.db.session() as session:
        site = site_for_token(session, token)
        _check_read(session, site.name, attempt, name)
        ds = registry.get_dataset(session, name)
        if site.name != ds.home_site and site.name not in registry.replicas_of(session, name):
            raise NotFound(f"site '{site.name}' holds no copy of dataset '{name}' on the record")
        if root != ds.root:
            raise Conflict(f"the copy of '{name}' at site '{site.name}' is not the registered one (its root differs)")
        _record_read(control, session, site.name, attempt, name, ds.root, ds.size, "site store", now)
        out = registry.dataset_out(session, ds)
    control.chain.seal()
    return out


def _check_read(session: Session, site: str, attempt: int, name: str) -> None:
    if not agents.site_reads_dataset(session, site, attempt, name):
        raise NotFound(f"no dataset '{name}' for attempt {attempt} at site '{site}'")


def _record_read(
    control: ControlPlane,
    session: Session,
    site: str,
    attempt: int,
    name: str,
    root: str,
    size: int,
    source: str,
    now: datetime,
) -> None:
    body = {
        "dataset": name,
        "site": site,
        "job": agents.job_of_attempt(session, attempt),
        "attempt": attempt,
        "root": root,
        "bytes": size,
        "from": source,
    }
    control.chain.ledger.record(session, "read", body, now)


def check_checkpoint_upload(control: ControlPlane, token: str | None, attempt: int) -> None:
    """Refuses (before the body is read) an upload for an attempt that is not the job's latest."""
    with control.db.read() as session:
        checkpoints.check_upload(session, site_for_token(session, token).name, attempt)


def record_checkpoint(
    control: ControlPlane, token: str | None, attempt: int, digest: str, size: int, spooled: Path
) -> CheckpointReceipt:
    """The checked upload at ``spooled`` becomes the job's latest checkpoint (put in the blob
    store first; checked again against the attempt when it is recorded)."""
    control.blobs.put(digest, spooled, control.clock.now())
    with control.db.session() as session:
        site = site_for_token(session, token)
        return checkpoints.record_upload(session, site.name, attempt, digest, size, control.clock.now())


def checkpoint_file(control: ControlPlane, token: str | None, attempt: int, digest: str) -> BlobRead:
    """The checkpoint an attempt at the token's site starts from."""
    with control.db.read() as session:
        site = site_for_token(session, token)
        if not checkpoints.may_download(session, site.name, attempt, digest):
            raise NotFound(f"no checkpoint {digest} for attempt {attempt} at site '{site.name}'")
    found = control.blobs.read(digest)
    if found is None:
        raise NotFound(f"no checkpoint {digest}")
    return found


def check_output_upload(control: ControlPlane, token: str | None, attempt: int) -> None:
    with control.db.read() as session:
        outputs.check_upload(session, site_for_token(session, token).name, attempt)


def register_output(control: ControlPlane, token: str | None, attempt: int, path: Path, digest: str) -> DatasetOut:
    """The uploaded archive at ``path`` becomes the job's derived dataset at the token's site;
    the archive is removed either way (the site's store holds it now, sealed if need be)."""
    try:
        with control.db.read() as session:
            site = site_for_token(session, token).name
        return outputs.register(control.chain, site, attempt, path, digest, control.clock.now())
    finally:
        path.unlink(missing_ok=True)


def register_output_at_site(
    control: ControlPlane, token: str | None, attempt: int, manifest: Manifest, digest: str
) -> DatasetOut:
    """The job's output, kept in the token's site agent store, registered by its manifest."""
    with control.db.read() as session:
        site = site_for_token(session, token).name
        outputs.check_upload(session, site, attempt)
    return outputs.register_at_site(control.chain, site, attempt, manifest, digest, control.clock.now())


def site_token_valid(control: ControlPlane, token: str) -> bool:
    """Whether ``token`` is some site's agent token (asked only of an address whose failed
    sign-ins ran out: one read of the small sites table)."""
    with control.db.read() as session:
        try:
            site_for_token(session, token)
        except Unauthorized:
            return False
    return True
