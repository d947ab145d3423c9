"""Running one shard of one task over a benchmark file, given a model (pure but for the model)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from suanli.core.evaluation.combine import shard_header
from suanli.core.evaluation.plan import Slot, order, shard
from suanli.core.evaluation.scoring import Model, ProgramRunner, score_doc
from suanli.core.evaluation.tasks import TaskError, TaskSpec, doc_key


def read_jsonl(data: bytes, task: str) -> list[dict[str, Any]]:
    """The documents of a JSONL benchmark file (blank lines skipped)."""
    docs = []
    for n, line in enumerate(data.splitlines()):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"task {task}: line {n + 1} of the benchmark is not JSON: {exc.msg}") from None
        if not isinstance(doc, dict):
            raise TaskError(f"task {task}: line {n + 1} of the benchmark is not a JSON object")
        docs.append(doc)
    if not docs:
        raise TaskError(f"task {task}: the benchmark holds no documents")
    return docs


def data_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slots_of(task: TaskSpec, docs: list[dict[str, Any]], seed: int, limit: int | None) -> list[Slot]:
    return order([doc_key(task, d, i) for i, d in enumerate(docs)], seed, limit)


def run_shard(
    task: TaskSpec,
    data: bytes,
    *,
    seed: int,
    limit: int | None,
    index: int,
    shards: int,
    model: Model,
    run_program: ProgramRunner | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of shard ``index`` of ``shards``; every record names its position."""
    docs = read_jsonl(data, task.name)
    slots = slots_of(task, docs, seed, limit)
    header = shard_header(
        task=task.name,
        task_digest=task.digest(),
        data_digest=data_digest(data),
        seed=seed,
        limit=limit,
        shards=shards,
        total=len(slots),
        index=index,
    )
    records = []
    for slot in shard(slots, index, shards):
        record = score_doc(task, docs[slot.line], model, run_program)
        records.append({"position": slot.position, "doc": slot.key, **record})
    return header, records
