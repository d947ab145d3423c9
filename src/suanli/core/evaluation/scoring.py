"""Asking a model about one document and scoring its answer.

The model is anything with the two methods of :class:`Model`, the requests lm-evaluation-harness
makes of a language model: the log-probability of a continuation after a context, and text
generated after a prompt until a stop sequence. pass@1 runs a program built from the completion
through ``run_program``, which the caller supplies (the in-job runner runs it in a child process
inside the job's own sandbox). Each document's record holds what a reader of the logs needs to
see why it scored as it did.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from suanli.core.evaluation.tasks import (
    TaskError,
    TaskSpec,
    choices_of,
    prompt_of,
    render,
    target_index,
    target_text,
)

#: ``run_program(source, timeout_s) -> passed``.
ProgramRunner = Callable[[str, float], bool]


class Model(Protocol):
    def loglikelihood(self, context: str, continuation: str) -> float:
        """log P(continuation | context), summed over the continuation's tokens."""

    def generate(self, prompt: str, until: tuple[str, ...], max_tokens: int) -> str:
        """Greedy text after ``prompt``, cut at the first of ``until``."""


def _cut(text: str, until: tuple[str, ...]) -> str:
    for stop in until:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


def score_doc(
    task: TaskSpec, doc: dict[str, Any], model: Model, run_program: ProgramRunner | None = None
) -> dict[str, Any]:
    """One document's record: ``metrics`` (name → value) and what was asked and answered."""
    prompt = prompt_of(task, doc)
    if task.output_type == "multiple_choice":
        return _multiple_choice(task, doc, prompt, model)
    if task.output_type == "loglikelihood":
        target = target_text(task, doc)
        ll = model.loglikelihood(prompt, task.target_delimiter + target)
        metrics = {"loglikelihood": ll, "perplexity": ll}
        return {"prompt": prompt, "target": target, "metrics": {m: metrics[m] for m in task.metrics}}
    completion = _cut(model.generate(prompt, task.until, task.max_gen_toks), task.until)
    out: dict[str, Any] = {"prompt": prompt, "completion": completion, "metrics": {}}
    if "exact_match" in task.metrics:
        target = target_text(task, doc)
        out["target"] = target
        out["metrics"]["exact_match"] = 1.0 if completion.strip() == target.strip() else 0.0
    if "pass@1" in task.metrics:
        if run_program is None or task.test_program is None:
            raise TaskError(f"task {task.name}: pass@1 needs a program runner and a test_program")
        program = str(render(task.test_program, doc, task.name, completion=completion))
        out["metrics"]["pass@1"] = 1.0 if run_program(program, task.timeout_s) else 0.0
    return out


def _multiple_choice(task: TaskSpec, doc: dict[str, Any], prompt: str, model: Model) -> dict[str, Any]:
    choices = choices_of(task, doc)
    gold = target_index(task, doc, choices)
    lls = [model.loglikelihood(prompt, task.target_delimiter + c) for c in choices]
    # acc_norm divides by the continuation's length in bytes, as lm-evaluation-harness does.
    normed = [ll / max(1, len((task.target_delimiter + c).encode())) for ll, c in zip(lls, choices, strict=True)]
    pick = _argmax(lls)
    pick_norm = _argmax(normed)
    metrics = {"acc": 1.0 if pick == gold else 0.0, "acc_norm": 1.0 if pick_norm == gold else 0.0}
    return {
        "prompt": prompt,
        "choices": choices,
        "target": gold,
        "loglikelihoods": lls,
        "prediction": pick,
        "metrics": {m: metrics[m] for m in task.metrics},
    }


def _argmax(values: list[float]) -> int:
    """The first index of the largest value (ties go to the earlier choice, deterministically)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def aggregate(name: str, values: list[float]) -> float:
    """A metric over all documents: the mean, or for perplexity exp(-mean log-likelihood).

    ``math.fsum`` is exact, so the sum does not depend on the order values arrive in either.
    """
    if not values:
        return float("nan")
    mean = math.fsum(values) / len(values)
    return math.exp(-mean) if name == "perplexity" else mean
