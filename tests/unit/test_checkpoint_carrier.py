"""The agent's side of checkpoints that follow a job: packing, restoring, when uploads happen,
and that an attempt's end waits for its last upload."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from suanli.agent.backends.staging import kept_checkpoint_dir, restore_checkpoint
from suanli.agent.checkpoints import EMPTY, CheckpointCarrier, CheckpointUnavailable, fingerprint, pack
from suanli.core.protocol import AssignedNode, AttemptAssignment, AttemptReport, CheckpointReceipt
from suanli.core.states import AttemptState
from suanli.sdk import ApiError, ServerUnreachable


def assignment(attempt_id: int = 7, job_id: str = "j-abc", digest: str | None = None) -> AttemptAssignment:
    return AttemptAssignment(
        attempt_id=attempt_id,
        fencing_token=attempt_id,
        job_id=job_id,
        job_name="train",
        attempt_number=1,
        run="true",
        nodes=[AssignedNode(node="n1", rank=0)],
        checkpoint_digest=digest,
    )


def report(state: AttemptState, attempt_id: int = 7) -> AttemptReport:
    return AttemptReport(attempt_id=attempt_id, fencing_token=attempt_id, state=state)


class Server:
    """A fake of the two checkpoint calls: keeps what was uploaded, serves what it holds."""

    def __init__(self) -> None:
        self.uploads: list[tuple[int, bytes]] = []
        self.blobs: dict[str, bytes] = {}
        self.fail: Exception | None = None

    def upload_checkpoint(self, attempt_id: int, archive: IO[bytes], size: int) -> CheckpointReceipt:
        if self.fail is not None:
            raise self.fail
        data = archive.read()
        assert len(data) == size
        self.uploads.append((attempt_id, data))
        digest = hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        now = datetime.now(UTC)
        return CheckpointReceipt(job_id="j", attempt_id=attempt_id, digest=digest, size=size, site="a", stored_at=now)

    def download_checkpoint(self, digest: str, attempt_id: int, dest: IO[bytes]) -> int:
        if self.fail is not None:
            raise self.fail
        data = self.blobs[digest]
        dest.write(data)
        return len(data)


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return sorted(tar.getnames())


def test_pack_takes_files_and_folders_and_leaves_links_out(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"w" * 1000)
    (folder / "sub" / "opt.bin").write_bytes(b"o")
    (folder / "link").symlink_to("/etc/passwd")
    archive = pack(folder, tmp_path, 2**20)
    assert names(archive.read_bytes()) == ["model.bin", "sub", "sub/opt.bin"]
    with pytest.raises(Exception, match="over the"):
        pack(folder, tmp_path, 500)


def test_fingerprint_changes_with_content_and_is_empty_for_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    assert fingerprint(folder) == EMPTY
    folder.mkdir()
    assert fingerprint(folder) == EMPTY
    (folder / "a").write_text("1")
    first = fingerprint(folder)
    assert first != EMPTY
    assert fingerprint(folder) == first
    (folder / "a").write_text("22")
    assert fingerprint(folder) != first


def test_restore_replaces_the_folder_and_refuses_hostile_archives(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "step").write_text("12")
    archive = pack(source, tmp_path, 2**20)
    folder = tmp_path / "checkpoints" / "j-1"
    folder.mkdir(parents=True)
    (folder / "stale").write_text("old")
    restore_checkpoint(archive, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["step"]
    assert (folder / "step").read_text() == "12"

    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        restore_checkpoint(bad, folder)
    assert (folder / "step").read_text() == "12", "a failed restore leaves the folder as it was"
    assert not (tmp_path / "checkpoints" / "escape").exists()
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())


def test_the_kept_folder_is_per_job_and_only_when_kept(tmp_path: Path) -> None:
    assert kept_checkpoint_dir(tmp_path, assignment()) == tmp_path / "checkpoints" / "j-abc"
    assert kept_checkpoint_dir(tmp_path, assignment().model_copy(update={"keep_checkpoint": False})) is None
    assert kept_checkpoint_dir(tmp_path, assignment(job_id="../x")) is None


def test_an_ended_attempt_waits_for_its_last_upload(tmp_path: Path) -> None:
    server = Server()
    carrier = CheckpointCarrier(server, tmp_path / "scratch", every_s=None, final_timeout_s=60)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    carrier.track(assignment(), folder)
    carrier.sync([report(AttemptState.RUNNING)])
    assert server.uploads == [], "no periodic uploads when they are off"
    (folder / "step").write_text("5")
    ended = report(AttemptState.CANCELLED)
    assert carrier.holds(ended)
    assert not carrier.holds(report(AttemptState.SUCCEEDED)), "a success is never held"
    server.fail = ServerUnreachable("down")
    carrier.sync([ended])
    assert carrier.holds(ended), "still held while the server is out of reach"
    server.fail = None
    carrier.sync([ended])
    assert not carrier.holds(ended)
    [(attempt_id, data)] = server.uploads
    assert attempt_id == 7
    assert names(data) == ["step"]
    carrier.sync([ended])
    assert len(server.uploads) == 1


def test_periodic_uploads_only_when_the_folder_changed(tmp_path: Path) -> None:
    server = Server()
    carrier = CheckpointCarrier(server, tmp_path / "scratch", every_s=0.0001)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    carrier.track(assignment(), folder)
    running = [report(AttemptState.RUNNING)]

    def sync_later() -> None:
        time.sleep(0.002)  # past every_s, however fast the machine
        carrier.sync(running)

    sync_later()
    assert server.uploads == [], "an empty folder has nothing to carry"
    (folder / "step").write_text("1")
    sync_later()
    sync_later()
    assert len(server.uploads) == 1
    (folder / "step").write_text("22")
    sync_later()
    assert len(server.uploads) == 2
    carrier.sync([report(AttemptState.LOST)])
    assert len(server.uploads) == 2, "the last state is already there"
    assert not carrier.holds(report(AttemptState.LOST))


def test_a_stale_attempt_stops_uploading_and_is_not_held(tmp_path: Path) -> None:
    server = Server()
    carrier = CheckpointCarrier(server, tmp_path / "scratch", every_s=None)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "step").write_text("1")
    carrier.track(assignment(), folder)
    server.fail = ApiError(409, "Conflict", "a newer attempt has started")
    carrier.sync([report(AttemptState.LOST)])
    assert not carrier.holds(report(AttemptState.LOST))


def test_restore_fetches_checks_and_unpacks_the_named_checkpoint(tmp_path: Path) -> None:
    server = Server()
    source = tmp_path / "src"
    source.mkdir()
    (source / "step").write_text("9")
    data = pack(source, tmp_path, 2**20).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    server.blobs[digest] = data
    carrier = CheckpointCarrier(server, tmp_path / "scratch", every_s=0.0001)
    folder = tmp_path / "checkpoints" / "j-abc"
    carrier.restore(assignment(digest=digest), folder)
    assert (folder / "step").read_text() == "9"
    carrier.track(assignment(digest=digest), folder)
    carrier.sync([report(AttemptState.RUNNING)])
    assert server.uploads == [], "the restored content is the server's already"

    server.blobs[digest] = data[:-10]  # damaged on the way
    with pytest.raises(CheckpointUnavailable, match="damaged"):
        carrier.restore(assignment(digest=digest), folder)
    with pytest.raises(CheckpointUnavailable, match="unusable"):
        carrier.restore(assignment(digest="../../etc"), folder)
    server.fail = ApiError(404, "Not found", "no checkpoint")
    with pytest.raises(CheckpointUnavailable, match="cannot fetch"):
        carrier.restore(assignment(digest=digest), folder)
    assert (folder / "step").read_text() == "9"
    carrier.restore(assignment(), folder)  # no checkpoint named: nothing to do
