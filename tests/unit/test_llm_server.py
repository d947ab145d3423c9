"""The shipped OpenAI-compatible test server: deterministic, exact usage, streams, scores prompts."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import httpx
import pytest

from tests.llm_support import llm_module, running

llm = llm_module()


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with running("tiny-chat", replica="r1") as url:
        yield url


def test_same_prompt_same_answer_and_exact_usage(base: str) -> None:
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "where is the gpu"}], "max_tokens": 7}
    first = httpx.post(f"{base}/v1/chat/completions", json=body).json()
    second = httpx.post(f"{base}/v1/chat/completions", json=body).json()
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert len(first["choices"][0]["message"]["content"].split()) == 7
    # "user: where is the gpu" is five words
    assert first["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    other = dict(body, messages=[{"role": "user", "content": "something else entirely"}])
    assert (
        httpx.post(f"{base}/v1/chat/completions", json=other).json()["choices"][0]["message"]["content"]
        != (first["choices"][0]["message"]["content"])
    )


def test_streaming_sends_the_same_words_chunk_by_chunk(base: str) -> None:
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    whole = httpx.post(f"{base}/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    events = []
    stream_body = dict(body, stream=True, stream_options={"include_usage": True})
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=stream_body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-replica"] == "r1"
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_echo_logprobs_score_every_prompt_token_after_the_first(base: str) -> None:
    body = {"model": "tiny-chat", "prompt": "the answer is seven", "max_tokens": 0, "echo": True, "logprobs": 1}
    choice = httpx.post(f"{base}/v1/completions", json=body).json()["choices"][0]
    values = choice["logprobs"]["token_logprobs"]
    assert values[0] is None
    assert len(values) == 4
    assert all(v < 0 for v in values[1:])
    assert "".join(choice["logprobs"]["tokens"]) == "the answer is seven"
    # a proper distribution: the vocabulary's probabilities after a context sum to one
    total = sum(math.exp(llm.logprob("tiny-chat", ["the"], w)) for w in llm.VOCAB)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_a_word_the_context_holds_is_likelier(base: str) -> None:
    context = ["which", "city", "is", "in", "the", "question", "beijing"]
    assert llm.logprob("tiny-chat", context, "beijing") > llm.logprob("tiny-chat", context[:-1], "beijing")


def test_wrong_model_and_bad_body_get_openai_errors(base: str) -> None:
    wrong = httpx.post(
        f"{base}/v1/chat/completions", json={"model": "other", "messages": [{"role": "user", "content": "x"}]}
    )
    assert wrong.status_code == 404
    assert "tiny-chat" in wrong.json()["error"]["message"]
    bad = httpx.post(f"{base}/v1/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    models = httpx.get(f"{base}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny-chat"]
