"""The evaluation platform's calls (runs, benchmarks, the leaderboard), part of :class:`suanli.sdk.Client`."""

from __future__ import annotations

import time

from suanli.core.api import Page
from suanli.core.api_eval import EvalBenchmarkIn, EvalBenchmarkOut, EvalRunIn, EvalRunOut, LeaderboardOut
from suanli.sdk.base import BaseClient


class EvalCalls(BaseClient):
    def start_eval(self, body: EvalRunIn) -> EvalRunOut:
        return EvalRunOut.model_validate_json(
            self._request("POST", "/api/v1/evals", json=body.model_dump(mode="json")).content
        )

    def register_benchmark(self, body: EvalBenchmarkIn) -> EvalBenchmarkOut:
        return EvalBenchmarkOut.model_validate_json(
            self._request("POST", "/api/v1/evals/benchmarks", json=body.model_dump(mode="json")).content
        )

    def benchmarks(self) -> list[EvalBenchmarkOut]:
        return self._get("/api/v1/evals/benchmarks", Page[EvalBenchmarkOut]).items

    def leaderboard(self, tasks: list[str] | None = None) -> LeaderboardOut:
        return self._get("/api/v1/evals/leaderboard", LeaderboardOut, params={"task": tasks or []})

    def eval_run(self, run_id: str) -> EvalRunOut:
        return self._get(f"/api/v1/evals/{run_id}", EvalRunOut)

    def eval_runs(self) -> list[EvalRunOut]:
        return self._get("/api/v1/evals", Page[EvalRunOut]).items

    def wait_eval(self, run_id: str, timeout_s: float = 3600, poll_s: float = 1.0) -> EvalRunOut:
        """The run once it has succeeded or failed (or as it is when ``timeout_s`` passes)."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.eval_run(run_id)
            if run.state != "running" or time.monotonic() >= deadline:
                return run
            time.sleep(poll_s)
