"""Submit-time overrides (flag over file) and ``suanli rerun JOB``: the stored spec, secrets and
workdir submitted again as a new job, with the same overrides, against the real server and a
fake agent that shows what each attempt was given."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from suanli.cli import app
from suanli.core.overrides import Overrides
from suanli.core.states import JobState
from tests.integration.conftest import Net

SPEC = """\
name: train
run: python train.py
workdir: code
secrets: {HF_TOKEN: hf-secret}
envs: {LR: "0.1", EPOCHS: "3"}
time_limit: 10m
resources: {accelerators: A800:1}
"""


def cli(net: Net, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["--server", net.url, "--token", net.admin_token, *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_flags_override_the_file_and_rerun_resubmits_the_stored_job(net: Net, tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('v1')\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.py").write_text("print('v2')\n")
    spec = tmp_path / "train.yaml"
    spec.write_text(SPEC)
    _, backend = net.fake_agent("tianjin-gaocun")
    first = cli(net, "submit", str(spec), "--gpus", "H100:2", "--env", "LR=0.01", "--time", "1h", "--priority", "high")
    first_spec = net.client.job(str(first["id"])).spec
    assert first_spec["resources"]["accelerators"] == ["H100:2"]
    assert first_spec["envs"] == {"LR": "0.01", "EPOCHS": "3"}  # --env over the file's, the rest kept
    assert (first_spec["time_limit"], first_spec["priority"]) == (3600.0, "high")
    net.pump(lambda: len(backend.started) == 1)
    given = backend.started[0]
    assert given.secrets == {"HF_TOKEN": "hf-secret"}
    assert given.gpu_type == "H100"

    again = cli(net, "rerun", str(first["id"]), "--env", "EPOCHS=5", "--region", "tianjin", "--time", "20m")
    assert again["id"] != first["id"]
    assert again["user"] == "admin"
    rerun_spec = net.client.job(str(again["id"])).spec
    assert rerun_spec["envs"] == {"LR": "0.01", "EPOCHS": "5"}
    assert rerun_spec["placement"]["regions"] == ["tianjin"]
    assert (rerun_spec["time_limit"], rerun_spec["priority"]) == (1200.0, "high")
    net.pump(lambda: len(backend.started) == 2)
    second = backend.started[1]
    assert second.secrets == {"HF_TOKEN": "hf-secret"}  # the sealed secrets came along
    assert second.workdir_digest == given.workdir_digest is not None

    third = cli(net, "rerun", str(first["id"]), "--workdir", str(tmp_path / "other"), "--gpus", "0")
    net.pump(lambda: len(backend.started) == 3)
    assert backend.started[2].workdir_digest not in (None, given.workdir_digest)
    assert net.client.job(str(third["id"])).spec["resources"].get("accelerators", []) == []


def test_overrides_are_checked_by_the_spec_rules(net: Net, tmp_path: Path) -> None:
    spec = tmp_path / "hello.yaml"
    spec.write_text("name: hello\nrun: echo hi\n")
    runner = CliRunner(env={"COLUMNS": "300"})
    base = ["--server", net.url, "--token", net.admin_token]
    bad_time = runner.invoke(app, [*base, "submit", str(spec), "--time", "soon"])
    assert bad_time.exit_code == 2
    assert "time_limit: time_limit must be a duration like 30m, 2h, 2h30m or 3600, not 'soon'" in bad_time.output
    bad_env = runner.invoke(app, [*base, "submit", str(spec), "--env", "NOEQUALS"])
    assert bad_env.exit_code == 2
    assert "is not NAME=VALUE" in bad_env.output
    job = net.client.submit_file(spec)
    net.client.cancel(job.id)
    with net.http_as(net.admin_token) as http:
        refused = http.post(f"/api/v1/jobs/{job.id}/rerun", json={"overrides": {"priority": "urgent"}})
        assert refused.status_code == 422
        assert http.post("/api/v1/jobs/nosuch/rerun", json={}).status_code == 404
    rerun = net.client.rerun(job.id, Overrides(name="hello-2"))
    assert (rerun.name, rerun.state) == ("hello-2", JobState.PENDING)
