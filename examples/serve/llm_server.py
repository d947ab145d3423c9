"""A small OpenAI-compatible language-model server with deterministic output, standard library only.

It stands in for a real model wherever a test, the demo or a benchmark needs one: the same prompt
always gets the same tokens, ``usage`` is exact, streaming is server-sent events chunk by chunk,
and ``/v1/completions`` with ``echo`` and ``logprobs`` scores a prompt token by token, which is what
log-likelihood evaluation asks of a model.

The "model" is a hash: the score of a word after a context is read from BLAKE2b of the model's
name, the last words of the context and the word, plus a bonus when the word already appears in
the context (so it answers questions whose answer the question repeats better than chance).
Words are the tokens (split on white space).

    python examples/serve/llm_server.py --port 8000 --model tiny-chat
    curl -s localhost:8000/v1/chat/completions -d '{"model": "tiny-chat",
        "messages": [{"role": "user", "content": "hello"}]}'

Routes: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(both with ``stream``). The port comes from ``--port``, else ``$PORT``, else 8000.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VOCAB = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "that",
    "for",
    "it",
    "on",
    "with",
    "as",
    "was",
    "at",
    "by",
    "an",
    "be",
    "this",
    "from",
    "or",
    "are",
    "compute",
    "network",
    "site",
    "job",
    "data",
    "model",
    "train",
    "serve",
    "token",
    "power",
    "grid",
    "beijing",
    "tianjin",
    "ningxia",
    "gpu",
    "cluster",
    "queue",
    "price",
    "ledger",
    "witness",
    "rule",
    "grade",
    "copy",
    "seal",
    "chunk",
    "yes",
    "no",
    "true",
    "false",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "answer",
    "because",
    "therefore",
    "so",
]
CONTEXT_WORDS = 4  # how many previous words the score looks at
COPY_BONUS = 2.5  # added to a word's score when the context already holds it
DEFAULT_MAX_TOKENS = 16


def tokens(text: str) -> list[str]:
    return text.split()


def _score(model: str, context: list[str], word: str) -> float:
    tail = " ".join(context[-CONTEXT_WORDS:])
    digest = hashlib.blake2b(f"{model}\x00{tail}\x00{word}".encode(), digest_size=8).digest()
    base = int.from_bytes(digest, "big") / 2**64 * 4.0
    return base + (COPY_BONUS if word in context else 0.0)


def logprob(model: str, context: list[str], word: str) -> float:
    """log P(word | context): a softmax over the vocabulary and the word itself."""
    candidates = set(VOCAB) | {word}
    scores = {w: _score(model, context, w) for w in candidates}
    top = max(scores.values())
    norm = top + math.log(sum(math.exp(s - top) for s in scores.values()))
    return scores[word] - norm


def next_word(model: str, context: list[str]) -> str:
    return max(VOCAB, key=lambda w: (_score(model, context, w), w))


def generate(model: str, prompt: list[str], max_tokens: int, stop: list[str]) -> Iterator[str]:
    context = list(prompt)
    for _ in range(max_tokens):
        word = next_word(model, context)
        if word in stop:
            return
        context.append(word)
        yield word


def chat_prompt(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in messages)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "suanli-llm-server/1"
    model = "tiny-chat"
    replica = ""
    token_delay = 0.0

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("LLM_SERVER_LOG"):
            super().log_message(format, *args)

    # -- plumbing ---------------------------------------------------------------------------------
    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Replica", self.replica)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Replica", self.replica)
        self.end_headers()

    def _event(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        data = f"data: {text}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError as exc:
            self._error(400, f"the request body is not JSON: {exc}")
            return None
        if not isinstance(body, dict):
            self._error(400, "the request body must be a JSON object")
            return None
        requested = body.get("model", self.model)
        if requested != self.model:
            self._error(404, f"this server serves the model {self.model!r}, not {requested!r}")
            return None
        return body

    def _words(self, prompt: list[str], body: dict[str, Any]) -> list[str]:
        stop = body.get("stop") or []
        stops = [stop] if isinstance(stop, str) else list(stop)
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        max_tokens = DEFAULT_MAX_TOKENS if limit is None else int(limit)
        return list(generate(self.model, prompt, max_tokens, stops))

    # -- routes -----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path == "/health":
            self._send_json(200, {"status": "ok", "replica": self.replica})
        elif self.path == "/v1/models":
            self._send_json(
                200, {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "suanli"}]}
            )
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        if self.path == "/v1/chat/completions":
            self._chat()
        elif self.path == "/v1/completions":
            self._completion()
        else:
            self._error(404, f"no route {self.path}")

    def _stream_words(self, words: list[str], prompt_len: int, body: dict[str, Any], chat: bool) -> None:
        ident = f"cmpl-{hashlib.blake2b(' '.join(words).encode(), digest_size=6).hexdigest()}"
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._start_stream()
        for i, word in enumerate(words):
            if self.token_delay:
                time.sleep(self.token_delay)
            piece = word if i == 0 else " " + word
            choice: dict[str, Any] = {"index": 0, "finish_reason": None}
            if chat:
                choice["delta"] = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            else:
                choice["text"] = piece
            self._event({"id": ident, "object": obj, "model": self.model, "choices": [choice]})
        last: dict[str, Any] = {"index": 0, "finish_reason": "length" if words else "stop"}
        last["delta" if chat else "text"] = {} if chat else ""
        final: dict[str, Any] = {"id": ident, "object": obj, "model": self.model, "choices": [last]}
        if (body.get("stream_options") or {}).get("include_usage"):
            final["usage"] = _usage(prompt_len, len(words))
        self._event(final)
        self._end_stream()

    def _chat(self) -> None:
        body = self._body()
        if body is None:
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "messages must be a non-empty list")
            return
        prompt = tokens(chat_prompt(messages))
        words = self._words(prompt, body)
        if body.get("stream"):
            self._stream_words(words, len(prompt), body, chat=True)
            return
        if self.token_delay:
            time.sleep(self.token_delay * len(words))
        self._send_json(
            200,
            {
                "id": f"chatcmpl-{hashlib.blake2b(' '.join(prompt).encode(), digest_size=6).hexdigest()}",
                "object": "chat.completion",
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "finish_reason": "length",
                    }
                ],
                "usage": _usage(len(prompt), len(words)),
            },
        )

    def _completion(self) -> None:
        body = self._body()
        if body is None:
            return
        prompt_field = body.get("prompt", "")
        prompts = [prompt_field] if isinstance(prompt_field, str) else list(prompt_field)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            self._error(400, "prompt must be a string or a list of strings")
            return
        if body.get("stream"):
            if len(prompts) != 1:
                self._error(400, "streaming takes one prompt")
                return
            prompt = tokens(prompts[0])
            self._stream_words(self._words(prompt, body), len(prompt), body, chat=False)
            return
        choices = []
        prompt_total = completion_total = 0
        for index, text in enumerate(prompts):
            prompt = tokens(text)
            words = self._words(prompt, body)
            prompt_total += len(prompt)
            completion_total += len(words)
            choice: dict[str, Any] = {
                "index": index,
                "text": (text if body.get("echo") else "") + "".join(" " + w for w in words),
                "finish_reason": "length",
            }
            if body.get("logprobs") is not None:
                choice["logprobs"] = _logprobs(self.model, prompt, words, bool(body.get("echo")))
            choices.append(choice)
        self._send_json(
            200,
            {
                "id": f"cmpl-{hashlib.blake2b(json.dumps(prompts).encode(), digest_size=6).hexdigest()}",
                "object": "text_completion",
                "model": self.model,
                "choices": choices,
                "usage": _usage(prompt_total, completion_total),
            },
        )


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _logprobs(model: str, prompt: list[str], words: list[str], echo: bool) -> dict[str, Any]:
    """Per-token log-probabilities in the OpenAI completions shape; the first prompt token has none."""
    scored = (prompt + words) if echo else words
    start = 0 if echo else len(prompt)
    context = [] if echo else list(prompt)
    out_tokens: list[str] = []
    values: list[float | None] = []
    offsets: list[int] = []
    offset = 0
    for i, word in enumerate(scored):
        out_tokens.append(word if echo and i == 0 else " " + word)
        values.append(None if echo and start + i == 0 else logprob(model, context, word))
        offsets.append(offset)
        offset += len(out_tokens[-1])
        context.append(word)
    return {"tokens": out_tokens, "token_logprobs": values, "text_offset": offsets, "top_logprobs": None}


def serve(
    port: int, model: str, replica: str = "", token_delay_ms: float = 0.0, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (0 picks a free port), not yet serving: call ``serve_forever``."""
    handler = type(
        "BoundHandler",
        (Handler,),
        {
            "model": model,
            "replica": replica or f"{os.uname().nodename}:{os.getpid()}",
            "token_delay": token_delay_ms / 1000,
        },
    )
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _attempt_name() -> str:
    job = os.environ.get("SUANLI_JOB_ID")
    return f"{job}:{os.environ.get('SUANLI_ATTEMPT', '')}" if job else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default=os.environ.get("MODEL_NAME", "tiny-chat"))
    parser.add_argument("--replica", default=_attempt_name(), help="name sent back in X-Replica")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="sleep this long per generated token")
    args = parser.parse_args(argv)
    server = serve(args.port, args.model, args.replica, args.token_delay_ms, args.host)
    print(f"serving {args.model} on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
