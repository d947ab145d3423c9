"""AES-256-GCM chunk sealing and the key store.

A sealed chunk is ``nonce (12) || ciphertext || tag (16)``. The associated data binds the
transfer id, the chunk index and the last-chunk flag, so a chunk cannot be replayed into
another transfer, moved to another position, or passed off as the end of a truncated stream.
Nonces are random (96 bits), so a resent chunk never reuses a nonce even if its bytes changed.
"""

from __future__ import annotations

import mmap
import os
import stat
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from suanli.filemodes import write_once

NONCE, TAG = 12, 16
OVERHEAD = NONCE + TAG

#: Bytes that may be read without a copy, and buffers that may be written in place.
Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap
WritableBuffer: TypeAlias = bytearray | memoryview | mmap.mmap


class SealError(Exception):
    """A sealed chunk failed authentication: wrong key, tampered bytes or wrong binding."""


def aad(context: str, index: int, last: bool) -> bytes:
    return f"suanli-chunk/v1|{context}|{index}|{int(last)}".encode()


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, context: str, index: int, last: bool, plaintext: Buffer) -> bytes:
    """``nonce || ciphertext || tag``, written once into one buffer (no concatenation copy)."""
    out = bytearray(len(memoryview(plaintext)) + OVERHEAD)
    seal_into(key, context, index, last, plaintext, out)
    return out  # type: ignore[return-value]  # a bytearray is bytes-like everywhere it goes


def seal_into(key: bytes, context: str, index: int, last: bool, plaintext: Buffer, out: WritableBuffer) -> memoryview:
    """Like :func:`seal`, into ``out`` (a buffer the caller reuses for every chunk); returns the
    sealed bytes as a view of ``out``. A fresh random nonce every call, as :func:`seal`."""
    n = len(memoryview(plaintext)) + OVERHEAD
    target = memoryview(out)[:n]
    if len(target) < n:
        raise ValueError(f"a sealed chunk of {n} bytes does not fit a {len(target)}-byte buffer")
    nonce = os.urandom(NONCE)
    target[:NONCE] = nonce
    AESGCM(key).encrypt_into(nonce, memoryview(plaintext), aad(context, index, last), target[NONCE:])
    return target


def open_sealed(key: bytes, context: str, index: int, last: bool, blob: Buffer) -> bytes:
    view = memoryview(blob)
    try:
        return AESGCM(key).decrypt(view[:NONCE], view[NONCE:], aad(context, index, last))
    except InvalidTag:
        raise SealError(f"chunk {index} of {context} failed authentication") from None


def open_into(key: bytes, context: str, index: int, last: bool, blob: Buffer, out: WritableBuffer) -> memoryview:
    """Like :func:`open_sealed`, into ``out`` (reused by the caller: no fresh 8 MiB per chunk).

    A ``bytearray`` grows to fit; any other buffer must be large enough. On failure ``out`` may
    hold unauthenticated bytes: the caller must not use them."""
    view = memoryview(blob)
    n = len(view) - OVERHEAD
    if n < 0:
        raise SealError(f"chunk {index} of {context} is too short to be sealed")
    if isinstance(out, bytearray) and len(out) < n:
        out.extend(bytes(n - len(out)))
    target = memoryview(out)[:n]
    if len(target) < n:
        raise SealError(f"chunk {index} of {context} is larger than a chunk of this transfer")
    try:
        AESGCM(key).decrypt_into(view[:NONCE], view[NONCE:], aad(context, index, last), target)
    except InvalidTag:
        raise SealError(f"chunk {index} of {context} failed authentication") from None
    return target


class KeyStore:
    """Keys in their own directory (mode 0700, files 0600), never inside a site's data directory.

    This version keeps keys on the control plane's disk; a KMS or HSM would replace this class.
    """

    def __init__(self, root: Path, *, forbidden: list[Path] | None = None) -> None:
        root = root.resolve()
        for data_dir in forbidden or []:
            d = data_dir.resolve()
            if root == d or d in root.parents or root in d.parents:
                raise ValueError(f"the key store {root} must not be beside the data in {d}; use another directory")
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(stat.S_IRWXU)
        self.root = root

    def _path(self, name: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.root / f"{safe}.key"

    def get_or_create(self, name: str) -> bytes:
        """The key named ``name``, made on first use. Safe when several threads or processes
        ask at once: the key is written whole to a temporary file and linked into place, so the
        first one wins and nobody ever reads half a key."""
        return write_once(self._path(name), new_key)

    def put(self, name: str, key: bytes) -> None:
        fd = os.open(self._path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)

    def get(self, name: str) -> bytes | None:
        path = self._path(name)
        return path.read_bytes() if path.exists() else None

    def delete(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)
