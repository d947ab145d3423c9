"""Running a generated program for pass@1: a child Python process with a time limit.

The evaluation job is already in its site's sandbox (no writes outside its folders, its own
network rules), so the child shares that sandbox; it runs in a fresh temporary folder with
``-I`` (isolated mode: no user site, no environment variables read) and is killed at the limit.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile


def run_program(source: str, timeout_s: float) -> bool:
    """True when ``source`` runs to exit status 0 within ``timeout_s`` seconds."""
    with tempfile.TemporaryDirectory(prefix="suanli-pass1-") as folder:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", source],
                cwd=folder,
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0
