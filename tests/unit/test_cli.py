"""The CLI's commands against a canned API: tables for people, JSON for scripts."""

from __future__ import annotations

import io
import json
import tarfile
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from suanli import __version__
from suanli.cli import jobs as jobs_module
from suanli.cli.testing import NOW, FakeApi, Harness, make_attempt, make_job, make_node, make_site
from suanli.core.api import JobOut
from suanli.core.states import AttemptState, JobState

WAITING = "no site has 16 × H100 free; largest free is 4 × H100 at tianjin-gaocun"


@pytest.fixture
def harness() -> Harness:
    return Harness(
        FakeApi(
            jobs=[
                make_job("j-run", JobState.RUNNING, site="tianjin-gaocun", attempts=[make_attempt()]),
                make_job(
                    "j-wait", JobState.PENDING, name="big", reason=WAITING, submitted_at=NOW - timedelta(minutes=1)
                ),
                make_job(
                    "j-done",
                    JobState.SUCCEEDED,
                    submitted_at=NOW - timedelta(hours=2),
                    finished_at=NOW - timedelta(hours=1),
                    exit_code=0,
                ),
                make_job(
                    "j-old", JobState.FAILED, finished_at=NOW - timedelta(days=3), updated_at=NOW - timedelta(days=3)
                ),
            ],
            sites=[
                make_site(),
                make_site(
                    "ningxia-zw", region="ningxia", online=False, gpus={}, nodes=0, running_jobs=0, sandbox="none"
                ),
            ],
            nodes=[
                make_node(),
                make_node("tj-02", state="drained", gpus_free=0, reason="fan repair"),
                make_node("nx-01", site="ningxia-zw", state="down", healthy=False, reason="missed heartbeats"),
                make_node("cpu-01", gpu_type=None, gpus_total=0, gpus_free=0, state="idle"),
            ],
            logs={"j-run": "step 1\nstep 2\n"},
        )
    )


def job_response(job: JobOut) -> httpx.Response:
    return httpx.Response(200, json=job.model_dump(mode="json"))


