"""The files an evaluation job needs, to ship in its workdir: the harness's core and this package.

A job runs ``python -m suanli.evaljob`` from its workdir, where these files form a small
``suanli`` package that shadows any installed one; so a site runs the exact harness whose digest
the front desk put on the ledger, whatever suanli version the site's agent has.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import suanli

_ROOT = Path(suanli.__file__).parent
_PARTS = ("core/evaluation", "evaljob")
_INIT = {"__init__.py": '"""suanli\'s evaluation harness, shipped into an evaluation job."""\n'}


def files() -> dict[str, bytes]:
    """Relative path → content of every file the job's ``suanli`` package holds."""
    out = {"suanli/__init__.py": _INIT["__init__.py"].encode(), "suanli/core/__init__.py": b""}
    for part in _PARTS:
        for path in sorted((_ROOT / part).glob("*.py")):
            out[f"suanli/{part}/{path.name}"] = path.read_bytes()
    return out


def digest() -> str:
    """SHA-256 over the shipped files' paths and contents: the harness's identity on the ledger."""
    h = hashlib.sha256()
    for name, content in sorted(files().items()):
        h.update(name.encode() + b"\x00" + hashlib.sha256(content).digest())
    return h.hexdigest()
