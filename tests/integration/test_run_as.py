"""The local backend's ``run_as``: a tenant's jobs run as its own unprivileged OS user.

Needs root (the agent must be root to start processes as other users). This machine and CI run
as root; elsewhere the test that needs it is skipped, saying why, except under CI=true, where
not being root is a failure: the feature must be tested there.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanli.agent.backends.config import AgentConfig, make_backend
from suanli.agent.backends.local import LocalBackend
from suanli.core.errors import SuanliError
from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net

SPEC = """\
name: as-nobody
run: |
  set -e
  id -un
  echo "home=$HOME user=$USER"
  touch in-workdir
  echo step-1 > "$SUANLI_CHECKPOINT_DIR/ckpt.txt"
"""


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI must run the run_as test as root (it starts jobs as the user 'nobody')")
    pytest.skip(f"running jobs as another OS user needs root; this test runs as uid {os.geteuid()}")


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A work dir the user 'nobody' can reach (pytest's tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(prefix="suanli-run-as-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_tenants_job_runs_as_its_os_user(net: Net, work_dir: Path) -> None:
    _need_root()
    nobody = pwd.getpwnam("nobody")
    tenant = net.control.default_tenant  # whose jobs the test's client submits
    config = AgentConfig.model_validate({"local": {"run_as": {tenant: "nobody"}}})
    decl = net.spec.site("beijing")
    assert decl is not None
    backend = make_backend("local", work_dir / "site", config, decl.node_decls())
    net.agent("beijing", backend)

    job = net.client.submit(parse_job_spec(SPEC))
    assert job.tenant == tenant
    net.pump(lambda: net.state(job.id) in ("SUCCEEDED", "FAILED"))
    logs = "".join(net.client.logs(job.id))
    assert net.state(job.id) == "SUCCEEDED", logs
    lines = logs.splitlines()
    assert lines[0] == "nobody"
    # nobody's home (/nonexistent) does not exist: HOME is the job's workdir.
    [attempt] = net.client.job(job.id).attempts
    assert lines[1] == f"home={work_dir / 'site' / 'attempts' / str(attempt.id) / 'workdir'} user=nobody"
    ckpt = work_dir / "site" / "checkpoints" / job.id / "ckpt.txt"
    assert ckpt.read_text() == "step-1\n"
    assert (ckpt.stat().st_uid, ckpt.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert ckpt.parent.stat().st_uid == nobody.pw_uid


def test_run_as_refuses_to_start_when_the_agent_is_not_root(work_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SuanliError, match="needs the agent to run as root"):
        LocalBackend(work_dir / "site", run_as={"bj-ai": "nobody"})
    with pytest.raises(SuanliError, match="needs the agent to run as root"):
        LocalBackend(work_dir / "site", run_as_default="nobody")
    LocalBackend(work_dir / "site")  # without run_as, any user may run the agent


def test_run_as_refuses_unknown_users_and_unreachable_work_dirs(
    work_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(SuanliError, match="run_as of tenant 'bj-ai': there is no OS user 'no-such-user-42'"):
        LocalBackend(work_dir / "site", run_as={"bj-ai": "no-such-user-42"})
    with pytest.raises(SuanliError, match="run_as_default: there is no OS user 'no-such-user-42'"):
        LocalBackend(work_dir / "site", run_as_default="no-such-user-42")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    with pytest.raises(SuanliError, match="user nobody cannot reach the work dir"):
        LocalBackend(locked / "site", run_as_default="nobody")
