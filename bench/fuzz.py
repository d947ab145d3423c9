"""Schemathesis against a real ``suanli server`` (a subprocess on loopback): every operation of
its OpenAPI document, valid and invalid inputs, as the admin. Prints cases tried, 5xx found,
other failures (undeclared status, body not as its schema) and the status codes seen.

    python bench/fuzz.py [--examples 200] [--seed 1] [--json]

``make test`` runs the same harness, smaller (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from _harness import HERE, emit, suanli_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fuzzing import run_fuzz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="cases per operation and mode (positive, negative)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with suanli_process(["server", "--network", str(HERE / "network.yaml")]) as url:
        report = run_fuzz(url, os.environ["SUANLI_TOKEN"], examples=args.examples, seed=args.seed)
    summary = report.summary()
    statuses = summary.pop("statuses")
    result: dict[str, float | int | str] = {**summary, "statuses": " ".join(f"{k}:{v}" for k, v in statuses.items())}
    emit(result, args.json, "API fuzzing (schemathesis, live server)")
    for failure in report.failures[:50]:
        print(f"  {failure}", file=sys.stderr)
    if report.server_errors or report.failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
