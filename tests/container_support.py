"""The container tests' image: ``localhost/suanli-test:1``, built here by scripts/test-image.sh
(Debian's busybox-static in a rootfs whose /etc/os-release is not the host's; nothing is pulled).

A test that needs it calls ``require_test_image()``. Without podman and runc (``make containers``
installs them, as root), or not as root (the local backend runs podman as root), the test is
skipped with a loud reason on a developer's machine and FAILS under CI (``CI=true``), which
installs them.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

from suanli.agent.backends.container import find_podman
from tests.engines_support import in_ci

TEST_IMAGE = "localhost/suanli-test:1"
#: What the image's /etc/os-release says (the host's says something else).
TEST_IMAGE_NAME = 'NAME="suanli-test busybox"'
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-image.sh"


@cache
def _problem() -> str | None:
    if find_podman() is None:
        return "podman and runc are not installed (as root: make containers)"
    if os.geteuid() != 0:
        return "the local backend runs podman as root, and these tests do not run as root"
    try:
        built = subprocess.run(
            ["bash", str(SCRIPT), TEST_IMAGE], capture_output=True, text=True, timeout=300, check=False
        )
    except subprocess.TimeoutExpired:
        return f"{SCRIPT} took more than 300 s"
    if built.returncode != 0:
        return f"{SCRIPT} failed: {(built.stderr or built.stdout).strip()[-500:]}"
    return None


def require_test_image() -> str:
    """The test image's reference, built if needed; skip (fail under CI) when it cannot be."""
    why = _problem()
    if why is not None:
        if in_ci():
            pytest.fail(f"CI=true and the container tests cannot run: {why}", pytrace=False)
        pytest.skip(f"CONTAINER TEST SKIPPED: {why}")
    return TEST_IMAGE


def container_exists(name: str) -> bool:
    podman = find_podman() or "podman"
    return subprocess.run([podman, "container", "exists", name], capture_output=True, check=False).returncode == 0
