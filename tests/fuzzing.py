"""Schemathesis against a live server's OpenAPI document: every operation, valid and invalid
inputs, as the admin (the widest surface). Shared by tests/integration/test_fuzz.py (bounded,
in ``make test``) and bench/fuzz.py (longer runs, figures printed).

Checks on every response: no 5xx; the status code is one the document declares; the body
conforms to the declared schema and content type. Each failure is recorded with the request
that caused it (method, path, status, a line of the body) and the run goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class FuzzReport:
    operations: int = 0
    cases: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "cases": self.cases,
            "server_errors_5xx": self.server_errors,
            "failures": len(self.failures),
            "cases_per_s": round(self.cases / self.seconds, 1) if self.seconds else 0.0,
            "seconds": round(self.seconds, 1),
            "statuses": dict(sorted(self.statuses.items())),
        }


def run_fuzz(
    url: str,
    token: str,
    *,
    examples: int = 25,
    seed: int = 0,
    skip: frozenset[str] = frozenset(),
) -> FuzzReport:
    """``examples`` positive and as many negative cases per operation (fewer where the schema
    allows fewer). ``skip``: operation labels (``"GET /api/v1/jobs/{job_id}/logs"``) left out."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in skip:
            continue
        report.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, url, headers, examples, seed, report)
    report.seconds = time.monotonic() - started
    return report


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    url: str,
    headers: dict[str, str],
    examples: int,
    seed: int,
    report: FuzzReport,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    label = f"{operation.method.upper()} {operation.path}"

    @hypothesis.seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @hypothesis.given(st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        report.cases += 1
        try:
            response = case.call(base_url=url, headers=headers, timeout=30)
        except Exception as exc:  # a transport error is a failure of the server too
            report.failures.append(f"{label} [{mode.value}]: {exc.__class__.__name__}: {exc}")
            return
        report.statuses[response.status_code] += 1
        if response.status_code >= 500:
            report.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup
            first = [line for line in str(exc).strip().splitlines() if line.strip()]
            report.failures.append(
                f"{label} [{mode.value}] -> {response.status_code}: {first[0] if first else exc.__class__.__name__}"
                f" | {case.method} {case.formatted_path} body={str(getattr(case, 'body', ''))[:120]!r}"
            )

    with contextlib.suppress(hypothesis.errors.Unsatisfiable):
        run()
