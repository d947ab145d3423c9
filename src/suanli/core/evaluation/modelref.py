"""What ``--model`` names: today an OpenAI-compatible URL; later a suanli service by name.

``openai:http://host:port/v1#NAME`` is the URL and the model name it serves (``#NAME`` may be
left out when ``--model-name`` gives it). ``service:NAME`` is the seam for the serving issue's
endpoints: it parses, and the caller says plainly that it cannot be resolved yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["openai", "service"]
    #: The OpenAI-compatible base URL (``openai``) or the service's name (``service``).
    target: str
    #: The model name the endpoint serves.
    name: str


def parse_model_ref(text: str, name: str | None = None) -> ModelRef:
    """A :class:`ModelRef`, or ValueError with the forms that are understood."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "service":
        return ModelRef("service", rest, name or rest)
    if sep and kind == "openai":
        text = rest
    url, _, fragment = text.partition("#")
    model = fragment or name
    if not url.startswith(("http://", "https://")) or not model:
        raise ValueError(
            f"--model {text!r}: name an OpenAI-compatible endpoint as openai:http://HOST:PORT/v1#MODEL "
            "(or --endpoint URL --model MODEL), or a service as service:NAME"
        )
    return ModelRef("openai", url.rstrip("/"), model)
