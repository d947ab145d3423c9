"""A job's secret end to end: the real server on loopback and a real local agent. The value
reaches the job's environment, and nothing else: not the API, not the logs, not the database."""

from __future__ import annotations

import secrets
from pathlib import Path

from sqlalchemy import select

from suanli.app.secrets import SecretBox
from suanli.core.protocol import AttemptAssignment
from suanli.core.spec import SECRET_MASK, parse_job_spec
from suanli.core.states import AttemptState
from suanli.store.models import Job
from tests.db_support import dump_database
from tests.integration.conftest import Net

SPEC = """\
name: with-secret
envs: {PUBLIC: visible}
run: |
  echo "token=$HF_TOKEN public=$PUBLIC"
  printf '%s' "$HF_TOKEN" > secret.txt
  cp secret.txt "$SUANLI_CHECKPOINT_DIR/secret.txt"
  printf 'split:%s' "${HF_TOKEN:0:9}"
  sleep 0.3
  printf '%s done\\n' "${HF_TOKEN:9}"
"""


def test_a_secret_reaches_the_job_and_never_the_api_logs_or_database(net: Net) -> None:
    value = "hf_" + secrets.token_hex(20)
    net.local_agent("beijing")
    spec = parse_job_spec(SPEC).model_copy(update={"secrets": {"HF_TOKEN": value}})
    job = net.client.submit(spec)
    assert job.spec["secrets"] == {"HF_TOKEN": SECRET_MASK}, "the submit answer shows the name only"
    net.pump(lambda: net.state(job.id) == "SUCCEEDED")

    # The job's environment had it: what it wrote in its workdir (copied to its checkpoint
    # folder, which outlives the attempt's folder) is the value.
    written = net.tmp / "sites" / "beijing" / "checkpoints" / job.id / "secret.txt"
    assert written.read_text() == value

    # Logs: masked, also where the job wrote the value in two pieces 0.3 s apart.
    logs = "".join(net.client.logs(job.id))
    assert logs == f"token={SECRET_MASK} public=visible\nsplit:{SECRET_MASK} done\n"
    raw_logs = net.http.get(f"/api/v1/jobs/{job.id}/logs")
    assert raw_logs.status_code == 200
    assert value not in raw_logs.text

    # The API's job JSON, one job and the list: names, never values.
    one = net.http.get(f"/api/v1/jobs/{job.id}")
    listed = net.http.get("/api/v1/jobs")
    assert one.status_code == listed.status_code == 200
    assert one.json()["spec"]["secrets"] == {"HF_TOKEN": SECRET_MASK}
    assert one.json()["spec"]["envs"] == {"PUBLIC": "visible"}
    for body in (one.text, listed.text):
        assert value not in body

    # The database: sealed in jobs.secrets_enc; the raw bytes of the SQLite file and its
    # write-ahead log hold no trace of the value.
    with net.control.db.read() as session:
        row = session.scalar(select(Job).where(Job.id == job.id))
        assert row is not None
        assert row.secrets_enc
        assert value not in row.secrets_enc
        assert row.spec["secrets"] == {"HF_TOKEN": SECRET_MASK}
    needle = value.encode()
    if net.control.db.is_sqlite:
        db_file = Path(net.control.settings.db_url.removeprefix("sqlite:///"))
        files = [db_file, db_file.with_name(db_file.name + "-wal")]
        assert files[0].stat().st_size > 0
        for path in files:
            if path.exists():
                assert needle not in path.read_bytes(), path
    else:  # every row of every table, as pg_dump writes them
        dumped = dump_database(net.control.settings.db_url)
        assert b"secrets_enc" in dumped
        assert needle not in dumped
    # Nor anywhere else under the server's home (blobs, tokens, the key file).
    for path in net.control.settings.home.rglob("*"):
        if path.is_file():
            assert needle not in path.read_bytes(), path


def test_every_attempt_gets_the_secret_and_the_jobs_tenant(net: Net) -> None:
    """A retry's assignment carries the secrets again (opened from the sealed copy each time)."""
    value = "tok-" + secrets.token_hex(8)
    _, fake = net.fake_agent("beijing")
    spec = parse_job_spec("run: train\nmax_retries: 2\n").model_copy(update={"secrets": {"TOKEN": value}})
    job = net.client.submit(spec)

    def started() -> list[AttemptAssignment]:
        return [a for a in fake.started if a.job_id == job.id]

    net.pump(lambda: len(started()) == 1)
    [first] = started()
    assert first.secrets == {"TOKEN": value}
    assert first.tenant == net.client.job(job.id).tenant
    fake.finish(first.attempt_id, None, state=AttemptState.LOST, message="the node died")
    net.cycle()  # reported: requeued, after its back-off
    net.clock.advance(10)
    net.pump(lambda: len(started()) == 2)
    second = started()[1]
    assert (second.attempt_number, second.secrets) == (2, {"TOKEN": value})


def test_secrets_the_server_key_cannot_open_fail_the_attempt_saying_why(net: Net) -> None:
    job = net.client.submit(parse_job_spec("run: train\n").model_copy(update={"secrets": {"TOKEN": "v"}}))
    net.control.secrets = SecretBox(net.tmp / "another.key")  # as if server.key had been replaced
    _, fake = net.fake_agent("beijing")
    net.pump(lambda: net.state(job.id) == "FAILED")
    out = net.client.job(job.id)
    assert "cannot be decrypted" in out.reason
    assert out.attempts[0].state.value == "FAILED"
    assert fake.started == [], "the agent was never given the attempt"
