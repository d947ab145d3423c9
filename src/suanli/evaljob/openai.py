"""A client for any OpenAI-compatible server (``/v1/completions``), standard library only.

Log-likelihoods come from ``echo: true, logprobs: 1, max_tokens: 0``: the server scores the prompt
token by token, and the continuation's tokens are those that start at or after the end of the
context (``text_offset``), so no tokenizer is needed on this side. Generation is greedy
(``temperature: 0``), with the task's stop sequences.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class ModelError(RuntimeError):
    """The model's server failed or answered something this client cannot use."""


@dataclass(frozen=True)
class OpenAIModel:
    """``base_url`` ends in ``/v1``; ``model`` is the name the server serves."""

    base_url: str
    model: str
    timeout_s: float = 60.0
    api_key: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps({"model": self.model, **body}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base_url.rstrip("/") + path
        if not url.startswith(("http://", "https://")):
            raise ModelError(f"the model endpoint must be an http(s) URL, not {self.base_url!r}")
        request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 (scheme checked above)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310 (the tenant's URL)
                out = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise ModelError(f"{self.base_url}{path} answered {exc.code}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ModelError(f"cannot reach the model at {self.base_url}: {exc}") from None
        if not isinstance(out, dict) or not out.get("choices"):
            raise ModelError(f"{self.base_url}{path} answered without choices")
        return out

    def loglikelihood(self, context: str, continuation: str) -> float:
        reply = self._post(
            "/completions", {"prompt": context + continuation, "echo": True, "logprobs": 1, "max_tokens": 0}
        )
        logprobs = reply["choices"][0].get("logprobs") or {}
        offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
        if not isinstance(offsets, list) or not isinstance(values, list) or len(offsets) != len(values):
            raise ModelError(f"{self.base_url} gave no per-token log-probabilities (echo with logprobs)")
        picked = [v for o, v in zip(offsets, values, strict=True) if o >= len(context) and v is not None]
        if not picked:
            raise ModelError(f"{self.base_url} scored no token of the continuation {continuation!r}")
        return float(sum(picked))

    def generate(self, prompt: str, until: tuple[str, ...], max_tokens: int) -> str:
        body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        if until:
            body["stop"] = list(until)
        return str(self._post("/completions", body)["choices"][0].get("text", ""))
