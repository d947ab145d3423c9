"""Workdirs and checkpoints are kept while something may read them, then deleted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import select

from suanli.app.workdirs import blob_path
from suanli.core.spec import JobSpec
from suanli.store.models import Blob, Job, JobCheckpoint
from tests.integration.conftest import start_net

NETWORK = """\
regions: [beijing, tianjin]
sites:
  - {name: beijing, region: beijing, nodes: [{name: bj-01, cpus: 2, memory: 8}]}
  - {name: tianjin, region: tianjin, nodes: [{name: tj-01, cpus: 2, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""
DAY = 86400.0


def workdir(tmp: Path, name: str, text: str) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "main.sh").write_text(text)
    return root


def test_blobs_go_once_nothing_needs_them(tmp_path: Path) -> None:
    with start_net(tmp_path, NETWORK, blob_store="folder") as net:
        net.local_agent("beijing")  # tianjin has no agent: its jobs wait
        c = net.client
        blobs = net.control.settings.blob_dir

        ran = c.submit(
            JobSpec.model_validate(
                {
                    "name": "ran",
                    "run": "sh main.sh",
                    "placement": {"regions": ["beijing"]},
                    "checkpoint": {"keep": True},
                }
            ),
            workdir=workdir(tmp_path, "a", 'echo hi > "$SUANLI_CHECKPOINT_DIR/state"; exit 3'),
        )
        net.pump(lambda: net.state(ran.id) in ("SUCCEEDED", "FAILED"))
        waits = c.submit(
            JobSpec.model_validate({"name": "waits", "run": "sh main.sh", "placement": {"regions": ["tianjin"]}}),
            workdir=workdir(tmp_path, "b", "echo waiting"),
        )
        fresh = c.upload_workdir(workdir(tmp_path, "c", "echo not yet submitted"))
        with net.control.db.read() as s:
            digest_of = {j.id: j.workdir_digest for j in s.scalars(select(Job))}
            checkpoints = list(s.scalars(select(JobCheckpoint.digest)))
        ran_digest, waits_digest = digest_of[ran.id], digest_of[waits.id]
        assert ran_digest is not None
        assert waits_digest is not None
        assert len(checkpoints) == 1, "the failed attempt uploaded its checkpoint folder"
        leftover = blobs / ".upload-crashed"
        leftover.write_bytes(b"half an upload")
        two_days_ago = time.time() - 2 * DAY
        os.utime(leftover, (two_days_ago, two_days_ago))

        # Within the retention only the leftover of a broken-off upload goes.
        assert net.control.sweep_blobs().files == 1
        assert not leftover.exists()
        for digest in (ran_digest, waits_digest, fresh.digest, *checkpoints):
            assert blob_path(blobs, digest).is_file()

        # A week and a day later: the ended job's workdir and checkpoint and the unused upload go;
        # the waiting job's workdir stays.
        net.clock.advance(8 * DAY)
        for path in blobs.glob("*.tar.gz"):  # the files' own times move with the days
            os.utime(path, (time.time() - 8 * DAY, time.time() - 8 * DAY))
        swept = net.control.sweep_blobs()
        assert swept.files == 3
        assert not blob_path(blobs, ran_digest).exists()
        assert not blob_path(blobs, checkpoints[0]).exists()
        assert not blob_path(blobs, fresh.digest).exists()
        assert blob_path(blobs, waits_digest).is_file()
        with net.control.db.read() as s:
            assert set(s.scalars(select(Blob.digest))) == {waits_digest}
            assert list(s.scalars(select(JobCheckpoint.digest))) == []
