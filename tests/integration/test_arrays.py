"""Job arrays (``array:``, Slurm's ``--array``) through the real server: one request makes every
task, each task sees its index, ``%N`` caps how many run at once, listings fold an array into
one entry, and an array or one task can be cancelled."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli.main import app
from suanli.core.spec import parse_job_spec
from suanli.sdk import Client
from suanli.sdk.errors import ApiError
from tests.integration.conftest import Net
from tests.integration.test_metering import report

ENV_LINE = 'echo "task $SUANLI_ARRAY_INDEX of $SUANLI_ARRAY_JOB_ID ($SUANLI_ARRAY_TASK_COUNT) is $SUANLI_JOB_ID"'


def test_each_task_runs_through_a_real_agent_and_sees_its_index(net: Net) -> None:
    net.local_agent("beijing")
    array = net.client.submit(parse_job_spec(f"name: sweep\narray: '1,3,5-6'\nrun: '{ENV_LINE}'\n"))
    assert array.array is not None
    assert (array.array.tasks, array.array.counts) == (4, {"PENDING": 4})
    assert array.state.value == "PENDING"
    tasks = [f"{array.id}_{i}" for i in (1, 3, 5, 6)]
    net.pump(lambda: all(net.state(t) == "SUCCEEDED" for t in tasks))
    for index, task in zip((1, 3, 5, 6), tasks, strict=True):
        assert "".join(net.client.logs(task)) == f"task {index} of {array.id} (4) is {task}\n"
    done = net.client.job(array.id)
    assert done.state.value == "SUCCEEDED"
    assert done.array is not None
    assert done.array.counts == {"SUCCEEDED": 4}
    assert done.finished_at is not None


def test_an_array_costs_what_its_tasks_cost(net: Net) -> None:
    agent, _ = net.fake_agent("tianjin-gaocun")
    array = net.client.submit(parse_job_spec("array: 0-1\nrun: work\nresources: {accelerators: H100:1}\n"))
    net.cycle()
    net.cycle()
    assert {net.state(f"{array.id}_{i}") for i in range(2)} == {"RUNNING"}
    for i, hours in enumerate((1, 2)):
        attempt = net.client.job(f"{array.id}_{i}").attempts[-1].id
        report(agent, "tianjin-gaocun", attempt, 3600 * hours)  # an H100 at 28 CNY an hour
    task_costs = [Decimal(net.client.job(f"{array.id}_{i}").cost_cny or "0") for i in range(2)]
    assert task_costs == [Decimal(28), Decimal(56)]
    shown = net.client.job(array.id)
    assert Decimal(shown.cost_cny or "0") == 84
    folded = [j for j in net.client.jobs(fold=True).items if j.id == array.id]
    assert [j.cost_cny for j in folded] == [shown.cost_cny]


def test_at_most_n_tasks_run_at_once(net: Net) -> None:
    _, fake = net.fake_agent("ningxia")
    array = net.client.submit(parse_job_spec("array: 0-5%2\nrun: work\nresources: {accelerators: 910B:1}\n"))
    net.cycle()
    net.cycle()
    states = {i: net.state(f"{array.id}_{i}") for i in range(6)}
    assert [i for i, s in states.items() if s == "RUNNING"] == [0, 1]
    waiting = net.client.job(f"{array.id}_2")
    assert waiting.reason == f"array {array.id} runs at most 2 tasks at once (%2); 2 are running"
    assert {a.envs["SUANLI_ARRAY_INDEX"] for a in fake.started} == {"0", "1"}
    first = net.client.job(f"{array.id}_0").attempts[-1].id
    fake.finish(first, 0)
    for _ in range(3):
        net.cycle()
    assert [i for i in range(6) if net.state(f"{array.id}_{i}") == "RUNNING"] == [1, 2]
    shown = net.client.job(array.id)
    assert shown.state.value == "RUNNING"
    assert shown.reason == "2 RUNNING, 3 PENDING, 1 SUCCEEDED"


def test_listings_fold_an_array_and_cancel_takes_the_array_or_one_task(net: Net) -> None:
    net.fake_agent("beijing")
    single = net.client.submit(parse_job_spec("name: one\nrun: x\n"))
    array = net.client.submit(parse_job_spec("name: many\narray: 0-9:3\nrun: x\n"))
    folded = net.client.jobs(fold=True).items
    assert [(j.id, j.array is not None) for j in folded] == [(array.id, True), (single.id, False)]
    expanded = [j.id for j in net.client.jobs().items]
    assert expanded == [f"{array.id}_{i}" for i in (9, 6, 3, 0)] + [single.id]
    paged = net.client.jobs(fold=True, limit=1)
    assert [j.id for j in paged.items] == [array.id]
    assert [j.id for j in net.client.jobs(fold=True, cursor=paged.next_cursor).items] == [single.id]

    with pytest.raises(ApiError) as whole:
        net.client.explain(array.id)
    assert whole.value.status == 422
    assert (
        f"is a job array of 4 tasks, each placed on its own; explain one of them, e.g. suanli explain {array.id}_0"
        in str(whole.value)
    )
    assert net.client.explain(f"{array.id}_3").job_id == f"{array.id}_3"
    one = net.client.cancel(f"{array.id}_3")
    assert one.state.value == "CANCELLED"
    assert net.client.job(array.id).reason == "3 PENDING, 1 CANCELLED"
    assert [j.id for j in net.client.jobs(fold=True, state="CANCELLED").items] == [array.id]
    assert [j.id for j in net.client.jobs(fold=True, state="PENDING").items] == [array.id, single.id]
    everything = net.client.cancel(array.id)
    assert everything.state.value == "CANCELLED"
    assert everything.array is not None
    assert everything.array.counts == {"CANCELLED": 4}
    assert net.state(single.id) == "PENDING"


def test_another_tenant_sees_no_array_and_bad_arrays_are_refused(net: Net) -> None:
    with (
        Client(net.url, token=net.user("alice", tenant="bj-ai")) as alice,
        Client(net.url, token=net.user("eve", tenant="rival")) as eve,
    ):
        theirs = alice.submit(parse_job_spec("array: 0-2\nrun: x\n"))
        for call in (eve.job, eve.cancel):
            with pytest.raises(ApiError) as hidden:
                call(theirs.id)
            assert hidden.value.status == 404
        assert eve.jobs(fold=True).items == []
    too_many = net.http.post("/api/v1/jobs", json={"spec": {"run": "x", "array": "0-10000"}})
    assert too_many.status_code == 422
    assert "array: '0-10000': an array has at most 10,000 tasks" in too_many.json()["detail"]
    with_output = net.http.post("/api/v1/jobs", json={"spec": {"run": "x", "array": "0-1", "output": {"dataset": "o"}}})
    assert with_output.status_code == 422
    assert "cannot all become one output dataset" in with_output.json()["detail"]


def test_a_retried_array_submission_answers_with_the_first_array(net: Net) -> None:
    body = {"spec": {"run": "x", "array": "0-2"}}
    first = net.http.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    again = net.http.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == again.json()["id"]
    assert len(net.client.jobs().items) == 3


def test_the_cli_submits_lists_shows_and_cancels_an_array(net: Net, tmp_path: Path) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text("name: sweep\nrun: python train.py --seed $SUANLI_ARRAY_INDEX\n")
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args, "--server", net.url, "--token", net.admin_token], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    submitted = json.loads(cli("submit", str(spec), "--array", "0-99%10", "--json"))
    array_id = submitted["id"]
    assert submitted["array"] == {
        "expression": "0-99%10",
        "tasks": 100,
        "max_running": 10,
        "counts": {"PENDING": 100},
    }
    listed = cli("jobs")
    assert listed.count(array_id) == 1
    assert "100 PENDING" in listed
    assert cli("jobs", "--expand").count(f"{array_id}_") == 100
    shown = cli("status", array_id)
    assert f"100 tasks (0-99%10, at most 10 at once) named {array_id}_INDEX: 100 PENDING" in shown
    cli("cancel", f"{array_id}_7")
    cli("cancel", array_id)
    assert json.loads(cli("status", array_id, "--json"))["array"]["counts"] == {"CANCELLED": 100}
    bad = runner.invoke(app, ["submit", str(spec), "--array", "5-1", "--server", net.url, "--token", net.admin_token])
    assert bad.exit_code == 2
    assert "the range 5-1 ends before it starts" in bad.output