def write_spec(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- jobs -----------------------------------------------------------------------------------


def test_jobs_table_shows_active_and_recent_jobs_oldest_first(harness: Harness) -> None:
    result = harness.run("jobs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "SITE", "GPUS", "AGE", "REASON"]
    assert "j-run" in result.stdout
    assert "j-wait" in result.stdout
    assert "j-done" in result.stdout
    assert "j-old" not in result.stdout  # finished three days ago
    assert WAITING in result.stdout
    row = next(line for line in lines if line.startswith("j-run"))
    assert "RUNNING" in row
    assert "tianjin-gaocun" in row
    assert "3m" in row


def test_jobs_follows_pagination_and_all_includes_old(harness: Harness) -> None:
    result = harness.run("jobs", "--all")
    assert result.exit_code == 0
    assert "j-old" in result.stdout
    cursors = [r.url.params.get("cursor") for r in harness.api.requests]
    assert cursors == [None, "2"]


def test_jobs_filters_go_to_the_server(harness: Harness) -> None:
    result = harness.run("jobs", "--state", "failed", "--site", "tianjin-gaocun", "--name", "big", "--json")
    assert result.exit_code == 0
    params = harness.api.requests[0].url.params
    assert (params["state"], params["site"], params["name"]) == ("FAILED", "tianjin-gaocun", "big")
    assert json.loads(result.stdout) == []


def test_jobs_state_filter_lists_old_jobs_too(harness: Harness) -> None:
    result = harness.run("jobs", "--state", "FAILED", "--json")
    assert [j["id"] for j in json.loads(result.stdout)] == ["j-old"]


def test_jobs_json_is_a_list_of_jobs(harness: Harness) -> None:
    result = harness.run("jobs", "--json")
    data = json.loads(result.stdout)
    assert [j["id"] for j in data] == ["j-done", "j-run", "j-wait"]  # oldest first
    assert data[2]["reason"] == WAITING
    assert data[1]["attempts"][0]["site"] == "tianjin-gaocun"


def test_jobs_empty_says_so_on_stderr(harness: Harness) -> None:
    harness.api.jobs = []
    result = harness.run("jobs")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "--all" in result.stderr


def test_long_reason_wraps_to_fit_and_ids_are_not_broken(harness: Harness) -> None:
    harness.api.jobs = [make_job("j-long-identifier-0001", JobState.PENDING, reason="waiting " * 40)]
    result = harness.run("jobs", env={"COLUMNS": "90"})
    lines = result.stdout.splitlines()
    assert lines[2].startswith("j-long-identifier-0001")
    assert all(len(line) <= 90 for line in lines)
    assert " ".join(result.stdout.split()).count("waiting") == 40  # wrapped, not cut


def test_reason_wraps_whole_on_80_columns_without_trailing_padding(harness: Harness) -> None:
    reason = (
        "no site has 16 × H100 free; largest free is 4 × H100 at tianjin-gaocun; "
        "tianjin-gaocun frees 16 × H100 at ~07:18 UTC; every H100 at beijing is in use"
    )
    harness.api.jobs = [make_job("j-wait", JobState.PENDING, name="big", reason=reason)]
    for env in ({"COLUMNS": "80"}, {}):  # a terminal of 80 columns; a pipe (no $COLUMNS)
        lines = harness.run("jobs", "--state", "pending", env=env).stdout.splitlines()
        assert all(line == line.rstrip() for line in lines), lines
        if env:
            assert all(len(line) <= 80 for line in lines), lines
            assert len(lines) > 3  # the reason took more than one line
        assert reason in " ".join(" ".join(line.split("  ")[-1].split()) for line in lines[2:])


# -- status ---------------------------------------------------------------------------------


def test_status_of_waiting_job_says_why_up_front(harness: Harness) -> None:
    result = harness.run("status", "j-wait")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Job j-wait (big)"
    assert lines[1] == f"Waiting: {WAITING}"
    assert "8 × H100, 16 CPUs, 64 GiB" in result.stdout
    assert "Attempts" not in result.stdout


def test_status_cost_so_far_keeps_a_space_before_the_amount(harness: Harness) -> None:
    harness.api.jobs = [make_job("j-cost", JobState.RUNNING, cost_cny="0.125611")]
    result = harness.run("status", "j-cost")
    assert result.exit_code == 0, result.output
    assert "Cost so far  0.125611 CNY" in result.stdout


def test_status_shows_attempts(harness: Harness) -> None:
    lost = make_attempt(1, AttemptState.LOST, ended_at=NOW - timedelta(minutes=1), message="site missed heartbeats")
    job = make_job(
        "j-2", JobState.FAILED, attempts=[lost, make_attempt(2, AttemptState.FAILED, exit_code=3, message="exit 3")]
    )
    harness.api.jobs = [job.model_copy(update={"exit_code": 3, "finished_at": NOW, "reason": "the job exited with 3"})]
    result = harness.run("status", "j-2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Reason: the job exited with 3" in out
    assert "Exit code" in out
    assert "Finished" in out
    header = next(line for line in out.splitlines() if line.startswith("#"))
    assert header.split() == ["#", "SITE", "STATE", "NODES", "STARTED", "ENDED", "EXIT", "MESSAGE"]
    assert "LOST" in out
    assert "site missed heartbeats" in out
    assert "tj-01" in out


def test_status_json_is_the_job(harness: Harness) -> None:
    data = json.loads(harness.run("status", "j-run", "--json").stdout)
    assert {"id", "name", "state", "reason", "site", "attempts"} <= data.keys()
    assert data["id"] == "j-run"
    assert data["state"] == "RUNNING"


# -- submit ---------------------------------------------------------------------------------


def test_submit_prints_id_state_and_reason(harness: Harness, tmp_path: Path) -> None:
    harness.api.jobs = [make_job("j-new", JobState.PENDING, reason=WAITING)]
    result = harness.run("submit", str(write_spec(tmp_path, "run: echo hi\n")))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["Submitted job j-new (llama-ft): PENDING", f"  Waiting: {WAITING}"]
    assert harness.api.submitted[0]["spec"]["run"] == "echo hi"
    assert harness.api.submitted[0]["workdir_digest"] is None


def test_submit_uploads_workdir_relative_to_spec(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print('hi')\n")
    spec = write_spec(tmp_path, "workdir: code\nrun: python train.py\n")
    result = harness.run("submit", str(spec), "--name", "renamed", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == "j-run"
    with tarfile.open(fileobj=io.BytesIO(harness.api.uploaded), mode="r:gz") as tar:
        assert tar.getnames() == ["train.py"]
    assert harness.api.submitted[0]["workdir_digest"] == "sha256:abc"
    assert harness.api.submitted[0]["spec"]["name"] == "renamed"
    assert "Uploaded workdir" in result.stderr


def test_submit_rejects_a_bad_name_as_usage_error(harness: Harness, tmp_path: Path) -> None:
    result = harness.run("submit", str(write_spec(tmp_path, "run: x\n")), "--name", "no spaces")
    assert result.exit_code == 2
    assert "not a valid name" in result.stderr
    assert harness.api.requests == []


def test_submit_follow_streams_logs_and_exits_with_the_job(harness: Harness, tmp_path: Path) -> None:
    harness.api.after_submit = make_job("j-run", JobState.SUCCEEDED, exit_code=0)
    result = harness.run("submit", str(write_spec(tmp_path, "run: x\n")), "-f")
    assert result.exit_code == 0, result.output
    assert result.stdout == "step 1\nstep 2\n"
    assert "Submitted job j-run" in result.stderr
    assert "SUCCEEDED" in result.stderr


def test_submit_follow_failed_job_exits_1(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([make_job("j-run", JobState.RUNNING), make_job("j-run", JobState.FAILED, exit_code=7, reason="oom")])
    harness.api.override = lambda r: (
        job_response(next(answers)) if r.url.path == "/api/v1/jobs/j-run" and r.method == "GET" else None
    )
    naps: list[float] = []
    monkeypatch.setattr(jobs_module, "sleep", naps.append)
    result = harness.run("submit", str(write_spec(tmp_path, "run: x\n")), "--follow", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["state"] == "FAILED"  # logs went to stderr with --json
    assert "step 1" in result.stderr
    assert "exit code 7: oom" in result.stderr
    assert naps == [jobs_module.POLL_S]


def test_ctrl_c_while_following_keeps_the_job(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object, **__: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr("suanli.sdk.Client.logs", interrupted)
    result = harness.run("submit", str(write_spec(tmp_path, "run: x\n")), "-f")
    assert result.exit_code == 130
    assert "suanli cancel j-run" in result.stderr
    assert not any(r.url.path.endswith("/cancel") for r in harness.api.requests)


# -- logs, cancel ---------------------------------------------------------------------------


def test_logs_prints_output(harness: Harness) -> None:
    result = harness.run("logs", "j-run", "-f")
    assert result.exit_code == 0
    assert result.stdout == "step 1\nstep 2\n"
    [request] = [r for r in harness.api.requests if r.url.path.endswith("/logs")]
    assert request.url.params["follow"] == "true"


def test_logs_of_a_pending_job_says_why_it_waits(harness: Harness) -> None:
    result = harness.run("logs", "j-wait")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"j-wait is pending: {WAITING}; no output yet" in " ".join(result.stderr.split())


def test_cancel_of_a_finished_job_says_so_and_sends_nothing(harness: Harness) -> None:
    result = harness.run("cancel", "j-done")
    assert result.exit_code == 0
    assert "Job j-done (llama-ft) already ended: SUCCEEDED; nothing to cancel" in result.stdout
    assert "Cancelling" not in result.output
    assert not any(r.url.path.endswith("/cancel") for r in harness.api.requests)


def test_cancel(harness: Harness) -> None:
    result = harness.run("cancel", "j-run")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["Job j-run (llama-ft): RUNNING, cancel requested; it stops shortly"]
    data = json.loads(harness.run("cancel", "j-run", "--json").stdout)
    assert data["cancel_requested"] is True


# -- sites, nodes ---------------------------------------------------------------------------


def test_sites_table_and_json(harness: Harness) -> None:
    result = harness.run("sites")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "REGION", "ZONE", "BACKEND", "SANDBOX", "ONLINE", "NODES", "GPUS", "RUNNING"]
    assert lines[2].split() == ["ningxia-zw", "ningxia", "mainland", "local", "none", "no", "0", "-", "0"]
    row = ["tianjin-gaocun", "tianjin", "mainland", "local", "bwrap", "yes", "2", "12/16", "H100", "1"]
    assert lines[3].split() == row
    data = json.loads(harness.run("sites", "--json").stdout)
    assert data[1]["gpus"] == {"H100": {"total": 16, "free": 12}}
    assert [s["sandbox"] for s in data] == ["none", "bwrap"]


def test_nodes_table_and_json(harness: Harness) -> None:
    result = harness.run("nodes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SITE", "STATE", "GPUS", "CPUS", "MEMORY", "GiB", "HEALTH/REASON"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["tj-01"].split()[3:] == ["4/8", "H100", "48/64", "448/512", "ok"]
    assert rows["tj-02"].rstrip().endswith("fan repair")
    assert rows["nx-01"].rstrip().endswith("missed heartbeats")
    assert rows["cpu-01"].split()[3] == "-"
    data = json.loads(harness.run("nodes", "--site", "ningxia-zw", "--json").stdout)
    assert [n["name"] for n in data] == ["nx-01"]


# -- global options -------------------------------------------------------------------------


def test_server_and_token_precedence(harness: Harness) -> None:
    env = {"SUANLI_SERVER": "http://env:1", "SUANLI_TOKEN": "t-env"}
    harness.run("sites", env=env)
    harness.run("--server", "http://global:2/", "--token", "t-global", "sites", env=env)
    harness.run("--server", "http://global:2", "sites", "--server", "http://cmd:3", "--token", "t-cmd", env=env)
    harness.run("sites", env={"SUANLI_SERVER": None, "SUANLI_TOKEN": ""})
    assert harness.seen == [
        ("http://env:1", "t-env"),
        ("http://global:2", "t-global"),
        ("http://cmd:3", "t-cmd"),
        ("http://127.0.0.1:8731", None),
    ]


def test_token_is_sent(harness: Harness) -> None:
    harness.run("sites", "--token", "secret")
    assert harness.api.requests[0].headers["Authorization"] == "Bearer secret"


def test_version(harness: Harness) -> None:
    assert harness.run("version").stdout == f"suanli {__version__}\n"
    assert harness.run("--version").stdout == f"suanli {__version__}\n"


@pytest.mark.parametrize("group", ["user", "token", "tenant", "tariff"])
def test_ls_and_list_both_work(harness: Harness, group: str) -> None:
    for name in ("ls", "list"):
        result = harness.run(group, name, "--help")
        assert result.exit_code == 0, (group, name, result.output)


def test_jobs_unknown_state_and_site_are_said_in_words(harness: Harness) -> None:
    bad = harness.run("jobs", "--state", "FOO")
    assert bad.exit_code == 2
    assert "'FOO' is not a job state; states are pending," in " ".join(bad.output.split())
    assert "Value error" not in bad.output
    nowhere = harness.run("jobs", "--site", "nowhere")
    assert nowhere.exit_code == 1
    assert "no site 'nowhere'; known sites: ningxia-zw, tianjin-gaocun" in nowhere.output


def test_jobs_tenant_and_limit(harness: Harness) -> None:
    harness.api.jobs.append(make_job("j-other", JobState.PENDING, tenant="acme", reason=WAITING))
    other = harness.run("jobs", "--tenant", "acme", "--json")
    assert [j["id"] for j in json.loads(other.stdout)] == ["j-other"]
    newest = harness.run("jobs", "--all", "--limit", "2", "--json")
    ids = [j["id"] for j in json.loads(newest.stdout)]
    assert len(ids) == 2
    assert "j-old" not in ids  # the oldest are left out, the newest kept


def test_jobs_user_goes_to_the_server_and_format_picks_columns(harness: Harness) -> None:
    harness.api.jobs.append(make_job("j-alice", JobState.PENDING, user="alice", reason=WAITING, exit_code=None))
    result = harness.run("jobs", "--user", "alice", "--format", "id, user,tenant,reason")
    assert result.exit_code == 0, result.output
    assert harness.api.requests[0].url.params["user"] == "alice"
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "USER", "TENANT", "REASON"]
    assert lines[2].split()[:3] == ["j-alice", "alice", "bj-ai"]
    assert [j["user"] for j in json.loads(harness.run("jobs", "-u", "alice", "--json").stdout)] == ["alice"]
    bad = harness.run("jobs", "--format", "id,colour")
    assert bad.exit_code == 2
    assert "unknown column 'colour'; columns are id, name, state, user" in " ".join(bad.output.split())


def test_jobs_watch_lists_again_until_ctrl_c(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("suanli.cli.views.sleep", pause)
    result = harness.run("jobs", "--watch", "--interval", "5", "--format", "id,state")
    assert result.exit_code == 0, result.output
    assert pauses == [5.0, 5.0]
    assert result.stdout.count("Every 5s: suanli jobs") == 2  # listed, paused, listed, Ctrl-C
    assert sum(line.split() == ["ID", "STATE"] for line in result.stdout.splitlines()) == 2
    assert harness.run("jobs", "--watch", "--json").exit_code == 2


def test_status_times_carry_their_zone(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        result = harness.run("status", "j-run")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert result.exit_code == 0, result.output
    submitted = next(line for line in result.stdout.splitlines() if "Submitted" in line)
    assert submitted.split()[1:4] == [
        *(NOW - timedelta(minutes=3, seconds=10))
        .astimezone(ZoneInfo("Asia/Shanghai"))
        .strftime("%Y-%m-%d %H:%M:%S")
        .split(),
        "+08:00",
    ]
    started = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("1 "))
    assert "+08:00" in started  # the attempt's STARTED too
