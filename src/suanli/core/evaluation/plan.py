"""Which documents an evaluation asks, in what order, and how that order splits into shards.

The order is a function of the seed and each document's key alone: documents are sorted by
BLAKE2b(seed, key). ``--limit K`` keeps the first K of that order, so a limited run is a seeded
random subset and two runs with one seed ask the same questions. Shard ``k`` of ``n`` takes the
positions ``p`` with ``p % n == k``. Every request carries only its own document (no batch is
shared between documents), so a document's result cannot depend on the shard count, and
:func:`suanli.core.evaluation.combine.combine` puts the positions back in order before adding.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Most shards one (model, task) pair may be split into.
MAX_SHARDS = 256


@dataclass(frozen=True)
class Slot:
    """One document's place in an evaluation."""

    #: Position in the seeded order (0-based); the shard is ``position % shards``.
    position: int
    #: Line of the document in the benchmark file (0-based).
    line: int
    #: The document's key (its ``doc_id`` field or its line number).
    key: str


def order(keys: list[str], seed: int, limit: int | None = None) -> list[Slot]:
    """The seeded order of documents whose keys are ``keys`` (in file order), cut to ``limit``."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"two documents share the key {key!r}; doc_id must name each document once")
        seen.add(key)
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")

    def rank(item: tuple[int, str]) -> bytes:
        return hashlib.blake2b(f"{seed}\x00{item[1]}".encode(), digest_size=16).digest()

    ranked = sorted(enumerate(keys), key=rank)
    if limit is not None:
        ranked = ranked[:limit]
    return [Slot(position=p, line=line, key=key) for p, (line, key) in enumerate(ranked)]


def shard(slots: list[Slot], index: int, count: int) -> list[Slot]:
    """The slots of shard ``index`` (0-based) of ``count``."""
    check_shards(count)
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    return [s for s in slots if s.position % count == index]


def check_shards(count: int) -> None:
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shards must be from 1 to {MAX_SHARDS}, not {count}")
