"""A hidden benchmark: tenant B's model is evaluated on tenant A's test set; B sees the score and
nothing of the data — no API reply, log, download or job output of B's carries it — while A gets
the per-sample log in its own results dataset."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from suanli.core.api_eval import EvalBenchmarkIn, EvalRunIn, EvalTaskIn
from suanli.core.evaluation import synthetic
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net, start_net
from tests.llm_support import running

NETWORK = """\
regions: [beijing, tianjin]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 8, memory: 16}]}
  - {name: tianjin, region: tianjin, zone: mainland, nodes: [{name: tj-01, cpus: 8, memory: 16}]}
tenants:
  - {name: bench-a, home_region: beijing}
  - {name: lab-b, home_region: tianjin}
"""
CANARY = "QUOKKA-CANARY-7F3A"
TASK = {
    **synthetic.TASK,
    "task": "secret-mc",
    "doc_to_text": "Question ({{canary}}): which word appears in: {{sentence}} ? Answer:",
}


@pytest.fixture
def hnet(tmp_path: Path) -> Iterator[tuple[Net, str, Client, Client, dict[str, str]]]:
    with start_net(tmp_path, NETWORK) as net, running("tiny-chat") as url:
        net.local_agent("beijing")
        net.local_agent("tianjin")
        docs = [{**d, "canary": CANARY} for d in synthetic.synthetic_mc(12, seed=9)]
        path = net.tmp / "secret.jsonl"
        path.write_bytes(synthetic.to_jsonl(docs))
        net.client.register_dataset(
            name="secret-mc", owner="bench-a", home_site="beijing", path=str(path), classification={"level": "general"}
        )
        a_token, b_token = net.user("alice", tenant="bench-a"), net.user("bob", tenant="lab-b")
        with Client(net.url, token=a_token) as a, Client(net.url, token=b_token) as b:
            yield net, f"{url}/v1", a, b, {"a": a_token, "b": b_token}


def test_b_sees_the_score_and_nothing_of_the_data(hnet: tuple[Net, str, Client, Client, dict[str, str]]) -> None:
    net, endpoint, a, b, tokens = hnet
    a.register_benchmark(
        EvalBenchmarkIn(dataset="secret-mc", definition=TASK, hidden=True, allowed_endpoints=[endpoint])
    )
    seen_by_b = [b.benchmarks()[0].model_dump_json()]
    assert b.benchmarks()[0].definition is None

    # B may neither bring its own template nor send the questions to a server A did not allow.
    with pytest.raises(ApiError) as own:
        b.start_eval(
            EvalRunIn(
                endpoint=endpoint,
                model="tiny-chat",
                tasks=[EvalTaskIn(dataset="secret-mc", definition={**TASK, "doc_to_text": "{{sentence}}"})],
            )
        )
    assert own.value.status == 422
    with pytest.raises(ApiError) as elsewhere:
        b.start_eval(EvalRunIn(endpoint="http://127.0.0.1:9/v1", model="m", tasks=[EvalTaskIn(dataset="secret-mc")]))
    assert elsewhere.value.status == 403

    run = b.start_eval(
        EvalRunIn(endpoint=endpoint, model="tiny-chat", tasks=[EvalTaskIn(dataset="secret-mc")], shards=2)
    )
    net.pump(lambda: b.eval_run(run.id).state != "running", timeout=120)
    done = b.eval_run(run.id)
    assert done.state == "succeeded", done.model_dump_json(indent=1)
    unit = done.units[0]
    assert unit.hidden
    assert unit.samples == 12
    assert 0.0 <= unit.metrics["acc"] <= 1.0
    assert unit.shard_jobs == []
    assert unit.combine_job is None
    assert unit.results_dataset is None

    # Every job ran as A's, at the benchmark's home site; A holds the per-sample log.
    a_jobs = a.jobs().items
    assert len(a_jobs) == 3
    assert {j.attempts[0].site for j in (a.job(j.id) for j in a_jobs)} == {"beijing"}
    results = a.dataset(f"ev-{run.id}-0")
    assert results["owner"] == "bench-a"

    # What B can reach: replies, lists, each of A's jobs and logs, the datasets and their bytes.
    with httpx.Client(base_url=net.url, headers={"Authorization": f"Bearer {tokens['b']}"}) as raw:
        paths = [
            "/api/v1/evals",
            f"/api/v1/evals/{run.id}",
            "/api/v1/jobs?all=true",
            "/api/v1/datasets",
            "/api/v1/evals/benchmarks",
        ]
        for job in a_jobs:
            paths += [f"/api/v1/jobs/{job.id}", f"/api/v1/jobs/{job.id}/logs", f"/api/v1/jobs/{job.id}/explain"]
        for name in ("secret-mc", f"ev-{run.id}-0", f"ev-{run.id}-0-s0", f"ev-{run.id}-0-s1"):
            paths += [f"/api/v1/datasets/{name}", f"/api/v1/datasets/{name}/download"]
        for path in paths:
            reply = raw.get(path)
            seen_by_b.append(reply.text)
            if "/jobs/" in path or "/datasets/" in path:
                assert reply.status_code == 404, (path, reply.status_code)
    assert b.jobs().items == []
    docs_text = (net.tmp / "secret.jsonl").read_text()
    sentences = [line.split('"sentence": "')[1].split('"')[0] for line in docs_text.splitlines()]
    for text in seen_by_b:
        assert CANARY not in text
        assert not any(s in text for s in sentences)

    # A, the owner, reads the per-sample log: every question, with B's model's answers.
    a_logs = "".join(a.logs(a_jobs[0].id))
    assert CANARY not in a_logs  # logs carry counts and scores, never documents
    archive = net.tmp / "results.tar.gz"
    with httpx.Client(base_url=net.url, headers={"Authorization": f"Bearer {tokens['a']}"}) as raw_a:
        archive.write_bytes(raw_a.get(f"/api/v1/datasets/ev-{run.id}-0/download").content)
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("samples.jsonl"))
        handle = tar.extractfile(member)
        assert handle is not None
        samples = handle.read().decode()
    assert samples.count(CANARY) == 12
