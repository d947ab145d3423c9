"""The CLI's defaults, ``$SUANLI_HOME/config.json`` (mode 0600): the server to talk to and the
token to send, so a new shell needs no exports (``suanli config``; ``suanli login`` sets the
server). Precedence, highest first: the ``--server``/``--token`` flags, then
``$SUANLI_SERVER``/``$SUANLI_TOKEN``, then this file, then (for the token) what ``suanli login``
saved for the server, then the built-in server ``http://127.0.0.1:8731``."""

from __future__ import annotations

import json
from pathlib import Path

from suanli.sdk.credentials import client_home, write_private_json

CONFIG_FILE = "config.json"
#: The settings the file holds, and what each is.
KEYS = {
    "server": "server URL (several, comma-separated, to fail over between replicas)",
    "token": "API token",
}


def config_path() -> Path:
    return client_home() / CONFIG_FILE


def load(path: Path | None = None) -> dict[str, str]:
    """The settings in the file ({} when there is none or it cannot be read)."""
    try:
        data = json.loads((path or config_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(v) for k, v in data.items() if k in KEYS and isinstance(v, str) and v}


def set_value(key: str, value: str | None, path: Path | None = None) -> Path:
    """Set ``key`` (None: remove it) and write the file; raises ValueError for an unknown key."""
    if key not in KEYS:
        raise ValueError(f"unknown setting '{key}'; settings are {', '.join(KEYS)}")
    path = path or config_path()
    values: dict[str, object] = dict(load(path))
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value
    write_private_json(path, values)
    return path
