"""A generator of synthetic multiple-choice sets, for smoke tests, demos and benchmarks.

Each question hides its answer in a short sentence: "Which word appears in: 'the ledger and the
seal'?" with four single-word choices, exactly one of which is in the sentence. A model that
attends to its context beats chance (1/choices); the set is a function of ``(n, seed)`` only.
"""

from __future__ import annotations

import json
import random
from typing import Any

WORDS = [
    "compute",
    "network",
    "site",
    "job",
    "data",
    "model",
    "train",
    "serve",
    "token",
    "power",
    "grid",
    "beijing",
    "tianjin",
    "ningxia",
    "gpu",
    "cluster",
    "queue",
    "price",
    "ledger",
    "witness",
    "rule",
    "grade",
    "copy",
    "seal",
    "chunk",
    "answer",
    "river",
    "mountain",
    "lantern",
    "garden",
    "window",
]
FILLER = ("the", "a", "of", "and", "with", "near", "for")

#: The task definition that reads what :func:`synthetic_mc` writes.
TASK: dict[str, Any] = {
    "task": "synthetic-mc",
    "description": "synthetic multiple choice: which word appears in the sentence",
    "output_type": "multiple_choice",
    "doc_to_text": "Question: which word appears in: {{sentence}} ? Answer:",
    "doc_to_choice": "choices",
    "doc_to_target": "label",
    "doc_id": "id",
    "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    "metadata": {"version": "1"},
}


def synthetic_mc(n: int, seed: int, choices: int = 4) -> list[dict[str, Any]]:
    """``n`` documents with fields ``id``, ``sentence``, ``choices`` and ``label`` (the answer's index)."""
    if not 2 <= choices <= 8:
        raise ValueError("choices must be from 2 to 8")
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        picked = rng.sample(WORDS, choices + 2)
        answer, distractors, others = picked[0], picked[1:choices], picked[choices:]
        sentence = " ".join([rng.choice(FILLER), others[0], rng.choice(FILLER), answer, rng.choice(FILLER), others[1]])
        options = [answer, *distractors]
        rng.shuffle(options)
        docs.append({"id": f"s{seed}-{i}", "sentence": sentence, "choices": options, "label": options.index(answer)})
    return docs


def to_jsonl(docs: list[dict[str, Any]]) -> bytes:
    """Documents as JSONL bytes (sorted keys, so a set's digest depends on its content alone)."""
    return b"".join(json.dumps(d, sort_keys=True, ensure_ascii=False).encode() + b"\n" for d in docs)
