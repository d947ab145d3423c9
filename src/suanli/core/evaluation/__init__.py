"""The evaluation harness's pure core: task definitions, sample order and shards, scoring, combining.

A benchmark is a dataset (JSONL, one document a line) plus a task definition in the
lm-evaluation-harness style (:mod:`.tasks`). :mod:`.plan` fixes which documents are asked and in
what order from the seed alone, and splits that order into shards so that every document's result
is the same whatever the shard count; :mod:`.scoring` turns a model's answers into per-sample
records and :mod:`.combine` folds shard results into the scores. Nothing here does I/O: the model
and the code runner come in as callables (the in-job runner, :mod:`suanli.evaljob`, supplies them).

These modules import only the standard library, jinja2 and each other, so the front desk can ship
them unchanged into a job's workdir (see :func:`suanli.evaljob.bundle.files`).
"""

from __future__ import annotations

#: Bumped whenever a change to these modules can change a score. It goes on the ledger with
#: every score, beside the digest of the harness's source files.
HARNESS_VERSION = "1"
