"""The CLI against one ``suanli up --demo`` network (beijing, tianjin-gaocun, ningxia)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import (
    EXAMPLES,
    Cli,
    Network,
    Result,
    describe,
    job_id_from,
    job_processes,
    still_running,
    wait_until,
    write,
)

pytestmark = pytest.mark.e2e

EXPECTED_SITES = {
    # name: (nodes, gpu type, total gpus)
    "beijing": (1, "A800", 4),
    "tianjin-gaocun": (1, "H100", 16),
    "ningxia": (4, "910B", 32),
}
EXPECTED_NODES = {
    "bj-01": ("beijing", "A800", 4),
    "tj-01": ("tianjin-gaocun", "H100", 16),
    **{f"nx-0{i}": ("ningxia", "910B", 8) for i in range(1, 5)},
}
HOLD_ALL_H100 = "name: {name}\nresources: {{accelerators: H100:16}}\nrun: sleep 60\ntime_limit: 5m\n"
NO_ROOM = "no site has 16 × H100 free"


# -- 1. the network -----------------------------------------------------------------------------


def test_sites_and_nodes(cli: Cli) -> None:
    table, as_json, nodes = cli.run_many([["sites"], ["sites", "--json"], ["nodes", "--json"]])

    assert table.returncode == 0, str(table)
    for name, (count, gpu, total) in EXPECTED_SITES.items():
        row = next((line for line in table.stdout.splitlines() if line.split()[:1] == [name]), None)
        assert row is not None, f"no row for {name}:\n{table.stdout}"
        assert re.search(rf"\byes\b.*\b{count}\b.*\b\d+/{total} {gpu}\b", row), row

    sites = {s["name"]: s for s in as_json.json()}
    assert set(sites) == set(EXPECTED_SITES)
    for name, (count, gpu, total) in EXPECTED_SITES.items():
        site = sites[name]
        assert site["online"] is True, site
        assert site["nodes"] == count, site
        assert set(site["gpus"]) == {gpu}, site
        assert site["gpus"][gpu]["total"] == total, site

    found = {n["name"]: n for n in nodes.json()}
    assert len(found) == 6, sorted(found)
    for name, (site, gpu, total) in EXPECTED_NODES.items():
        node = found[name]
        assert (node["site"], node["gpu_type"], node["gpus_total"]) == (site, gpu, total), node
        assert node["healthy"] is True, node


# -- 2. hello -----------------------------------------------------------------------------------


def test_hello_follow_and_status(cli: Cli) -> None:
    result = cli.run("submit", str(EXAMPLES / "hello.yaml"), "--follow")
    assert result.returncode == 0, str(result)
    job_id = job_id_from(result.stderr)
    assert f"hello from job {job_id} (attempt 1)" in result.stdout, str(result)

    job = cli.status(job_id)
    assert job["id"] == job_id
    assert job["name"] == "hello"
    assert job["state"] == "SUCCEEDED"
    assert "reason" in job
    assert job["site"] in EXPECTED_SITES
    assert job["exit_code"] == 0
    [attempt] = job["attempts"]
    assert attempt["number"] == 1
    assert attempt["state"] == "SUCCEEDED"
    assert attempt["exit_code"] == 0
    assert attempt["site"] == job["site"]


# -- 3. train -----------------------------------------------------------------------------------


def test_train_logs_gpu_and_checkpoint(cli: Cli, network: Network) -> None:
    submitted = cli.submit(EXAMPLES / "train.yaml")
    job_id = submitted["id"]
    assert submitted["name"] == "train"

    logs = cli.run("logs", job_id, "-f", timeout=120)
    assert logs.returncode == 0, str(logs)
    lines = [line for line in logs.stdout.splitlines() if line.strip()]
    assert lines, str(logs)
    assert re.search(r"done: accuracy 0\.\d+", lines[-1]), str(logs)
    assert "checkpoint saved" in logs.stdout, str(logs)
    gpus = re.search(r"GPUs: '([^']*)'", logs.stdout)
    assert gpus, str(logs)
    assert re.fullmatch(r"\d+", gpus.group(1)), f"CUDA_VISIBLE_DEVICES should name one GPU: {gpus.group(1)!r}"

    job = network.wait_job(job_id, "SUCCEEDED", timeout=15)
    assert job["site"] == "tianjin-gaocun", job
    attempt = job["attempts"][-1]
    assert attempt["gpu_type"] == "H100", attempt
    [node] = attempt["nodes"]
    assert node["node"] == "tj-01"
    assert node["gpu_indices"] == [int(gpus.group(1))], attempt

    checkpoints = list(network.sites_dir.glob(f"tianjin-gaocun/**/{job_id}/train.json"))
    assert checkpoints, f"no checkpoint of {job_id} under {network.sites_dir}"
    assert '"epoch": 60' in checkpoints[0].read_text()


# -- 4. two jobs that each want every H100 --------------------------------------------------------


def _job_row(table: str, job_id: str) -> str:
    row = next((line for line in table.splitlines() if line.startswith(job_id + " ")), None)
    assert row is not None, f"no row for {job_id}:\n{table}"
    return row


def _assert_estimate(reason: str, holder: dict[str, Any], limit: timedelta) -> None:
    """The reason says when tianjin-gaocun frees the GPUs: the holder's start + its time limit."""
    clock = re.search(r"(\d{1,2}):(\d{2})(?::\d{2})?\s*UTC", reason)
    if clock is None:
        assert re.search(r"\d{1,2}:\d{2}|\bin ~?\d+\s*(s|m|min|h|minutes?|hours?)\b", reason), (
            f"no estimated time in: {reason}"
        )
        return
    started = datetime.fromisoformat(holder["attempts"][-1]["started_at"].replace("Z", "+00:00"))
    expected = started + limit
    said = int(clock.group(1)) * 60 + int(clock.group(2))
    want = expected.hour * 60 + expected.minute
    off = min((said - want) % 1440, (want - said) % 1440)
    assert off <= 1, f"estimate {clock.group(0)} but the holder's limit ends at {expected:%H:%M:%S} UTC: {reason}"


