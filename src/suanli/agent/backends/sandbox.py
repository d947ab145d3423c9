"""The local backend's sandbox: the ``bwrap`` (bubblewrap) command line a rank runs under.

Every rank of a local-backend job runs in its own mount, PID, IPC and UTS namespaces (and a
network namespace of its own with ``network: none``), with a fresh ``/proc`` of its PID
namespace, a minimal ``/dev`` (plus only the NVIDIA devices of its ``CUDA_VISIBLE_DEVICES`` and
the control devices), a private ``/tmp``, a read-only view of the system (``/usr``, ``/bin``,
``/lib*``, ``/etc`` minus its secrets, ``/sys``) and of the Python the job uses, read-write only
its own workdir, checkpoint folder and output folder, and its datasets read-only at their
``mount`` paths (and where ``SUANLI_DATASET_*`` point). Nothing else of the host is there: not
the agent's or the server's home, not other attempts' folders.

Users: with the agent running as root, bubblewrap runs as root *without* a user namespace (one
would map the sandbox's uid onto root outside) and, once the mounts are made, ``setpriv``
drops to the job's unprivileged uid/gid (its tenant's ``run_as`` user, else the sandbox user,
``nobody`` by default), with no capabilities left, an empty bounding set and no_new_privs.
With the agent running unprivileged, bubblewrap makes a user namespace and the job keeps the
agent's uid (it cannot change it), still with nothing of the host visible.

``bwrap_argv`` is pure: the host's facts it needs (which system folders exist or are links,
which NVIDIA devices exist) come in a ``HostLayout`` that ``host_layout`` reads once. A
container builder (``image:``) sits beside it and returns an argv prefix the same way.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from suanli.core.errors import SuanliError

NetworkMode = Literal["none", "site", "any"]

#: Top-level system folders shown read-only (links among them are recreated as links).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
#: Under /etc: what a job never sees (password hashes, host keys, cluster keys, suanli's config).
ETC_SECRETS = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/munge",
    "/etc/slurm/jwt.key",
    "/etc/suanli",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/security/opasswd",
)
#: NVIDIA devices every GPU job needs beside its own /dev/nvidia<N>.
NVIDIA_CONTROL = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
#: Where the rank's own uid drop happens when the agent is root.
SETPRIV = "/usr/bin/setpriv"
#: Signals bubblewrap itself is started ignoring (``supervisor --wrapped``), so that a SIGTERM to
#: the rank's process group reaches the job, which may trap it, without ending the sandbox;
#: coreutils' env gives them back their default action for the job inside.
WRAPPER_IGNORES = "TERM,INT,HUP"
ENV = "/usr/bin/env"
#: The descriptor the rank's environment arrives on (the supervisor's ``ENV_FD``).
ENV_FD = 3
#: The last step before the job's own command, run as the job's user: it exports the job's
#: environment (``NAME=value`` entries ended by NUL, on ``ENV_FD``) and becomes the command. Until
#: here bubblewrap, env and setpriv ran as root with the agent's clean environment, so a job's
#: ``LD_PRELOAD`` or the like never reached them. Names are POSIX names (checked at submit);
#: bash's read-only ones (UID, EUID, …) are left as bash sets them.
ENV_LOADER = (
    f'while IFS= read -r -d "" kv; do export -- "$kv" 2>/dev/null; done <&{ENV_FD}; exec {ENV_FD}<&-; exec "$@"'
)

INSTALL_HINT = (
    "install bubblewrap (as root: apt-get install -y bubblewrap), or declare `sandbox: none` for this site "
    "in the network file (local.sandbox: none in the agent's config) to run its jobs unsandboxed"
)


@dataclass(frozen=True)
class HostLayout:
    """What ``bwrap_argv`` needs to know of the host (read by ``host_layout``)."""

    #: System folder -> its link target ("" for a real folder); missing ones are absent.
    system: dict[str, str]
    #: Files and folders of ETC_SECRETS present on this host, with whether each is a folder.
    etc_secrets: dict[str, bool] = field(default_factory=dict)
    #: Character devices /dev/nvidia* present (the numbered ones and the control devices).
    nvidia: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SandboxPlan:
    """What one rank may see and do (the local backend fills it for each rank)."""

    workdir: Path
    #: Other read-write folders: the checkpoint folder, SUANLI_OUTPUT_DIR.
    writable: tuple[Path, ...] = ()
    #: (host path, path in the sandbox) shown read-only: datasets, at both their fetched path
    #: and their ``mount``.
    readonly: tuple[tuple[Path, str], ...] = ()
    #: Python installations the job's ``python`` needs (the venv, its base), read-only.
    python: tuple[Path, ...] = ()
    #: Folders never visible even where they sit under a system folder (agent/server homes).
    hidden: tuple[Path, ...] = ()
    network: NetworkMode = "any"
    gpu_indices: tuple[int, ...] = ()
    #: Drop to this uid/gid/groups inside (needs bwrap to run as root); None: keep the uid.
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()


def host_layout(root: str = "/") -> HostLayout:
    """Read the facts ``bwrap_argv`` needs from this host."""
    system: dict[str, str] = {}
    for d in SYSTEM_DIRS:
        p = os.path.join(root, d.lstrip("/"))
        if os.path.islink(p):
            system[d] = os.readlink(p)
        elif os.path.isdir(p):
            system[d] = ""
    secrets = {
        s: os.path.isdir(os.path.join(root, s.lstrip("/")))
        for s in ETC_SECRETS
        if os.path.lexists(os.path.join(root, s.lstrip("/")))
    }
    try:
        devs = {f"/dev/{n}" for n in os.listdir(os.path.join(root, "dev")) if n.startswith("nvidia")}
    except OSError:
        devs = set()
    return HostLayout(system=system, etc_secrets=secrets, nvidia=frozenset(devs))


def _under(path: PurePosixPath, roots: Sequence[str]) -> bool:
    return any(path == PurePosixPath(r) or PurePosixPath(r) in path.parents for r in roots)


def bwrap_argv(
    plan: SandboxPlan, host: HostLayout, *, bwrap: str = "bwrap", as_root: bool = True, bash: str = "/bin/bash"
) -> list[str]:
    """The argv prefix that runs a command in ``plan``'s sandbox (append the command itself).

    ``as_root``: bubblewrap runs as root (no user namespace; ``plan.uid`` is dropped to with
    setpriv after the mounts); otherwise it makes a user namespace and ``plan.uid`` must be
    None. The prefix ends in ``ENV_LOADER`` (run by ``bash``), which takes the job's environment
    from descriptor ``ENV_FD`` once it runs as the job's user. Raises ValueError for a plan it
    cannot honour (a dataset mounted over a system folder).
    """
    if plan.uid is not None and not as_root:
        raise ValueError("only a root agent can run a job as another uid")
    argv = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        argv.append("--unshare-user")
    if plan.network == "none":
        argv.append("--unshare-net")
    argv += ["--hostname", "suanli-job"]
    system_roots: list[str] = []
    for d, target in sorted(host.system.items()):
        if target:
            argv += ["--symlink", target, d]
        else:
            argv += ["--ro-bind", d, d]
            system_roots.append(d)
    for s, is_dir in sorted(host.etc_secrets.items()):
        argv += ["--tmpfs", s] if is_dir else ["--ro-bind", "/dev/null", s]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--tmpfs",
        "/var/tmp",
    ]
    for n in sorted({*(f"/dev/nvidia{i}" for i in plan.gpu_indices), *NVIDIA_CONTROL} & host.nvidia):
        argv += ["--dev-bind", n, n]
    for h in plan.hidden:
        if _under(PurePosixPath(h), system_roots):
            argv += ["--tmpfs", str(h)]
    made: set[PurePosixPath] = set()

    def parents(dest: str) -> list[str]:
        # bubblewrap makes missing parents of a mount point 0700 (root's): make them 0755 first.
        out: list[str] = []
        for parent in reversed(PurePosixPath(dest).parents):
            if parent in made or str(parent) in ("/", "/tmp", "/var/tmp") or _under(parent, list(host.system)):
                continue
            made.add(parent)
            out += ["--perms", "0755", "--dir", str(parent)]
        return out

    for p in plan.python:
        if not _under(PurePosixPath(p), system_roots):
            argv += [*parents(str(p)), "--ro-bind", str(p), str(p)]
    for path in (plan.workdir, *plan.writable):
        argv += [*parents(str(path)), "--bind", str(path), str(path)]
    for src, dest in plan.readonly:
        if _under(PurePosixPath(dest), [*host.system, "/proc", "/dev"]):
            raise ValueError(f"a dataset cannot be mounted at {dest}: it is a system folder; choose e.g. /data/...")
        argv += [*parents(dest), "--ro-bind", str(src), dest]
    argv += ["--chdir", str(plan.workdir), "--", ENV, f"--default-signal={WRAPPER_IGNORES}"]
    if plan.uid is not None:
        gid = plan.gid if plan.gid is not None else plan.uid
        groups = ["--groups", ",".join(str(g) for g in plan.groups)] if plan.groups else ["--clear-groups"]
        argv += [
            SETPRIV,
            f"--reuid={plan.uid}",
            f"--regid={gid}",
            *groups,
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    return [*argv, bash, "-c", ENV_LOADER, "suanli-env"]


def python_roots() -> tuple[Path, ...]:
    """The installations this agent's ``python`` lives in: its venv, the base interpreter's
    prefix and where its executable really is (all shown read-only to jobs)."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    return tuple(sorted(r for r in roots if r != Path("/")))


def find_bwrap() -> str:
    """The bubblewrap program; SuanliError, saying how to install it, when there is none."""
    found = shutil.which("bwrap")
    if found is None:
        raise SuanliError(
            f"the local backend runs every job in a sandbox and bubblewrap (bwrap) is missing: {INSTALL_HINT}"
        )
    if os.geteuid() == 0 and not os.path.exists(SETPRIV):
        raise SuanliError(f"the sandbox needs {SETPRIV} (Debian package util-linux) to drop jobs' privileges")
    return found
