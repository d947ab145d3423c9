"""Folding shard results into one evaluation's scores.

A shard result is the per-sample records of one shard plus what identifies the run it belongs to
(task digest, data digest, seed, limit, shard count). :func:`combine` refuses results of
different runs, a missing or repeated position and a shard reported twice, then adds the records
in position order, so the scores are bit-identical for every shard count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from suanli.core.evaluation import HARNESS_VERSION
from suanli.core.evaluation.scoring import aggregate


class CombineError(ValueError):
    """Shard results that do not add up to one evaluation; the message says what is wrong."""


#: The combine step's last output line starts with this, then the scores as JSON.
SCORES_MARK = "SUANLI-EVAL-SCORES"
#: The fields every shard of one run must agree on.
RUN_FIELDS = ("task", "task_digest", "data_digest", "seed", "limit", "shards", "total", "harness_version")


@dataclass(frozen=True)
class Scores:
    """What an evaluation of one task found."""

    task: str
    #: Metric name → aggregate value.
    metrics: dict[str, float]
    #: Documents scored.
    samples: int
    #: The run's identity (the :data:`RUN_FIELDS` every shard agreed on).
    run: dict[str, Any]
    #: Every record, in position order.
    records: list[dict[str, Any]]


def shard_header(
    *, task: str, task_digest: str, data_digest: str, seed: int, limit: int | None, shards: int, total: int, index: int
) -> dict[str, Any]:
    """The header a shard writes before its records."""
    return {
        "task": task,
        "task_digest": task_digest,
        "data_digest": data_digest,
        "seed": seed,
        "limit": limit,
        "shards": shards,
        "total": total,
        "harness_version": HARNESS_VERSION,
        "index": index,
    }


def combine(results: list[tuple[dict[str, Any], list[dict[str, Any]]]], metrics: tuple[str, ...]) -> Scores:
    """The scores of (header, records) pairs, one per shard."""
    if not results:
        raise CombineError("no shard results to combine")
    first = results[0][0]
    run = {k: first.get(k) for k in RUN_FIELDS}
    shards, total = int(run["shards"] or 0), int(run["total"] or 0)
    indexes: set[int] = set()
    records: dict[int, dict[str, Any]] = {}
    for header, rows in results:
        other = {k: header.get(k) for k in RUN_FIELDS}
        if other != run:
            diff = [k for k in RUN_FIELDS if other[k] != run[k]]
            raise CombineError(f"shard {header.get('index')} belongs to another run (differs in {', '.join(diff)})")
        if header.get("index") in indexes:
            raise CombineError(f"shard {header.get('index')} was reported twice")
        indexes.add(int(header["index"]))
        for row in rows:
            p = int(row["position"])
            if p in records:
                raise CombineError(f"position {p} was scored twice")
            if p % shards != header["index"]:
                raise CombineError(f"position {p} does not belong to shard {header['index']}")
            records[p] = row
    missing = sorted(set(range(total)) - set(records))
    if len(indexes) != shards or missing:
        raise CombineError(
            f"{len(indexes)} of {run['shards']} shards reported; {len(missing)} document(s) unscored"
            + (f" (first: position {missing[0]})" if missing else "")
        )
    ordered = [records[p] for p in sorted(records)]
    values = {m: aggregate(m, [float(r["metrics"][m]) for r in ordered]) for m in metrics}
    return Scores(task=str(run["task"]), metrics=values, samples=len(ordered), run=run, records=ordered)
