"""Evaluations through the front desk: shard jobs placed like any job, a combine job, scores back.

A real network (server over HTTP, local agents running sandboxed jobs) evaluates the shipped test
model (examples/serve/llm_server.py, in a thread on a loopback port) on two tasks with 1 and 4
shards: the scores are identical, and each run leaves a results dataset."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from suanli.app import evals
from suanli.cli.main import app
from suanli.core.api_eval import EvalRunIn, EvalTaskIn
from suanli.core.evaluation import catalog, synthetic
from suanli.core.ledger import Checkpoint, Record, verify_log
from suanli.sdk import ApiError, Client
from suanli.store.models import EvalRun
from tests.integration.conftest import Net, start_net
from tests.llm_support import running

NETWORK = """\
regions: [beijing, tianjin]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 8, memory: 16}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 8, memory: 16}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""
GENERAL = {"level": "general", "pi_count": 0, "categories": ["marketing"]}


@pytest.fixture
def enet(tmp_path: Path) -> Iterator[tuple[Net, str]]:
    with start_net(tmp_path, NETWORK) as net, running("tiny-chat") as url:
        net.local_agent("beijing")
        net.local_agent("tianjin")
        for task, docs in (
            ("synthetic-mc", synthetic.synthetic_mc(24, seed=3)),
            ("arith-words", catalog.arith_words(10, seed=3)),
        ):
            path = net.tmp / f"{task}.jsonl"
            path.write_bytes(synthetic.to_jsonl(docs))
            net.client.register_dataset(
                name=task, owner="bj-ai", home_site="beijing", path=str(path), classification=GENERAL
            )
        yield net, f"{url}/v1"


def _run(net: Net, client: Client, endpoint: str, shards: int) -> dict[str, dict[str, float]]:
    body = EvalRunIn(
        endpoint=endpoint,
        model="tiny-chat",
        tasks=[EvalTaskIn(definition=catalog.TASKS[t], dataset=t) for t in ("synthetic-mc", "arith-words")],
        shards=shards,
        seed=11,
    )
    run = client.start_eval(body)
    assert [len(u.shard_jobs) for u in run.units] == [shards, shards]
    net.pump(lambda: client.eval_run(run.id).state != "running", timeout=120)
    done = client.eval_run(run.id)
    assert done.state == "succeeded", done.model_dump_json(indent=1)
    for unit in done.units:
        assert unit.results_dataset == f"ev-{run.id}-{unit.index}"
        assert client.dataset(unit.results_dataset)["home_site"] in ("beijing", "tianjin")
        assert unit.data_digest is not None
    assert done.units[0].samples == 24
    return {u.task: u.metrics for u in done.units}


def test_one_and_four_shards_give_identical_scores(enet: tuple[Net, str]) -> None:
    net, endpoint = enet
    alice_token = net.user("alice", tenant="bj-ai")
    with Client(net.url, token=alice_token) as alice, Client(net.url, token=net.user("eve", tenant="rival")) as eve:
        _identical_scores(net, endpoint, alice, eve, alice_token)


def _identical_scores(net: Net, endpoint: str, alice: Client, eve: Client, alice_token: str) -> None:
    one = _run(net, alice, endpoint, 1)
    four = _run(net, alice, endpoint, 4)
    assert one == four
    assert one["synthetic-mc"]["acc"] > 0.25
    runs = alice.eval_runs()
    assert len(runs) == 2
    # Another tenant sees none of them.
    assert eve.eval_runs() == []
    with pytest.raises(ApiError) as missing:
        eve.eval_run(runs[0].id)
    assert missing.value.status == 404
    # The CLI lists and compares them.
    cli = CliRunner()
    token = ["--server", net.url, "--token", alice_token]
    listed = cli.invoke(app, ["eval", "ls", *token])
    assert listed.exit_code == 0, listed.output
    compared = cli.invoke(app, ["eval", "compare", runs[0].id, runs[1].id, "--json", *token])
    assert compared.exit_code == 0, compared.output
    assert all(row["delta"] == 0.0 for row in json.loads(compared.output))

    # The leaderboard lists both runs over the suite, each score on the ledger, and the ledger verifies.
    board = alice.leaderboard(["synthetic-mc", "arith-words"])
    assert {r.run for r in board.rows} == {r.id for r in runs}
    assert board.metrics == {"synthetic-mc": "acc", "arith-words": "exact_match"}
    shown = cli.invoke(app, ["eval", "leaderboard", "--tasks", "synthetic-mc,arith-words", *token])
    assert shown.exit_code == 0, shown.output
    entries = {e["index"]: e for e in net.client.ledger_entries()}
    for row in board.rows:
        assert set(row.ledger) == {"synthetic-mc", "arith-words"}
        for task, index in row.ledger.items():
            body = json.loads(entries[index]["data"])["body"]
            assert entries[index]["kind"] == "eval.score"
            assert (body["run"], body["task"], body["model"]["name"]) == (row.run, task, "tiny-chat")
            assert body["metrics"][board.metrics[task]] == row.scores[task]
            assert body["data_sha256"] == row.data_sha256[task]
            assert body["harness_sha256"] == runs[0].harness_digest
    # The dashboard's page shows the same board, in both languages.
    for lang, title in (("en", "Leaderboard"), ("zh", "排行榜")):
        with httpx.Client(base_url=net.url, cookies={"suanli_token": alice_token, "suanli_lang": lang}) as page:
            html = page.get("/evals", params={"tasks": "synthetic-mc,arith-words"}).text
        assert title in html
        assert all(r.run in html for r in board.rows)
        assert f"@{board.rows[0].ledger['synthetic-mc']}" in html
    records = [Record(e["index"], bytes.fromhex(e["leaf_hash"]), e["data"].encode()) for e in entries.values()]
    checkpoints = [Checkpoint.from_dict(c) for c in net.client.ledger_checkpoints()]
    report = verify_log(records, checkpoints, bytes.fromhex(net.client.ledger_key()))
    assert report.ok, report.problems


