"""Content manifests: per-chunk BLAKE3 hashes and a Merkle root over them.

The root uses RFC 9162's tree shape and domain separation (0x00 leaf, 0x01 node) with BLAKE3
in place of SHA-256, so a single chunk can be proven against the root like a ledger entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3
from pydantic import BaseModel, Field, model_validator

MiB = 1 << 20
DEFAULT_CHUNK = 8 * MiB
MIN_CHUNK, MAX_CHUNK = 4 * MiB, 16 * MiB


def chunk_hash(data: bytes | bytearray | memoryview, *, parallel: bool = True) -> str:
    """BLAKE3 of one chunk. ``parallel`` spreads a large chunk over all cores (building a
    manifest reads one chunk at a time); a receiver that verifies several chunks at once
    already keeps the cores busy, and hashes each on its own thread."""
    threads = blake3.blake3.AUTO if parallel and len(data) >= MiB else 1
    return blake3.blake3(data, max_threads=threads).hexdigest()


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(b"\x01" + left + right).digest()


def merkle_root(chunk_hashes: list[str]) -> str:
    def mth(items: list[bytes]) -> bytes:
        n = len(items)
        if n == 0:
            return blake3.blake3(b"").digest()
        if n == 1:
            return blake3.blake3(b"\x00" + items[0]).digest()
        k = 1 << ((n - 1).bit_length() - 1)
        return _node(mth(items[:k]), mth(items[k:]))

    return mth([bytes.fromhex(h) for h in chunk_hashes]).hex()


class Manifest(BaseModel):
    size: int = Field(ge=0)
    chunk_size: int = Field(ge=1)
    chunks: list[str]
    root: str

    @model_validator(mode="after")
    def _shape(self) -> Manifest:
        expected = max(1, -(-self.size // self.chunk_size))
        if len(self.chunks) != expected:
            raise ValueError(f"a {self.size}-byte dataset in {self.chunk_size}-byte chunks has {expected} chunks")
        return self

    @property
    def count(self) -> int:
        return len(self.chunks)

    def chunk_len(self, index: int) -> int:
        if index == self.count - 1:
            return self.size - index * self.chunk_size
        return self.chunk_size

    def verify_root(self) -> bool:
        return merkle_root(self.chunks) == self.root


def check_chunk_size(chunk_size: int) -> int:
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk size must be 4–16 MiB; got {chunk_size / MiB:g} MiB")
    return chunk_size


def build_manifest(path: Path, chunk_size: int = DEFAULT_CHUNK) -> Manifest:
    size = path.stat().st_size
    hashes: list[str] = []
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            hashes.append(chunk_hash(view[:n]))
    if not hashes:
        hashes.append(chunk_hash(b""))
    return Manifest(size=size, chunk_size=chunk_size, chunks=hashes, root=merkle_root(hashes))


def read_chunk(fd: int, manifest: Manifest, index: int) -> bytes:
    return os.pread(fd, manifest.chunk_len(index), index * manifest.chunk_size)
