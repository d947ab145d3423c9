"""Where the client finds its API token: ``$SUANLI_TOKEN``, else what ``suanli login`` saved
for the server (``$SUANLI_HOME/credentials.json``, mode 0600). ``suanli up`` saves its admin
token there for the network it starts, so the local CLI needs no set-up."""

from __future__ import annotations

import json
import os
from pathlib import Path

CREDENTIALS_FILE = "credentials.json"


def client_home() -> Path:
    return Path(os.environ.get("SUANLI_HOME", str(Path.home() / ".suanli"))).expanduser()


def credentials_path() -> Path:
    return client_home() / CREDENTIALS_FILE


def _key(server: str) -> str:
    return server.rstrip("/").replace("://localhost", "://127.0.0.1")


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    servers = data.get("servers") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in servers.items()} if isinstance(servers, dict) else {}


def saved_token(server: str) -> str | None:
    return _load(credentials_path()).get(_key(server))


def discover_token(server: str) -> str | None:
    """The token to use for ``server`` when none is given."""
    return os.environ.get("SUANLI_TOKEN") or saved_token(server)


def save_token(server: str, token: str, path: Path | None = None) -> Path:
    """Remember ``token`` for ``server`` (the file is only its owner's)."""
    path = path or credentials_path()
    servers = _load(path)
    servers[_key(server)] = token
    _write(path, servers)
    return path


def forget_token(server: str) -> bool:
    path = credentials_path()
    servers = _load(path)
    if servers.pop(_key(server), None) is None:
        return False
    _write(path, servers)
    return True


def _write(path: Path, servers: dict[str, str]) -> None:
    write_private_json(path, {"servers": servers})


def write_private_json(path: Path, data: dict[str, object]) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
