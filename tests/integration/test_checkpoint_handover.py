"""SUANLI_CHECKPOINT_DIR follows a job to another site: two local-backend sites, a job that
checkpoints at site A, site A goes away, and the retry at site B resumes from A's checkpoint."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from suanli.core.spec import parse_job_spec
from suanli.store.models import Job, JobCheckpoint
from tests.integration.conftest import Net

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TRAIN = """\
name: train
resources: {cpus: 1}
workdir: train
envs: {EPOCHS: 30, LR: 0.5, EPOCH_SLEEP: 0.1}
run: python train.py --epochs $EPOCHS --lr $LR --ckpt $SUANLI_CHECKPOINT_DIR
checkpoint: {keep: true}
max_retries: 3
"""


def _checkpoint(net: Net, job_id: str) -> JobCheckpoint | None:
    with net.control.db.read() as session:
        job = session.query(Job).filter(Job.id == job_id).one()
        row = session.get(JobCheckpoint, job.seq)
        if row is not None:
            session.expunge(row)
        return row


def _uninterrupted_weights(tmp_path: Path) -> str:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "train" / "train.py"), "--epochs", "30", "--ckpt", str(tmp_path / "solo")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return run.stdout.strip().splitlines()[-1]


def test_a_job_moved_to_another_site_resumes_from_its_checkpoint_and_ends_the_same(net: Net, tmp_path: Path) -> None:
    """examples/train.yaml's promise, across sites: interrupted at beijing after a few
    checkpoints, resumed at tianjin-gaocun, it ends with the weights of an uninterrupted run."""
    site_a, _ = net.local_agent("beijing")
    spec = parse_job_spec(TRAIN, str(EXAMPLES / "train.yaml"))
    job = net.client.submit(spec, workdir=EXAMPLES / "train")
    net.pump(lambda: "epoch   10" in "".join(net.client.logs(job.id)), timeout=60)

    # Site A goes away: its agent stops the job (SIGTERM) and leaves, its node is drained.
    site_a.shutdown(cancel_running=True, grace_s=1.0)
    del net.agents["beijing"]
    site_a.client.close()  # type: ignore[attr-defined]
    net.client.drain("bj-01", "site going away")
    lost = net.client.job(job.id)
    assert lost.attempts[0].state.value == "LOST"
    assert lost.state.value == "PENDING"
    saved = _checkpoint(net, job.id)
    assert saved is not None, "the last state was uploaded before the end was reported"
    assert (saved.site, saved.attempt_id) == ("beijing", lost.attempts[0].id)

    net.local_agent("tianjin-gaocun")
    net.clock.advance(10)  # the retry's back-off
    net.pump(lambda: net.state(job.id) == "SUCCEEDED", timeout=90)
    done = net.client.job(job.id)
    assert [(a.site, a.state.value) for a in done.attempts] == [("beijing", "LOST"), ("tianjin-gaocun", "SUCCEEDED")]
    text = "".join(net.client.logs(job.id))
    second = text[text.index("--- attempt 2 at tianjin-gaocun ---") :]
    resumed = re.search(r"resumed from .*train\.json at epoch (\d+)", second)
    assert resumed is not None, second[:500]
    assert int(resumed.group(1)) >= 10
    assert f"sites/tianjin-gaocun/checkpoints/{job.id}" in second  # the job's own folder at site B
    assert second.strip().splitlines()[-1] == _uninterrupted_weights(tmp_path)


STEPS = (
    'f="$SUANLI_CHECKPOINT_DIR/step"; n=0; '
    'if [ -f "$f" ]; then n=$(cat "$f"); echo "resumed at step $n on attempt $SUANLI_ATTEMPT"; fi; '
    'while [ "$n" -lt 40 ]; do n=$((n+1)); echo "$n" > "$f.tmp"; mv "$f.tmp" "$f"; echo "step $n"; sleep 0.1; done; '
    'echo "done at step $n"'
)


def test_a_site_that_dies_hands_over_its_last_periodic_upload(net: Net) -> None:
    site_a, backend_a = net.local_agent("beijing")
    assert site_a.checkpoints is not None
    site_a.checkpoints.every_s = 0.2  # the default is a minute
    job = net.client.submit(parse_job_spec(f"run: '{STEPS}'\nmax_retries: 2\n"))
    net.pump(lambda: (c := _checkpoint(net, job.id)) is not None and c.attempt_id > 0, timeout=30)
    net.pump(lambda: "step 12" in "".join(net.client.logs(job.id)), timeout=30)
    uploaded = _checkpoint(net, job.id)
    assert uploaded is not None
    assert uploaded.site == "beijing"

    # Site A dies: no last upload, no report. Its processes stop (as its orphan watchdog would).
    del net.agents["beijing"]
    backend_a.stop_all(grace_s=0.5)
    site_a.client.close()  # type: ignore[attr-defined]
    last = _checkpoint(net, job.id)
    assert last is not None
    net.local_agent("tianjin-gaocun")
    net.clock.advance(31)  # past the lease: LOST, requeued
    net.control.tick()
    assert net.client.job(job.id).attempts[0].state.value == "LOST"
    net.clock.advance(10)  # past the back-off
    net.pump(lambda: net.state(job.id) == "SUCCEEDED", timeout=60)
    done = net.client.job(job.id)
    assert [a.site for a in done.attempts] == ["beijing", "tianjin-gaocun"]
    text = "".join(net.client.logs(job.id))
    resumed = re.search(r"resumed at step (\d+) on attempt 2", text)
    assert resumed is not None, text[-800:]
    assert 1 <= int(resumed.group(1)) <= 40
    assert "done at step 40" in text
    final = _checkpoint(net, job.id)
    assert final is not None
    # Site B uploads nothing: no periodic upload within its first minute, none after success.
    assert final.digest == last.digest


def test_checkpoints_go_only_to_the_sites_running_the_job(net: Net) -> None:
    """Uploads and downloads name an attempt of the caller's own site: no site gets a checkpoint
    of a job it does not run, whatever digest it knows."""
    site_a, _ = net.local_agent("beijing")
    assert site_a.checkpoints is not None
    site_a.checkpoints.every_s = 0.2
    mine = net.client.submit(parse_job_spec(f"run: '{STEPS}'\n"))
    net.pump(lambda: _checkpoint(net, mine.id) is not None, timeout=30)
    saved = _checkpoint(net, mine.id)
    assert saved is not None
    attempt = net.client.job(mine.id).attempts[0].id

    other_token = net.user("eve", tenant="sh-lab")
    with net.http_as(other_token) as eve:  # a user's token is not a site token
        assert eve.get(f"/api/v1/agents/checkpoints/{saved.digest}", params={"attempt": attempt}).status_code == 401
    tianjin = net.control.site_token_path("tianjin-gaocun").read_text().strip()
    with net.http_as(tianjin) as site_b:
        # Another site, naming site A's attempt: nothing, for download and upload alike.
        got = site_b.get(f"/api/v1/agents/checkpoints/{saved.digest}", params={"attempt": attempt})
        assert got.status_code == 404
        put = site_b.post(
            "/api/v1/agents/checkpoints",
            params={"attempt": attempt},
            content=b"\x1f\x8b",
            headers={"Content-Type": "application/gzip"},
        )
        assert put.status_code == 404
    beijing = net.control.site_token_path("beijing").read_text().strip()
    with net.http_as(beijing) as site_a_http:
        ok = site_a_http.get(f"/api/v1/agents/checkpoints/{saved.digest}", params={"attempt": attempt})
        assert ok.status_code == 200
        wrong = site_a_http.get(f"/api/v1/agents/checkpoints/{'0' * 64}", params={"attempt": attempt})
        assert wrong.status_code == 404
        hostile = site_a_http.post(
            "/api/v1/agents/checkpoints",
            params={"attempt": attempt},
            content=_archive_with_a_link(),
            headers={"Content-Type": "application/gzip"},
        )
        assert hostile.status_code == 422
        assert "the checkpoint archive may not hold links" in hostile.json()["detail"]
    net.client.cancel(mine.id)


def _archive_with_a_link() -> bytes:

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("escape")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    return buf.getvalue()
