"""Carrying a job's checkpoint folder from site to site: the agent's side.

A backend with :class:`~suanli.agent.backends.base.KeptCheckpoints` keeps each job's
SUANLI_CHECKPOINT_DIR in one folder per job. The :class:`CheckpointCarrier`:

- **uploads** the folder, packed as a ``.tar.gz``, while an attempt runs (at most every
  ``every_s``, only when something in it changed) and once more when the attempt ends for any
  reason but success. The attempt's end is reported to the server only after that last upload
  (or after ``final_timeout_s`` of trying), so the job's retry, wherever it goes, is handed the
  state its attempt ended with.
- **restores** a checkpoint the server names in an assignment (``checkpoint_digest``: the latest
  one was made at another site) into the folder before the attempt starts.

A site that dies cannot make its last upload: its job resumes from the last periodic one.
Jobs should write checkpoints atomically (a temporary file, then a rename), as a periodic upload
may come at any moment. Folders over the limits (``max_bytes`` packed, ``max_unpacked_bytes``
before packing; the server's own limits are those of workdirs) are not uploaded, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from suanli.agent.backends.staging import restore_checkpoint
from suanli.core.protocol import AttemptAssignment, AttemptReport, CheckpointReceipt
from suanli.core.states import AttemptState
from suanli.sdk import ApiError, ServerUnreachable
from suanli.sdk.workdir import format_bytes, max_workdir_bytes

log = logging.getLogger("suanli.agent.checkpoints")

#: Seconds between looks at a running attempt's checkpoint folder (an upload only if it changed).
CHECKPOINT_EVERY_S = 60.0
#: How long the last upload of an ended attempt is retried before its end is reported anyway.
FINAL_TIMEOUT_S = 60.0
#: Answers after which the same upload will not be tried again (stale attempt, too large, refused).
_FINAL_ANSWERS = frozenset({400, 404, 409, 413, 422})


class CheckpointClient(Protocol):
    """What the carrier needs of ``suanli.sdk.Client``."""

    def upload_checkpoint(self, attempt_id: int, archive: IO[bytes], size: int) -> CheckpointReceipt: ...

    def download_checkpoint(self, digest: str, attempt_id: int, dest: IO[bytes]) -> int: ...


class CheckpointUnavailable(Exception):
    """The checkpoint an attempt must start from cannot be had: the attempt cannot start."""


class FolderTooLarge(Exception):
    """The checkpoint folder is over the size limit for uploads."""


def fingerprint(folder: Path) -> str:
    """A digest of the folder's names, sizes and modification times: changes when its content
    does (a rewrite within the same nanosecond tick with the same size excepted)."""
    h = hashlib.sha256()
    for rel, st in _entries(folder):
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "replace"))
    return h.hexdigest()


def _entries(folder: Path) -> list[tuple[str, os.stat_result]]:
    """Folders and regular files under ``folder`` (links and special files left out), sorted."""
    out: list[tuple[str, os.stat_result]] = []
    if not folder.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(folder):
        base = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            path = base / name
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                keep.append(name)
                out.append((str(path.relative_to(folder)), st))
        dirnames[:] = keep
        for name in sorted(filenames):
            path = base / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue  # removed while we looked
            if stat.S_ISREG(st.st_mode):
                out.append((str(path.relative_to(folder)), st))
    out.sort(key=lambda e: e[0])
    return out


#: The fingerprint of an empty (or missing) folder: nothing to carry.
EMPTY = hashlib.sha256().hexdigest()


def pack(folder: Path, into: Path, max_unpacked_bytes: int) -> Path:
    """The folder as a ``.tar.gz`` in ``into`` (a new temporary file the caller removes): plain
    files and folders only, owned by no one. Raises FolderTooLarge, or OSError when a file
    changed under it (the next try will do)."""
    entries = _entries(folder)
    total = sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))
    if total > max_unpacked_bytes:
        raise FolderTooLarge(f"it holds {format_bytes(total)}, over the {format_bytes(max_unpacked_bytes)} limit")
    fd, name = tempfile.mkstemp(dir=into, prefix=".checkpoint-", suffix=".tar.gz")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            for rel, st in entries:
                info = tarfile.TarInfo(rel)
                info.mtime = int(st.st_mtime)
                info.mode = stat.S_IMODE(st.st_mode) & 0o755 | (0o700 if stat.S_ISDIR(st.st_mode) else 0o600)
                if stat.S_ISDIR(st.st_mode):
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                    continue
                info.size = st.st_size
                with (folder / rel).open("rb") as fh:
                    tar.addfile(info, fh)  # raises OSError if the file shrank meanwhile
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@dataclass
class _Tracked:
    assignment: AttemptAssignment
    folder: Path
    #: When to look at the folder next (monotonic seconds).
    next_look: float
    #: The last upload for the attempt's end is settled (done, refused, not needed, given up).
    final_done: bool = False
    final_deadline: float | None = None
    #: No more uploads for this attempt (the server said it is stale).
    closed: bool = False


class CheckpointCarrier:
    """Uploads and restores the checkpoint folders of one agent's attempts. Thread-safe: the
    agent's checkpoint thread calls :meth:`sync`, its other threads the rest."""

    def __init__(
        self,
        client: CheckpointClient,
        scratch: Path,
        *,
        every_s: float | None = CHECKPOINT_EVERY_S,
        final_timeout_s: float = FINAL_TIMEOUT_S,
        max_bytes: int | None = None,
        max_unpacked_bytes: int | None = None,
    ) -> None:
        self.client, self.scratch = client, scratch
        #: None or 0: no periodic uploads (only at an attempt's end).
        self.every_s = every_s
        self.final_timeout_s = final_timeout_s
        #: The limits of workdirs: SUANLI_MAX_WORKDIR_MB (packed), SUANLI_MAX_WORKDIR_UNPACKED_MB.
        self.max_bytes = max_workdir_bytes() if max_bytes is None else max_bytes
        if max_unpacked_bytes is None:
            max_unpacked_bytes = int(float(os.environ.get("SUANLI_MAX_WORKDIR_UNPACKED_MB", "1024")) * 2**20)
        self.max_unpacked_bytes = max_unpacked_bytes
        self._tracked: dict[int, _Tracked] = {}
        #: job id → fingerprint of the content the server has from this agent (or gave it).
        self._known: dict[str, str] = {}
        #: job id → fingerprint last refused as too large (warned once per content).
        self._refused: dict[str, str] = {}
        self._lock = threading.Lock()
        self._syncing = threading.Lock()

    # -- what the agent tells it ------------------------------------------------------------
    def track(self, assignment: AttemptAssignment, folder: Path | None) -> None:
        """Follow the attempt's checkpoint folder from now on (None: the job keeps none)."""
        if folder is None:
            return
        with self._lock:
            if assignment.attempt_id not in self._tracked:
                self._tracked[assignment.attempt_id] = _Tracked(assignment, folder, self._next(time.monotonic()))

    @property
    def tracking(self) -> bool:
        """Whether any attempt's folder is followed (else a sync has nothing to do)."""
        with self._lock:
            return bool(self._tracked)

    def forget(self, attempt_id: int) -> None:
        with self._lock:
            self._tracked.pop(attempt_id, None)

    def holds(self, report: AttemptReport) -> bool:
        """Whether the attempt's end must wait: its last upload is not settled yet."""
        if not report.state.is_terminal() or report.state == AttemptState.SUCCEEDED:
            return False
        with self._lock:
            t = self._tracked.get(report.attempt_id)
            return t is not None and not t.final_done and not t.closed

    # -- restoring --------------------------------------------------------------------------
    def restore(self, assignment: AttemptAssignment, folder: Path | None) -> None:
        """Fill the job's folder with the checkpoint the assignment names, if it names one.
        Raises ServerUnreachable (try again later) or CheckpointUnavailable."""
        digest = assignment.checkpoint_digest
        if not digest:
            return
        if folder is None:
            raise CheckpointUnavailable(
                f"the server sent checkpoint {digest} for job {assignment.job_id}, "
                "which keeps no checkpoint folder here"
            )
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise CheckpointUnavailable(f"the server sent an unusable checkpoint digest {digest!r}")
        self.scratch.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.scratch, prefix=".restore-", suffix=".tar.gz")
        part = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                size = self.client.download_checkpoint(digest, assignment.attempt_id, fh)
            got = _sha256(part)
            if got != digest:
                raise CheckpointUnavailable(f"checkpoint {digest} arrived damaged (its SHA-256 is {got})")
            restore_checkpoint(part, folder)
        except ApiError as exc:
            raise CheckpointUnavailable(f"cannot fetch the job's checkpoint {digest}: {exc}") from None
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise CheckpointUnavailable(f"cannot unpack the job's checkpoint {digest}: {exc}") from None
        finally:
            part.unlink(missing_ok=True)
        with self._lock:
            self._known[assignment.job_id] = fingerprint(folder)  # the server has this content
        log.info(
            "attempt %s of job %s resumes from checkpoint %s (%s), made at another site",
            assignment.attempt_id,
            assignment.job_id,
            digest[:12],
            format_bytes(size),
        )

    # -- uploading --------------------------------------------------------------------------
    def sync(self, reports: Sequence[AttemptReport]) -> None:
        """Upload what is due: the last state of attempts that ended (not successfully), and the
        folders of running ones that changed since their last look. One sync at a time."""
        if not self._syncing.acquire(blocking=False):
            return
        try:
            states = {r.attempt_id: r.state for r in reports}
            now = time.monotonic()
            with self._lock:
                tracked = list(self._tracked.values())
            for t in tracked:
                state = states.get(t.assignment.attempt_id)
                if state is None or t.closed:
                    continue
                if state.is_terminal():
                    self._final(t, state, now)
                elif state == AttemptState.RUNNING and self.every_s and now >= t.next_look:
                    t.next_look = self._next(now)
                    self._upload(t, final=False)
        finally:
            self._syncing.release()

    def _next(self, now: float) -> float:
        return now + self.every_s if self.every_s else float("inf")

    def _final(self, t: _Tracked, state: AttemptState, now: float) -> None:
        if t.final_done:
            return
        if state == AttemptState.SUCCEEDED:
            t.final_done = True
            return
        if t.final_deadline is None:
            t.final_deadline = now + self.final_timeout_s
        if self._upload(t, final=True) or now >= t.final_deadline:
            if not t.final_done and not t.closed:
                log.warning(
                    "gave up uploading the checkpoint of attempt %s after %gs; a retry resumes from an earlier one",
                    t.assignment.attempt_id,
                    self.final_timeout_s,
                )
            t.final_done = True

    def _upload(self, t: _Tracked, final: bool) -> bool:
        """Upload the folder if it changed. Returns False when it should be tried again."""
        a = t.assignment
        try:
            seen = fingerprint(t.folder)
        except OSError as exc:
            log.warning("cannot read the checkpoint folder of attempt %s: %s", a.attempt_id, exc)
            return False
        with self._lock:
            if seen == self._known.get(a.job_id, EMPTY) or seen == self._refused.get(a.job_id):
                if final:
                    t.final_done = True
                return True
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            archive = pack(t.folder, self.scratch, self.max_unpacked_bytes)
        except FolderTooLarge as exc:
            return self._refuse(t, seen, str(exc), final)
        except OSError as exc:
            log.info("checkpoint folder of attempt %s changed while packed (%s); will try again", a.attempt_id, exc)
            return False
        try:
            size = archive.stat().st_size
            if size > self.max_bytes:
                over = f"its archive is {format_bytes(size)}, over the {format_bytes(self.max_bytes)} limit"
                return self._refuse(t, seen, over, final)
            with archive.open("rb") as fh:
                receipt = self.client.upload_checkpoint(a.attempt_id, fh, size)
        except ServerUnreachable as exc:
            log.debug("cannot upload the checkpoint of attempt %s yet: %s", a.attempt_id, exc)
            return False
        except ApiError as exc:
            if exc.status not in _FINAL_ANSWERS:
                log.warning("checkpoint upload of attempt %s failed (HTTP %d): %s", a.attempt_id, exc.status, exc)
                return False
            if exc.status in (413, 422):
                return self._refuse(t, seen, str(exc), final)
            log.info("the server does not take checkpoints of attempt %s any more: %s", a.attempt_id, exc)
            t.closed = True
            return True
        finally:
            archive.unlink(missing_ok=True)
        with self._lock:
            self._known[a.job_id] = seen
        if final:
            t.final_done = True
        log.info(
            "uploaded the checkpoint of attempt %s of job %s (%s, %s)",
            a.attempt_id,
            a.job_id,
            receipt.digest[:12],
            format_bytes(receipt.size),
        )
        return True

    def _refuse(self, t: _Tracked, seen: str, why: str, final: bool) -> bool:
        with self._lock:
            first = self._refused.get(t.assignment.job_id) != seen
            self._refused[t.assignment.job_id] = seen
        if first:
            log.warning(
                "the checkpoint folder of job %s is not uploaded: %s; a retry at another site starts without it",
                t.assignment.job_id,
                why,
            )
        if final:
            t.final_done = True
        return True


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while data := fh.read(1 << 20):
            h.update(data)
    return h.hexdigest()
