"""The evaluation harness's core: task definitions, seeded order, shards, scoring, combining."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.adaptors import human_eval_problems
from suanli.core.evaluation import catalog, synthetic
from suanli.core.evaluation.combine import CombineError, combine
from suanli.core.evaluation.modelref import parse_model_ref
from suanli.core.evaluation.plan import order, shard
from suanli.core.evaluation.run import run_shard
from suanli.core.evaluation.tasks import TaskError, TaskSpec, choices_of, prompt_of, task_from_dict
from suanli.evaljob import bundle
from suanli.evaljob.openai import ModelError, OpenAIModel
from suanli.evaljob.programs import run_program
from tests.llm_support import running

MC = task_from_dict(synthetic.TASK)
MC_DATA = synthetic.to_jsonl(synthetic.synthetic_mc(40, seed=7))


@pytest.fixture(scope="module")
def model() -> Iterator[OpenAIModel]:
    with running("tiny-chat") as url:
        yield OpenAIModel(f"{url}/v1", "tiny-chat")


def _run(task: TaskSpec, data: bytes, model: object, shards: int, seed: int = 1, limit: int | None = None) -> object:
    results = [
        run_shard(task, data, seed=seed, limit=limit, index=k, shards=shards, model=model, run_program=run_program)  # type: ignore[arg-type]
        for k in range(shards)
    ]
    return combine(results, task.metrics)


def test_templates_fields_and_expressions_render() -> None:
    doc = {"sentence": "the ledger", "choices": ["ledger", "seal"], "label": 0}
    assert prompt_of(MC, doc) == "Question: which word appears in: the ledger ? Answer:"
    assert choices_of(MC, doc) == ["ledger", "seal"]
    as_expression = task_from_dict({**synthetic.TASK, "doc_to_choice": "{{choices}}", "doc_to_target": "{{label}}"})
    assert choices_of(as_expression, doc) == ["ledger", "seal"]
    fixed = task_from_dict({**synthetic.TASK, "doc_to_choice": ["yes", "no"], "doc_to_target": "no"})
    assert choices_of(fixed, doc) == ["yes", "no"]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"output_type": "essay"}, "output_type must be one of"),
        ({"doc_to_choice": None}, "needs doc_to_choice"),
        ({"metric_list": ["exact_match"]}, "reports acc, acc_norm, not exact_match"),
        ({"doc_to_text": "{{ unclosed"}, "does not parse"),
        ({"colour": "red"}, "unknown task field(s): colour"),
        ({"task": "Bad Name"}, "task must be a name"),
    ],
)
def test_bad_task_definitions_say_what_is_wrong(change: dict[str, object], says: str) -> None:
    with pytest.raises(TaskError, match=says.replace("(", r"\(").replace(")", r"\)")):
        task_from_dict({**synthetic.TASK, **change})


def test_templates_run_in_a_sandbox() -> None:
    hostile = task_from_dict({**synthetic.TASK, "doc_to_text": "{{ sentence.__class__.__mro__ }}"})
    with pytest.raises(TaskError, match="failed on a document"):
        prompt_of(hostile, {"sentence": "x"})


def test_order_depends_on_the_seed_only_and_limit_takes_its_head() -> None:
    keys = [f"d{i}" for i in range(50)]
    first = order(keys, seed=3)
    assert [s.key for s in first] == [s.key for s in order(keys, seed=3)]
    assert [s.key for s in first] != [s.key for s in order(keys, seed=4)]
    assert [s.key for s in order(keys, seed=3, limit=10)] == [s.key for s in first[:10]]
    assert sorted(s.position for k in range(4) for s in shard(first, k, 4)) == list(range(50))
    with pytest.raises(ValueError, match="share the key 'd1'"):
        order(["d1", "d1"], seed=0)


def test_scores_and_records_do_not_depend_on_the_shard_count(model: OpenAIModel) -> None:
    one, four, seven = (_run(MC, MC_DATA, model, n) for n in (1, 4, 7))
    assert one.metrics == four.metrics == seven.metrics  # type: ignore[attr-defined]
    assert one.records == four.records == seven.records  # type: ignore[attr-defined]
    # The test model reads its context, so it beats chance (1/4) on the synthetic set.
    assert one.metrics["acc"] > 0.5  # type: ignore[attr-defined]
    assert one.samples == 40  # type: ignore[attr-defined]


def test_a_limited_run_asks_the_seeds_subset(model: OpenAIModel) -> None:
    limited = _run(MC, MC_DATA, model, 3, seed=5, limit=9)
    assert limited.samples == 9  # type: ignore[attr-defined]
    full = _run(MC, MC_DATA, model, 1, seed=5)
    assert limited.records == full.records[:9]  # type: ignore[attr-defined]


def test_generate_until_exact_match(model: OpenAIModel) -> None:
    task = task_from_dict(catalog.ARITH_TASK)
    data = synthetic.to_jsonl(catalog.arith_words(12, seed=2))
    scores = _run(task, data, model, 2)
    assert scores.samples == 12  # type: ignore[attr-defined]
    for record in scores.records:  # type: ignore[attr-defined]
        assert record["metrics"]["exact_match"] == (1.0 if record["completion"].strip() == record["target"] else 0.0)
    assert scores.records == _run(task, data, model, 5).records  # type: ignore[attr-defined]


def test_combine_refuses_results_that_do_not_make_one_run(model: OpenAIModel) -> None:
    shards = [run_shard(MC, MC_DATA, seed=1, limit=8, index=k, shards=2, model=model) for k in range(2)]
    with pytest.raises(CombineError, match="1 of 2 shards reported; 4 document"):
        combine(shards[:1], MC.metrics)
    with pytest.raises(CombineError, match="reported twice"):
        combine([shards[0], shards[0], shards[1]], MC.metrics)
    other = run_shard(MC, MC_DATA, seed=2, limit=8, index=1, shards=2, model=model)
    with pytest.raises(CombineError, match=r"another run \(differs in seed"):
        combine([shards[0], other], MC.metrics)


class _Canonical:
    """A model that answers each HumanEval prompt with its canonical solution (or a wrong one)."""

    def __init__(self, problems: list[dict[str, str]], wrong: bool = False) -> None:
        self.answers = {p["prompt"]: p["canonical_solution"] for p in problems}
        self.wrong = wrong

    def loglikelihood(self, context: str, continuation: str) -> float:
        raise AssertionError("pass@1 asks for generations only")

    def generate(self, prompt: str, until: tuple[str, ...], max_tokens: int) -> str:
        return "    return None\n" if self.wrong else self.answers[prompt]


def test_humaneval_pass_at_1_runs_the_completions_tests() -> None:
    problems = human_eval_problems()
    assert len(problems) == 164
    task = task_from_dict(catalog.HUMANEVAL_TASK)
    data = synthetic.to_jsonl(problems)
    right = _run(task, data, _Canonical(problems), 2, limit=6)
    assert right.metrics == {"pass@1": 1.0}  # type: ignore[attr-defined]
    wrong = _run(task, data, _Canonical(problems, wrong=True), 2, limit=6)
    assert wrong.metrics == {"pass@1": 0.0}  # type: ignore[attr-defined]


def test_a_program_past_its_time_limit_fails() -> None:
    assert run_program("import sys; sys.exit(0)", 5)
    assert not run_program("raise SystemExit(1)", 5)
    assert not run_program("while True: pass", 0.5)


def test_an_unreachable_model_is_a_sentence() -> None:
    with pytest.raises(ModelError, match="cannot reach the model"):
        OpenAIModel("http://127.0.0.1:9/v1", "m", timeout_s=2).generate("hi", (), 1)


def test_the_job_entry_point_scores_shards_and_combines_them_from_its_bundle(tmp_path: Path) -> None:
    """The shipped bundle alone (no installed suanli on the path) runs both steps."""
    for name, content in bundle.files().items():
        (tmp_path / "job" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "job" / name).write_bytes(content)
    (tmp_path / "task.json").write_text(json.dumps(MC.to_dict()))
    (tmp_path / "data.jsonl").write_bytes(MC_DATA)
    env = {"PATH": "/usr/bin:/bin"}
    with running("tiny-chat") as url:
        for k in range(2):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "suanli.evaljob",
                    "shard",
                    "--task",
                    str(tmp_path / "task.json"),
                    "--data",
                    str(tmp_path / "data.jsonl"),
                    "--endpoint",
                    f"{url}/v1",
                    "--model",
                    "tiny-chat",
                    "--seed",
                    "1",
                    "--index",
                    str(k),
                    "--shards",
                    "2",
                    "--out",
                    str(tmp_path / "out"),
                ],
                cwd=tmp_path / "job",
                env=env,
                check=True,
            )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "suanli.evaljob",
            "combine",
            "--task",
            str(tmp_path / "task.json"),
            "--out",
            str(tmp_path / "final"),
            str(tmp_path / "out"),
        ],
        cwd=tmp_path / "job",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    mark, payload = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert mark == "SUANLI-EVAL-SCORES"
    with running("tiny-chat") as url:
        expected = _run(MC, MC_DATA, OpenAIModel(f"{url}/v1", "tiny-chat"), 1)
    assert json.loads(payload)["metrics"] == expected.metrics  # type: ignore[attr-defined]
    assert len((tmp_path / "final" / "samples.jsonl").read_text().splitlines()) == 40
    assert len(bundle.digest()) == 64


def test_model_references_name_a_url_and_a_model_or_a_service() -> None:
    ref = parse_model_ref("openai:http://127.0.0.1:8000/v1/#tiny-chat")
    assert (ref.kind, ref.target, ref.name) == ("openai", "http://127.0.0.1:8000/v1", "tiny-chat")
    assert parse_model_ref("https://h/v1", name="m").name == "m"
    assert parse_model_ref("service:chat-7b").kind == "service"
    with pytest.raises(ValueError, match="openai:http://HOST:PORT/v1#MODEL"):
        parse_model_ref("http://h/v1")
