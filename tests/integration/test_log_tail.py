"""``suanli logs --tail N`` and ``GET /api/v1/jobs/{id}/logs?tail=N``: the last lines of a long
log from a real agent, read from the newest chunks."""

from __future__ import annotations

from datetime import timedelta

from typer.testing import CliRunner

from suanli.cli import app
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net


def test_tail_gives_the_last_lines(net: Net) -> None:
    net.local_agent("beijing")
    run = 'for i in $(seq 1 30000); do echo "line $i"; done'
    job = net.client.submit(parse_job_spec(f"name: long\nrun: |\n  {run}\nresources: {{cpus: 1}}\n"))
    net.pump(lambda: net.state(job.id) == "SUCCEEDED", timeout=60)
    assert "".join(net.client.logs(job.id, tail=3)) == "line 29998\nline 29999\nline 30000\n"
    whole = "".join(net.client.logs(job.id))
    assert whole.count("\n") == 30000
    assert "".join(net.client.logs(job.id, tail=50000)) == whole  # more than there is: all of it
    result = CliRunner().invoke(app, ["--server", net.url, "--token", net.admin_token, "logs", job.id, "--tail", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "line 29999\nline 30000\n"
    with net.http_as(net.admin_token) as http:
        assert http.get(f"/api/v1/jobs/{job.id}/logs", params={"tail": 0}).status_code == 422


def test_since_rank_and_timestamps_pick_and_stamp_lines(net: Net) -> None:
    """Output of a two-node job reaches the desk at 09:00 and, ten minutes later, at 09:10:
    ``--since 5m`` shows only the second, ``--rank 1`` only node 1's, ``--timestamps`` stamps
    each line with the instant it arrived (a line cut across two chunks keeps its first)."""
    agent, backend = net.fake_agent("ningxia")
    job = net.client.submit(parse_job_spec("name: two\nrun: train\nresources: {accelerators: 910B:8, num_nodes: 2}\n"))
    net.pump(lambda: net.state(job.id) == "RUNNING")
    attempt = backend.started[0].attempt_id
    start = net.clock.now()
    backend.emit(attempt, "early 0\nhalf ", rank=0)
    backend.emit(attempt, "early 1\n", rank=1)
    agent.step()
    net.clock.advance(600)
    backend.emit(attempt, "line\nlate 0\n", rank=0)
    backend.emit(attempt, "late 1\n", rank=1)
    agent.step()

    def logs(**view: object) -> str:
        return "".join(net.client.logs(job.id, **view))  # type: ignore[arg-type]

    assert logs(since="5m") == "[rank 0] line\n[rank 0] late 0\n[rank 1] late 1\n"
    assert logs(rank=1) == "[rank 1] early 1\n[rank 1] late 1\n"
    assert logs(rank=1, since=(start + timedelta(minutes=1)).isoformat()) == "[rank 1] late 1\n"
    early, late = "2026-01-05T09:00:00.000Z ", "2026-01-05T09:10:00.000Z "
    assert (
        logs(rank=0, timestamps=True) == f"{early}[rank 0] early 0\n{early}[rank 0] half line\n{late}[rank 0] late 0\n"
    )
    assert logs(rank=0, tail=1, timestamps=True) == f"{late}[rank 0] late 0\n"
    args = ["--server", net.url, "--token", net.admin_token, "logs", job.id, "--rank", "1", "--since", "09:05"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "--since must be a duration like 10m" in result.output
    args[-1] = "2026-01-05 17:05+08:00"  # 09:05 UTC
    result = CliRunner().invoke(app, [*args, "-t"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{late}[rank 1] late 1\n"
    with net.http_as(net.admin_token) as http:
        assert http.get(f"/api/v1/jobs/{job.id}/logs", params={"rank": -1}).status_code == 422
