"""``python -m suanli.evaljob shard|combine``: the two steps an evaluation job runs.

``shard`` scores one shard of one task against a model and writes ``shard-<k>.json`` (the run's
header and every document's record). ``combine`` reads every shard's file, or the ``.tar.gz``
archives the shards' output datasets are, checks they make up one run, and writes
``scores.json`` and ``samples.jsonl``; its last output line is ``SUANLI-EVAL-SCORES`` and the
scores as JSON, which the front desk reads from the job's log.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

from suanli.core.evaluation.combine import SCORES_MARK, CombineError, combine
from suanli.core.evaluation.run import run_shard
from suanli.core.evaluation.tasks import TaskError, task_from_dict
from suanli.evaljob.openai import ModelError, OpenAIModel
from suanli.evaljob.programs import run_program


def _shard(args: argparse.Namespace) -> int:
    task = task_from_dict(json.loads(Path(args.task).read_text()))
    model = OpenAIModel(args.endpoint, args.model)
    header, records = run_shard(
        task,
        Path(args.data).read_bytes(),
        seed=args.seed,
        limit=args.limit,
        index=args.index,
        shards=args.shards,
        model=model,
        run_program=run_program,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"shard-{args.index}.json").write_text(json.dumps({"header": header, "records": records}))
    print(f"shard {args.index}/{args.shards} of {task.name}: {len(records)} document(s) scored", flush=True)
    return 0


def _read_results(paths: list[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    found: list[dict[str, Any]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += [json.loads(p.read_text()) for p in sorted(path.glob("shard-*.json"))]
        elif tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                for member in archive.getmembers():
                    if member.isfile() and Path(member.name).name.startswith("shard-"):
                        handle = archive.extractfile(member)
                        if handle is not None:
                            found.append(json.loads(handle.read()))
        else:
            found.append(json.loads(path.read_text()))
    return [(f["header"], f["records"]) for f in found]


def _combine(args: argparse.Namespace) -> int:
    task = task_from_dict(json.loads(Path(args.task).read_text()))
    scores = combine(_read_results(args.inputs), task.metrics)
    summary = {"task": scores.task, "metrics": scores.metrics, "samples": scores.samples, "run": scores.run}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps(summary, sort_keys=True, indent=1))
    if not args.scores_only:
        with (out / "samples.jsonl").open("w") as handle:
            for record in scores.records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
    print(f"{SCORES_MARK} {json.dumps(summary, sort_keys=True)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suanli.evaljob", description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    shard = steps.add_parser("shard", help="score one shard of one task")
    shard.add_argument("--task", required=True, help="the task definition (JSON)")
    shard.add_argument("--data", required=True, help="the benchmark (JSONL)")
    shard.add_argument("--endpoint", required=True, help="an OpenAI-compatible base URL ending in /v1")
    shard.add_argument("--model", required=True, help="the model name the endpoint serves")
    shard.add_argument("--seed", type=int, default=0)
    shard.add_argument("--limit", type=int, default=None)
    shard.add_argument("--index", type=int, required=True)
    shard.add_argument("--shards", type=int, required=True)
    shard.add_argument("--out", required=True)
    comb = steps.add_parser("combine", help="add up every shard's results")
    comb.add_argument("--task", required=True)
    comb.add_argument("--out", required=True)
    comb.add_argument("--scores-only", action="store_true", help="write no per-sample log (hidden benchmarks)")
    comb.add_argument("inputs", nargs="+", help="shard files, folders of them, or their .tar.gz archives")
    args = parser.parse_args(argv)
    try:
        return _shard(args) if args.step == "shard" else _combine(args)
    except (TaskError, CombineError, ModelError, ValueError, OSError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
