"""Questions per second through the front desk: a multiple-choice task against the test model,
with 1 and with 4 shard jobs, beside the harness alone; and the harness's own cost per question.

Starts the deterministic test model (examples/serve/llm_server.py) and `suanli up` (server and one
local-backend agent, jobs in the sandbox) as subprocesses, registers a synthetic multiple-choice
set as a dataset, and runs `POST /api/v1/evals` with --shards 1 and --shards 4, polling the run
until its scores are in. For comparison it scores the same questions in this process with the
harness alone (one HTTP request per choice, as the jobs do). ``overhead_ms_per_question`` is the
harness's time outside the model's requests (templates, order, scoring, combining) per question,
measured in that direct run; ``front_desk_overhead_ms_per_question`` is what the front desk adds
per question (jobs, placement, sandbox start, outputs, combine job) at 1 shard.

    python bench/eval_throughput.py [--questions 400] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _harness import HERE, auth, emit, free_port, suanli_process
from suanli.core.evaluation import synthetic
from suanli.core.evaluation.combine import combine
from suanli.core.evaluation.run import run_shard
from suanli.core.evaluation.tasks import task_from_dict
from suanli.evaljob.openai import OpenAIModel

SERVER = HERE.parent / "examples" / "serve" / "llm_server.py"


class Timed:
    """The model, with the time spent inside its requests added up."""

    def __init__(self, model: OpenAIModel) -> None:
        self.model, self.inside = model, 0.0

    def loglikelihood(self, context: str, continuation: str) -> float:
        started = time.perf_counter()
        try:
            return self.model.loglikelihood(context, continuation)
        finally:
            self.inside += time.perf_counter() - started

    def generate(self, prompt: str, until: tuple[str, ...], max_tokens: int) -> str:
        started = time.perf_counter()
        try:
            return self.model.generate(prompt, until, max_tokens)
        finally:
            self.inside += time.perf_counter() - started


def _model_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def through_front_desk(client: httpx.Client, endpoint: str, shards: int, seed: int) -> tuple[float, dict[str, float]]:
    body = {
        "endpoint": endpoint,
        "model": "tiny-chat",
        "tasks": [{"definition": synthetic.TASK, "dataset": "bench-mc"}],
        "shards": shards,
        "seed": seed,
    }
    started = time.perf_counter()
    reply = client.post("/api/v1/evals", json=body)
    reply.raise_for_status()
    run_id = reply.json()["id"]
    while True:
        run = client.get(f"/api/v1/evals/{run_id}").json()
        if run["state"] != "running":
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    if run["state"] != "succeeded":
        raise SystemExit(f"the evaluation with {shards} shard(s) ended {run['state']}: {run['units'][0]['message']}")
    return elapsed, run["units"][0]["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    data = synthetic.to_jsonl(synthetic.synthetic_mc(args.questions, seed=args.seed))
    task = task_from_dict(synthetic.TASK)
    port = free_port()
    model_server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port), "--model", "tiny-chat"], stdout=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 20
        while not _model_up(port):
            if time.monotonic() > deadline:
                raise SystemExit("the test model did not start")
            time.sleep(0.05)

        # The harness alone, in this process: one shard, then the combine step.
        timed = Timed(OpenAIModel(endpoint, "tiny-chat"))
        started = time.perf_counter()
        direct = combine(
            [run_shard(task, data, seed=args.seed, limit=None, index=0, shards=1, model=timed)], task.metrics
        )
        direct_s = time.perf_counter() - started
        harness_s = direct_s - timed.inside

        with (
            tempfile.TemporaryDirectory(prefix="suanli-eval-bench-") as tmp,
            suanli_process(["up", "--network", str(HERE / "network.yaml")]) as url,
            httpx.Client(base_url=url, timeout=60, headers=auth()) as client,
        ):
            deadline = time.monotonic() + 30
            while not all(s["online"] for s in client.get("/api/v1/sites").json()["items"]):
                if time.monotonic() > deadline:
                    raise SystemExit("the agent did not come online")
                time.sleep(0.05)
            path = Path(tmp) / "bench-mc.jsonl"
            path.write_bytes(data)
            client.post(
                "/api/v1/datasets",
                json={
                    "name": "bench-mc",
                    "owner": "default",
                    "home_site": "bench-site",
                    "path": str(path),
                    "classification": {"level": "general"},
                },
            ).raise_for_status()
            one_s, one = through_front_desk(client, endpoint, 1, args.seed)
            four_s, four = through_front_desk(client, endpoint, 4, args.seed)
    finally:
        model_server.terminate()
        model_server.wait(timeout=10)

    n = args.questions
    result: dict[str, float | int | str] = {
        "questions": n,
        "choices_per_question": 4,
        "direct_questions_per_s": n / direct_s,
        "front_desk_1_shard_questions_per_s": n / one_s,
        "front_desk_4_shards_questions_per_s": n / four_s,
        "front_desk_1_shard_s": one_s,
        "front_desk_4_shards_s": four_s,
        "model_ms_per_question": timed.inside / n * 1000,
        "overhead_ms_per_question": harness_s / n * 1000,
        "front_desk_overhead_ms_per_question": max(0.0, one_s - direct_s) / n * 1000,
        "scores_identical": str(one == four == direct.metrics).lower(),
        "acc": direct.metrics["acc"],
    }
    emit(result, args.json, "eval throughput (synthetic-mc against the test model)")


if __name__ == "__main__":
    main()
