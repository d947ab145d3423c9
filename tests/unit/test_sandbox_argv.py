"""The bubblewrap command line (``sandbox.bwrap_argv``): pure, so what a rank can see is checked
here without running it; tests/integration/test_sandbox.py runs it for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanli.agent.backends.sandbox import HostLayout, SandboxPlan, bwrap_argv

HOST = HostLayout(
    system={"/usr": "", "/etc": "", "/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64"},
    etc_secrets={"/etc/shadow": False, "/etc/ssh": True},
    nvidia=frozenset({"/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm"}),
)


def _plan(**kw: object) -> SandboxPlan:
    base: dict[str, object] = {
        "workdir": Path("/srv/site/attempts/7/workdir"),
        "writable": (Path("/srv/site/checkpoints/j1"), Path("/srv/site/attempts/7/output")),
        "readonly": ((Path("/srv/site/datasets/notes"), "/data/notes"),),
        "python": (Path("/opt/venv"),),
        "uid": 65534,
        "gid": 65534,
    }
    base.update(kw)
    return SandboxPlan(**base)  # type: ignore[arg-type]


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, a in enumerate(argv) if a == flag]


def test_only_its_own_folders_are_writable_and_the_system_is_read_only() -> None:
    argv = bwrap_argv(_plan(), HOST)
    writable = {dest for _, dest in _pairs(argv, "--bind")}
    assert writable == {"/srv/site/attempts/7/workdir", "/srv/site/checkpoints/j1", "/srv/site/attempts/7/output"}
    read_only = {dest for _, dest in _pairs(argv, "--ro-bind")}
    assert {"/usr", "/etc", "/opt/venv", "/data/notes"} <= read_only
    assert ("usr/bin", "/bin") in _pairs(argv, "--symlink")
    assert "/srv/site" not in read_only | writable, "the site's folder itself is never shown"


def test_system_secrets_are_masked_and_proc_is_its_own() -> None:
    argv = bwrap_argv(_plan(), HOST)
    assert ("/dev/null", "/etc/shadow") in _pairs(argv, "--ro-bind")
    assert argv[argv.index("/etc/ssh") - 1] == "--tmpfs"
    assert {"--unshare-pid", "--unshare-ipc", "--die-with-parent"} <= set(argv)
    assert argv[argv.index("--proc") + 1] == "/proc"


def test_only_the_ranks_gpus_are_bound() -> None:
    argv = bwrap_argv(_plan(gpu_indices=(1,)), HOST)
    devices = {dest for _, dest in _pairs(argv, "--dev-bind")}
    assert devices == {"/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"}


def test_network_none_gets_a_network_namespace_of_its_own() -> None:
    assert "--unshare-net" in bwrap_argv(_plan(network="none"), HOST)
    assert "--unshare-net" not in bwrap_argv(_plan(network="any"), HOST)


def test_a_root_agent_drops_the_job_to_its_uid_with_no_privileges_left() -> None:
    argv = bwrap_argv(_plan(uid=1234, gid=4321), HOST)
    assert "--unshare-user" not in argv, "a user namespace would map the job back onto root"
    tail = argv[argv.index("--chdir") :]
    assert {"--reuid=1234", "--regid=4321", "--no-new-privs", "--bounding-set=-all", "--clear-groups"} <= set(tail)


def test_an_unprivileged_agent_uses_a_user_namespace_and_cannot_change_uid() -> None:
    argv = bwrap_argv(_plan(uid=None, gid=None), HOST, as_root=False)
    assert "--unshare-user" in argv
    with pytest.raises(ValueError, match="root"):
        bwrap_argv(_plan(), HOST, as_root=False)


def test_a_dataset_cannot_be_mounted_over_a_system_folder() -> None:
    with pytest.raises(ValueError, match="system folder"):
        bwrap_argv(_plan(readonly=((Path("/srv/site/datasets/x"), "/usr/lib/x"),)), HOST)


def test_homes_under_a_system_folder_are_hidden() -> None:
    argv = bwrap_argv(_plan(hidden=(Path("/etc/suanli-home"), Path("/srv/other"))), HOST)
    hidden = [argv[i + 1] for i, a in enumerate(argv) if a == "--tmpfs"]
    assert "/etc/suanli-home" in hidden
    assert "/srv/other" not in hidden, "a folder outside the shown system folders is absent already"
