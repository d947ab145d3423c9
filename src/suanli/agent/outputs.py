"""Job outputs, the agent's side: ``SUANLI_OUTPUT_DIR`` goes to the server when the job succeeds.

For an assignment that names ``output_dataset``, the agent makes an empty folder
(``outputs/<job>-<attempt>`` under its work dir) and gives the job ``SUANLI_OUTPUT_DIR``. When the
attempt succeeds, :class:`OutputCarrier` packs the folder (``.tar.gz``, only plain files and
folders) and uploads it; the success is reported only after that (or after the server refused it
for good, in which case the attempt's message says why the output was not registered). An
attempt that ends any other way uploads nothing. On Slurm and Ray the work dir must be on storage
the nodes share, as for workdirs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from suanli.agent.checkpoints import FolderTooLarge, pack
from suanli.core.protocol import AttemptAssignment, AttemptReport
from suanli.core.states import AttemptState
from suanli.datachain.manifest import DEFAULT_CHUNK, build_manifest
from suanli.datachain.site_store import SiteStore
from suanli.sdk import ApiError, ServerUnreachable
from suanli.sdk.workdir import format_bytes

log = logging.getLogger("suanli.agent.outputs")

#: The largest output folder packed (unpacked bytes); the server has its own limit too.
MAX_OUTPUT_BYTES = 16 * 2**30


class OutputClient(Protocol):
    def upload_output(self, attempt_id: int, archive: IO[bytes], size: int) -> dict[str, Any]: ...

    def register_output_at_site(self, attempt_id: int, manifest: dict[str, Any], digest: str) -> dict[str, Any]: ...


@dataclass
class _Tracked:
    assignment: AttemptAssignment
    folder: Path
    done: bool = False
    #: Why the output was not registered (the server refused it for good), if it was not.
    refused: str = ""


def output_dir(work_dir: Path, assignment: AttemptAssignment) -> Path:
    return work_dir / "outputs" / f"{assignment.job_id}-{assignment.attempt_number}"


def prepare(work_dir: Path, assignment: AttemptAssignment) -> AttemptAssignment:
    """Make the attempt's empty output folder and tell the job where it is."""
    if not assignment.output_dataset:
        return assignment
    folder = output_dir(work_dir, assignment)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return assignment.model_copy(update={"envs": {**assignment.envs, "SUANLI_OUTPUT_DIR": str(folder)}})


class OutputCarrier:
    def __init__(self, client: OutputClient, work_dir: Path, max_bytes: int = MAX_OUTPUT_BYTES) -> None:
        self.client, self.work_dir, self.max_bytes = client, work_dir, max_bytes
        #: The site's own store: outputs stay in it and only their manifest goes to the server
        #: (None: the archive is uploaded to the server, which stores it).
        self.store: SiteStore | None = None
        self.scratch = work_dir / "archives"
        self._lock = threading.Lock()
        self._syncing = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}

    def track(self, assignment: AttemptAssignment) -> None:
        if assignment.output_dataset:
            with self._lock:
                self._tracked[assignment.attempt_id] = _Tracked(assignment, output_dir(self.work_dir, assignment))

    @property
    def tracking(self) -> bool:
        with self._lock:
            return bool(self._tracked)

    def holds(self, report: AttemptReport) -> bool:
        """Whether a success must wait: its output is not settled yet."""
        if report.state != AttemptState.SUCCEEDED:
            return False
        with self._lock:
            t = self._tracked.get(report.attempt_id)
            return t is not None and not t.done

    def refused(self, attempt_id: int) -> str:
        with self._lock:
            t = self._tracked.get(attempt_id)
            return t.refused if t is not None else ""

    def forget(self, attempt_id: int) -> None:
        with self._lock:
            t = self._tracked.pop(attempt_id, None)
        if t is not None:
            shutil.rmtree(t.folder, ignore_errors=True)

    def sync(self, reports: Sequence[AttemptReport]) -> None:
        """Upload the outputs of attempts that succeeded (one sync at a time)."""
        if not self._syncing.acquire(blocking=False):
            return
        try:
            states = {r.attempt_id: r.state for r in reports}
            with self._lock:
                due = [t for t in self._tracked.values() if not t.done]
            for t in due:
                state = states.get(t.assignment.attempt_id)
                if state == AttemptState.SUCCEEDED:
                    self._upload(t)
                elif state is not None and state.is_terminal():
                    t.done = True
        finally:
            self._syncing.release()

    def _upload(self, t: _Tracked) -> None:
        a = t.assignment
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            archive = pack(t.folder, self.scratch, self.max_bytes)
        except FolderTooLarge as exc:
            self._refuse(t, str(exc))
            return
        except OSError as exc:
            self._refuse(t, f"cannot read SUANLI_OUTPUT_DIR: {exc}")
            return
        try:
            size = archive.stat().st_size
            if self.store is not None:
                out = self._keep_at_site(a, archive)
            else:
                with archive.open("rb") as fh:
                    out = self.client.upload_output(a.attempt_id, fh, size)
        except ServerUnreachable as exc:
            log.debug("cannot upload the output of attempt %s yet: %s", a.attempt_id, exc)
            return
        except ApiError as exc:
            if exc.status >= 500 or exc.status == 429:
                log.warning("output upload of attempt %s failed (HTTP %d): %s", a.attempt_id, exc.status, exc)
                return
            self._refuse(t, str(exc))
            return
        finally:
            archive.unlink(missing_ok=True)
        t.done = True
        log.info(
            "uploaded the output of attempt %s of job %s: dataset %s (%s)",
            a.attempt_id,
            a.job_id,
            out.get("name", a.output_dataset),
            format_bytes(size),
        )

    def _keep_at_site(self, a: AttemptAssignment, archive: Path) -> dict[str, Any]:
        """Put the archive into this site's store, sealed at rest (this agent does not know the
        grade the output inherits, so it seals: the safe side), and register its manifest; a
        registration the server refuses takes it out again."""
        assert self.store is not None
        assert a.output_dataset is not None
        name = a.output_dataset
        manifest = build_manifest(archive, DEFAULT_CHUNK)
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        fresh = not self.store.has(name)
        if fresh:
            self.store.adopt(name, archive, manifest, at_rest=True)
        try:
            return self.client.register_output_at_site(a.attempt_id, manifest.model_dump(), digest)
        except ApiError as exc:
            if fresh and not (exc.status >= 500 or exc.status == 429):
                shutil.rmtree(self.store.dataset_dir(name), ignore_errors=True)
            raise

    def _refuse(self, t: _Tracked, why: str) -> None:
        log.warning("the output of job %s is not registered: %s", t.assignment.job_id, why)
        t.refused, t.done = f"its output was not registered as dataset '{t.assignment.output_dataset}': {why}", True