def test_second_full_node_job_waits_and_says_why(cli: Cli, network: Network, tmp_path: Path) -> None:
    spec = write(tmp_path / "hold.yaml", HOLD_ALL_H100.format(name="e2e-hold"))
    first = cli.submit(spec)
    second: dict[str, Any] | None = None
    try:
        first = network.wait_job(first["id"], "RUNNING", timeout=30)
        assert first["site"] == "tianjin-gaocun"
        second = cli.submit(spec)
        network.wait_job(second["id"], "PENDING", timeout=15, predicate=lambda j: NO_ROOM in j["reason"])

        status, table, pending = cli.run_many(
            [
                ["status", second["id"], "--json"],
                ["jobs"],
                ["jobs", "--state", "PENDING", "--json"],
            ]
        )
        waiting = status.json()
        assert waiting["state"] == "PENDING"
        assert NO_ROOM in waiting["reason"]
        assert "tianjin-gaocun" in waiting["reason"]
        _assert_estimate(waiting["reason"], first, timedelta(minutes=5))

        assert table.returncode == 0, str(table)
        row = _job_row(table.stdout, second["id"])
        assert "PENDING" in row
        assert NO_ROOM in row
        assert "tianjin-gaocun" in row
        _assert_estimate(row, first, timedelta(minutes=5))
        assert "RUNNING" in _job_row(table.stdout, first["id"])

        listed = pending.json()
        assert isinstance(listed, list)
        assert second["id"] in {j["id"] for j in listed}
        assert first["id"] not in {j["id"] for j in listed}
        assert {j["state"] for j in listed} == {"PENDING"}

        # Cancel the holder: its process ends and the waiting job takes the node.
        holder_procs = job_processes(network.attempt_dir(first))
        assert holder_procs, f"no process found for the running job under {network.attempt_dir(first)}"
        cancelled = cli.run("cancel", first["id"])
        assert cancelled.returncode == 0, str(cancelled)
        network.wait_job(first["id"], "CANCELLED", timeout=15)
        left = still_running(holder_procs)
        assert not left, f"the cancelled job's processes are still running:\n{describe(left)}"

        started = network.wait_job(second["id"], "RUNNING", timeout=15)
        assert started["site"] == "tianjin-gaocun"
        assert started["reason"] == "", started["reason"]
        assert cli.status(second["id"])["state"] == "RUNNING"

        # Cancel the second one while it runs.
        second_procs = wait_until(
            "the second job's processes", lambda: job_processes(network.attempt_dir(started)), timeout=10
        )
        cancelled = cli.run("cancel", second["id"], "--json")
        assert cancelled.json()["id"] == second["id"]
        network.wait_job(second["id"], "CANCELLED", timeout=15)
        left = still_running(second_procs)
        assert not left, f"the cancelled job's processes are still running:\n{describe(left)}"
        assert cli.status(second["id"])["state"] == "CANCELLED"
    finally:
        for job in (first, second):
            if job is not None:
                network.cancel_quietly(job["id"])