def test_a_bad_task_or_model_is_refused_before_any_job(enet: tuple[Net, str]) -> None:
    net, endpoint = enet
    with Client(net.url, token=net.user("alice", tenant="bj-ai")) as alice:
        _refused(endpoint, alice)


def _refused(endpoint: str, alice: Client) -> None:
    bad = dict(catalog.TASKS["synthetic-mc"], metric_list=["exact_match"])
    with pytest.raises(ApiError) as refused:
        alice.start_eval(EvalRunIn(endpoint=endpoint, model="m", tasks=[EvalTaskIn(definition=bad, dataset="x")]))
    assert refused.value.status == 422
    assert "reports acc, acc_norm, not exact_match" in str(refused.value)
    with pytest.raises(ApiError) as unknown:
        alice.start_eval(
            EvalRunIn(
                endpoint=endpoint,
                model="m",
                tasks=[EvalTaskIn(definition=catalog.TASKS["arith-words"], dataset="nope")],
            )
        )
    assert unknown.value.status in (404, 422)
    assert alice.jobs().items == []


PROBE = {
    "task": "sandbox-probe",
    "output_type": "generate_until",
    "doc_to_text": "{{q}}",
    "doc_to_target": "q",
    "generation_kwargs": {"until": ["\n"], "max_gen_toks": 2},
    "metric_list": ["pass@1"],
    # Passes only where the system is read-only: inside the job's sandbox, not on the host.
    "test_program": (
        "import pathlib\ntry:\n    pathlib.Path('/usr/suanli-probe-{{id}}').write_text('x')\n"
        "except OSError:\n    raise SystemExit(0)\nraise SystemExit(1)\n"
    ),
}


def test_pass_at_1_programs_run_inside_the_jobs_sandbox(enet: tuple[Net, str]) -> None:
    net, endpoint = enet
    path = net.tmp / "probe.jsonl"
    path.write_bytes(synthetic.to_jsonl([{"id": i, "q": "write a program"} for i in range(3)]))
    net.client.register_dataset(
        name="probe", owner="bj-ai", home_site="beijing", path=str(path), classification=GENERAL
    )
    task_file = net.tmp / "probe.yaml"
    task_file.write_text(json.dumps(PROBE))  # JSON is YAML
    token = net.user("alice", tenant="bj-ai")
    args = ["eval", "run", "--model", f"openai:{endpoint}#tiny-chat", "--tasks", "sandbox-probe=probe"]
    submitted = CliRunner().invoke(
        app, [*args, "--task-file", str(task_file), "--json", "--server", net.url, "--token", token]
    )
    assert submitted.exit_code == 0, submitted.output
    run_id = json.loads(submitted.output)["id"]
    with Client(net.url, token=token) as alice:
        net.pump(lambda: alice.eval_run(run_id).state != "running", timeout=120)
        done = alice.eval_run(run_id)
    assert done.state == "succeeded", done.model_dump_json(indent=1)
    assert done.units[0].metrics == {"pass@1": 1.0}
    assert not any(Path("/usr").glob("suanli-probe-*"))


def test_the_scheduler_loop_moves_a_run_on_that_nobody_reads(enet: tuple[Net, str]) -> None:
    """The leader's loop (``ControlPlane.every``, registered by the server) submits the combine job
    and takes the scores of a run no one asks about: it ends on the ledger all the same."""
    net, endpoint = enet
    net.control.every(0.0, partial(evals.advance_all, net.control))
    body = EvalRunIn(
        endpoint=endpoint,
        model="tiny-chat",
        tasks=[EvalTaskIn(definition=catalog.TASKS["synthetic-mc"], dataset="synthetic-mc")],
        shards=2,
        seed=5,
    )
    run = net.client.start_eval(body)

    def state() -> str:  # read from the store: an API read would move the run on itself
        with net.control.db.read() as session:
            row = session.get(EvalRun, run.id)
            return row.state if row is not None else "gone"

    def step() -> bool:
        net.control.run_periodic(time.monotonic())
        return state() != "running"

    net.pump(step, timeout=120)
    assert state() == "succeeded"
    kinds = [e["kind"] for e in net.client.ledger_entries()]
    assert "eval.score" in kinds
