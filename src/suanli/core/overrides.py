"""Submit-time overrides (``suanli submit --gpus/--env/--time/--priority/--region``, ``suanli
rerun JOB`` with the same flags): what a flag says replaces what the spec file (or the stored
spec of the job run again) says. One pure function serves the CLI, which applies it to the file
before submitting, and the server, which applies it to a stored spec for a rerun."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from suanli.core.spec import StrictModel

#: ``--gpus`` values that ask for no GPU at all.
NO_GPUS = frozenset({"0", "none", "cpu"})


class Overrides(StrictModel):
    """What to change in a spec; a field left None (or empty) keeps the spec's."""

    #: The job's name.
    name: str | None = Field(default=None, max_length=63)
    #: ``resources.accelerators``: ``["H100:8"]``, or alternatives ``["H100:8", "A800:8"]``;
    #: ``[]`` asks for no GPU.
    gpus: list[str] | None = Field(default=None, max_length=16)
    #: Added to ``envs``; a name the spec has already takes this value.
    envs: dict[str, str] = Field(default_factory=dict, max_length=256)
    #: ``time_limit``: ``"2h"``, ``"90m"``, seconds.
    time_limit: str | None = Field(default=None, max_length=32)
    #: ``priority``: low, normal or high.
    priority: str | None = Field(default=None, max_length=16)
    #: ``placement.regions``: only these regions.
    regions: list[str] | None = Field(default=None, max_length=64)

    @property
    def empty(self) -> bool:
        return self == Overrides()


def parse_gpus(text: str) -> list[str]:
    """``--gpus``: ``H100:8``, alternatives ``H100:8,A800:8``, or ``0``/``none`` for none."""
    if text.strip().lower() in NO_GPUS:
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_envs(items: list[str]) -> dict[str, str]:
    """``--env K=V`` (repeatable) as a mapping; raises ValueError with a sentence."""
    envs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"'{item[:40]}' is not NAME=VALUE; write e.g. --env LR=0.01")
        envs[key] = value
    return envs


def apply_overrides(data: Mapping[str, Any], given: Overrides) -> dict[str, Any]:
    """The spec ``data`` with ``given`` applied: flag over file. The caller validates the result
    as any spec (``job_spec_from_data``), so an override is checked by the spec's own rules."""
    out = copy.deepcopy(dict(data))
    if given.name is not None:
        out["name"] = given.name
    if given.gpus is not None:
        out["resources"] = {**(out.get("resources") or {}), "accelerators": list(given.gpus)}
    if given.envs:
        out["envs"] = {**(out.get("envs") or {}), **given.envs}
    if given.time_limit is not None:
        out["time_limit"] = given.time_limit
    if given.priority is not None:
        out["priority"] = given.priority.lower()
    if given.regions is not None:
        out["placement"] = {**(out.get("placement") or {}), "regions": list(given.regions)}
    return out
