"""Job secrets, server side: sealed with the server's key before anything is stored.

A spec's ``secrets`` (env-var name → value) never reach the database in clear. At submission
:func:`seal_spec` splits the validated spec into the spec that is stored and shown (each value
replaced by ``SECRET_MASK``, so ``JobOut.spec``, the CLI and the dashboard show the names only)
and one Fernet token (AES-128-CBC + HMAC-SHA256) holding the values, kept in
``jobs.secrets_enc``. The values are opened again only to build an agent's assignment.

The key: ``$SUANLI_SECRET_KEY`` (a Fernet key; a comma-separated list rotates keys: the first
seals, all open), else ``$SUANLI_HOME/server.key``, created on first use with mode 0600. Lose the
key and the secrets of jobs not yet started are lost with it: their attempts fail, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from suanli.app.errors import ServiceError
from suanli.core.spec import SECRET_MASK

KEY_ENV = "SUANLI_SECRET_KEY"


class SecretsUnavailable(ServiceError):
    """The server's key is unusable, or a sealed token does not open with it."""

    status = 500
    title = "Secrets unavailable"


class SecretBox:
    """Seals and opens job secrets with the server's key, read on first use (thread-safe).

    ``key``: the key text (one Fernet key, or several separated by commas; ``Settings.secret_key``,
    from ``$SUANLI_SECRET_KEY``); None: the key in ``key_path``, made there if missing.
    """

    def __init__(self, key_path: Path, key: str | None = None) -> None:
        self.key_path = Path(key_path)
        # A key given is checked at once (a server with a bad one does not start); the file is
        # read, or made, only when a secret first needs it.
        self._fernet: MultiFernet | None = _fernet(key, f"${KEY_ENV}") if key else None
        self._text = key
        self._lock = threading.Lock()

    def _cipher(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                self._text = _read_or_create(self.key_path)
                self._fernet = _fernet(self._text, self.key_path)
            return self._fernet

    def fingerprints(self) -> list[str]:
        """SHA-256 of each key, the sealing one first (read, or made, now): what replicas
        compare (``app/serverkeys.py``) without the key itself leaving the server."""
        self._cipher()
        assert self._text is not None
        return [hashlib.sha256(k.strip().encode("ascii")).hexdigest() for k in self._text.split(",") if k.strip()]

    def seal(self, values: Mapping[str, str]) -> str:
        return self._cipher().encrypt(json.dumps(dict(values), separators=(",", ":")).encode()).decode("ascii")

    def open(self, token: str) -> dict[str, str]:
        try:
            data = json.loads(self._cipher().decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError, UnicodeEncodeError):
            raise SecretsUnavailable(
                "the job's secrets cannot be decrypted with this server's key (was server.key or "
                f"${KEY_ENV} replaced?); submit the job again"
            ) from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise SecretsUnavailable("the job's sealed secrets are malformed; submit the job again")
        return data


def seal_spec(spec: Mapping[str, Any], box: SecretBox) -> tuple[dict[str, Any], str | None]:
    """``(spec to store, sealed token)``: the spec keeps the secrets' names with ``SECRET_MASK``
    as their values; the token (None when there are none) holds the values."""
    secrets = spec.get("secrets") or {}
    if not secrets:
        return dict(spec), None
    stored = {**spec, "secrets": dict.fromkeys(secrets, SECRET_MASK)}
    return stored, box.seal(secrets)


def open_secrets(token: str | None, box: SecretBox) -> dict[str, str]:
    """The values sealed by :func:`seal_spec` ({} for None)."""
    return box.open(token) if token else {}


def _fernet(text: str, source: object) -> MultiFernet:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, UnicodeEncodeError):
        # Never echo the key: only where it came from.
        raise SecretsUnavailable(
            f"the secret key in {source} is not a Fernet key (32 url-safe base64-encoded bytes); "
            'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        ) from None


def _read_or_create(path: Path) -> str:
    """The key file's text; a new key, written with mode 0600, when there is none yet (two
    servers starting at once on one home agree: the file is created exclusively)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it this instant: wait for its key
        for _ in range(50):
            text = path.read_text(encoding="ascii").strip()
            if text:
                return text
            time.sleep(0.01)
        return text
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)  # whatever the umask
    return key.decode("ascii")