# -- 5. too big for any site ----------------------------------------------------------------------


def test_too_big_is_refused_at_submit(cli: Cli, network: Network) -> None:
    result = cli.run("submit", str(EXAMPLES / "too-big.yaml"))
    assert result.returncode == 1, str(result)
    assert "no site can ever hold" in result.stderr, str(result)
    assert re.search(r"\b16\b", result.stderr), str(result)
    assert network.api.get("/api/v1/jobs", params={"name": "too-big"}).json()["items"] == []


# -- 6. bad specs -------------------------------------------------------------------------------

BAD_SPECS: dict[str, tuple[str, list[str]]] = {
    # file name: (content, what stderr must say besides the file name)
    "unknown-field.yaml": (
        "name: typo\nresources:\n  acelerators: H100:1\nrun: echo hi\n",
        ["unknown-field.yaml:3", "did you mean", "accelerators"],
    ),
    "zero-gpus.yaml": (
        "name: zero\nresources:\n  accelerators: H100:0\nrun: echo hi\n",
        ["zero-gpus.yaml:3", "H100:0"],
    ),
    "cpus-lots.yaml": ("name: lots\nresources:\n  cpus: lots\nrun: echo hi\n", ["cpus-lots.yaml:3", "cpus", "lots"]),
    "no-nodes.yaml": ("name: none\nresources:\n  num_nodes: 0\nrun: echo hi\n", ["no-nodes.yaml:3", "num_nodes"]),
    "no-run.yaml": ("name: norun\nresources:\n  cpus: 1\n", ["no-run.yaml", "run"]),
    "not-yaml.yaml": ("name: [broken\n  run: : :\n", ["not-yaml.yaml:", "YAML"]),
}


