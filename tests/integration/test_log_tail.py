"""``suanli logs --tail N`` and ``GET /api/v1/jobs/{id}/logs?tail=N``: the last lines of a long
log from a real agent, read from the newest chunks."""

from __future__ import annotations

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