@pytest.fixture(scope="module")
def bad_spec_results(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    folder = tmp_path_factory.mktemp("bad-specs")
    names = sorted(BAD_SPECS)
    paths = [write(folder / name, BAD_SPECS[name][0]) for name in names]
    results = cli.run_many([["submit", str(p)] for p in paths])
    return dict(zip(names, results, strict=True))


@pytest.mark.parametrize("name", sorted(BAD_SPECS))
def test_bad_spec_is_explained(name: str, bad_spec_results: dict[str, Result]) -> None:
    result = bad_spec_results[name]
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.stderr + result.stdout
    for expected in BAD_SPECS[name][1]:
        assert expected.lower() in result.stderr.lower(), f"{expected!r} missing:\n{result}"
    assert re.search(rf"{re.escape(name)}:\d+", result.stderr), f"no file:line in:\n{result}"


# -- 7. a two-node gang --------------------------------------------------------------------------


def test_multinode_gang(cli: Cli, network: Network) -> None:
    result = cli.run("submit", str(EXAMPLES / "multinode.yaml"), "--follow", timeout=120)
    assert result.returncode == 0, str(result)
    assert "rank 0/2" in result.stdout, str(result)
    assert "rank 1/2" in result.stdout, str(result)
    assert "sum of ranks+1 = 3" in result.stdout, str(result)
    job = network.job(job_id_from(result.stderr))
    assert job["state"] == "SUCCEEDED"
    assert job["site"] == "ningxia"
    assert sorted(n["rank"] for n in job["attempts"][-1]["nodes"]) == [0, 1]


# -- 8. a failing job ---------------------------------------------------------------------------


def test_failing_job(cli: Cli, tmp_path: Path) -> None:
    spec = write(tmp_path / "fail.yaml", "name: e2e-fail\nrun: exit 3\n")
    result = cli.run("submit", str(spec), "--follow")
    assert result.returncode == 1, str(result)
    job = cli.status(job_id_from(result.stderr))
    assert job["state"] == "FAILED", job
    assert job["exit_code"] == 3, job
    assert job["attempts"][-1]["exit_code"] == 3, job
    assert "FAILED" in result.stderr, str(result)


# -- 9. workdir upload limit ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def oversized_workdir(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    folder = tmp_path_factory.mktemp("workdir-limit")
    (folder / "payload").mkdir()
    (folder / "payload" / "blob.bin").write_bytes(bytes(range(256)) * 400)  # 100 KB
    spec = write(folder / "spec.yaml", "name: e2e-workdir\nworkdir: payload\nrun: ls -l\n")
    return folder / "payload", cli.run("submit", str(spec), env={"SUANLI_MAX_WORKDIR_MB": "0.001"})


def test_workdir_over_the_limit_is_refused(oversized_workdir: tuple[Path, Result], network: Network) -> None:
    _, result = oversized_workdir
    assert result.returncode == 1, str(result)
    message = result.stderr
    assert "limit" in message, str(result)
    assert "SUANLI_MAX_WORKDIR_MB" in message, str(result)
    assert "payload" in message, str(result)
    assert network.api.get("/api/v1/jobs", params={"name": "e2e-workdir"}).json()["items"] == []


_UNITS = {"b": 1, "bytes": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def test_workdir_limit_message_states_the_limit(oversized_workdir: tuple[Path, Result]) -> None:
    """SUANLI_MAX_WORKDIR_MB=0.001 is about 1 KB; the message must not call it 0."""
    _, result = oversized_workdir
    stated = re.search(r"([\d.]+)\s*(bytes|B|KiB|KB|MiB|MB)\s+limit", result.stderr) or re.search(
        r"limit (?:of )?([\d.]+)\s*(bytes|B|KiB|KB|MiB|MB)\b", result.stderr
    )
    assert stated, f"no limit with a unit in:\n{result.stderr}"
    limit = float(stated.group(1)) * _UNITS[stated.group(2).lower()]
    assert 900 <= limit <= 1100, f"the limit is 0.001 MiB (~1 KB) but the message says {stated.group(0)!r}"


# -- 10. listing jobs ---------------------------------------------------------------------------


def test_jobs_json_lists_and_filters(cli: Cli, network: Network, tmp_path: Path) -> None:
    ok = cli.submit(EXAMPLES / "hello.yaml", "--name", "e2e-list-ok")
    bad = cli.submit(write(tmp_path / "bad.yaml", "name: e2e-list-bad\nrun: exit 2\n"))
    network.wait_job(ok["id"], "SUCCEEDED")
    network.wait_job(bad["id"], "FAILED")

    everything, failed = cli.run_many([["jobs", "--json"], ["jobs", "--state", "FAILED", "--json"]])
    listed = everything.json()
    assert isinstance(listed, list)
    by_id = {j["id"]: j for j in listed}
    assert by_id[ok["id"]]["state"] == "SUCCEEDED"
    assert by_id[bad["id"]]["state"] == "FAILED"
    assert by_id[ok["id"]]["name"] == "e2e-list-ok"

    only_failed = failed.json()
    assert isinstance(only_failed, list)
    ids = {j["id"] for j in only_failed}
    assert bad["id"] in ids
    assert ok["id"] not in ids
    assert {j["state"] for j in only_failed} == {"FAILED"}


# -- the bill ------------------------------------------------------------------------------------


def test_a_real_job_is_metered_and_billed(cli: Cli, tmp_path: Path) -> None:
    spec = write(tmp_path / "metered.yaml", "name: e2e-metered\nresources: {accelerators: A800:1}\nrun: sleep 6\n")
    result = cli.run("submit", str(spec), "--follow")
    assert result.returncode == 0, str(result)
    job_id = job_id_from(result.stderr)
    job = cli.status(job_id)
    assert job["site"] == "beijing", job
    assert Decimal(job["cost_cny"]) > 0, job  # 22 CNY per A800-hour, metered from the agent's clock
    [line] = [x for x in cli.run("usage", "--by", "job", "--json").json() if x["job_id"] == job_id]
    assert line["gpu_type"] == "A800"
    assert 5 <= line["gpu_seconds"] < 30, line
    assert line["cost_cny"] == job["cost_cny"]
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    bill = cli.run("invoice", job["tenant"], month, "--json").json()
    assert sum(Decimal(x["cost_cny"]) for x in bill["lines"]) == Decimal(bill["total_cny"])
    assert any(x["job_id"] == job_id for x in bill["lines"])
