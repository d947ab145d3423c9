"""Ranks in a container: the local backend runs a job that names an ``image:`` with podman.

``podman_argv`` is pure, like ``sandbox.bwrap_argv`` beside it: it turns what a rank needs (its
image, folders, environment names, network policy, memory, CPUs and GPUs) into the ``podman run``
argv prefix that the rank's supervisor runs ``bash -c``-like commands under (``sh -c`` of the
image). The supervisor stays the container's parent's
parent: the rank's exit status is podman's (the command's, or 125-127 for podman's own errors),
its output goes to the rank's log, and a cancel's SIGTERM reaches the command (podman forwards
it to ``--init``, which forwards it to the command; SIGKILL of podman leaves the container,
so whoever stops a rank removes it by name: ``remove_command``).

What a rank sees inside (fixed paths, whatever the site's layout):

- ``/workdir`` (read-write): the attempt's workdir, and the working directory;
- ``/suanli/checkpoint`` (read-write): ``SUANLI_CHECKPOINT_DIR``;
- ``/suanli/output`` (read-write): ``SUANLI_OUTPUT_DIR``, when the job registers an output;
- ``/suanli/datasets`` (read-only): ``SUANLI_DATASETS_DIR``, and each dataset also at its ``mount``.

Environment variables whose value is one of those folders on the host (or a path below one)
are rewritten to the path inside. Only the job's variables go in (``envs``, ``secrets``,
``SUANLI_*``, ``CUDA_VISIBLE_DEVICES``), never the host's. Values never appear on the command
line (``/proc/*/cmdline`` is readable by every user), and no name the job chose is ever in the
environment of podman itself, which runs as root and would obey ``LD_PRELOAD``,
``CONTAINERS_CONF``, ``TMPDIR`` and the like: each variable NAME travels as
``SUANLI_ENV__NAME`` (``--env SUANLI_ENV__NAME`` takes the value from podman's environment), and
a two-line ``sh`` prelude inside the container (``PRELUDE``) exports it under its own name
before it runs the command. The image must therefore have ``/bin/sh`` (``run:`` is a shell
command anyway).

Why these flags (podman 4.3, seen on Debian 12; see ENGINES.md): ``--runtime runc`` because crun
fails on hybrid cgroups; explicit ``--ulimit nofile``/``nproc`` because podman's defaults ask for
more than a machine's hard limits; ``--pull never`` because sites never pull; ``--init`` so
that SIGTERM reaches the command (a shell as PID 1 ignores it); ``--cap-drop all`` and
``no-new-privileges``: the command runs with no capabilities, as the image's user, or as the
tenant's ``run_as`` user (``--user``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.local_runas import RunAs
from suanli.agent.backends.local_state import _Attempt, _Rank
from suanli.core.images import parse_image
from suanli.core.protocol import AttemptAssignment

log = logging.getLogger("suanli.agent.container")

WORKDIR = "/workdir"
CHECKPOINT = "/suanli/checkpoint"
OUTPUT = "/suanli/output"
DATASETS = "/suanli/datasets"
#: Podman's exit status when it could not run the container at all (no such image, bad flag).
PODMAN_ERROR = 125
#: Open files and processes a container may have (podman's own defaults exceed common hard limits).
NOFILE = 1024
NPROC = 4096
#: The NVIDIA control devices a GPU job needs beside its own ``/dev/nvidia<N>``.
NVIDIA_CONTROL = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")
#: Where the NVIDIA Container Toolkit writes its CDI spec; when present, GPUs go in through it
#: (``--device nvidia.com/gpu=N``), which also brings the driver's libraries into the container.
CDI_SPECS = ("/etc/cdi/nvidia.yaml", "/var/run/cdi/nvidia.yaml")
#: Container names: what podman accepts (and nothing a shell or a flag could misread).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
#: Paths given to ``--mount`` (comma- and equals-separated options): nothing that could split one.
_MOUNT_PATH_RE = re.compile(r"^/[^,=:\x00-\x1f\x7f]*$")
#: Variables of the job that go into the container (by name) besides ``envs`` and ``secrets``.
_PASSED = ("CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: How a job's variable NAME is carried through podman's environment, and the list of them.
CARRIED = "SUANLI_ENV__"
CARRIED_NAMES = "SUANLI_ENV_NAMES"
#: Inside the container, before the command (``"$@"``): each carried variable under its own
#: name. Names match ``_ENV_NAME_RE``, so ``eval`` sees only ``export NAME="${SUANLI_ENV__NAME}"``
#: and the value itself is never parsed by the shell.
PRELUDE = (
    r'for n in $SUANLI_ENV_NAMES; do eval "export $n=\"\${SUANLI_ENV__$n}\""; unset "SUANLI_ENV__$n"; done; '
    'unset SUANLI_ENV_NAMES; exec "$@"'
)
#: podman's own environment (it runs as root): nothing of the job's.
PODMAN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class Bind:
    """A host path visible in the container at ``target``."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerRank:
    """Everything ``podman_argv`` needs to run one rank of an attempt in a container."""

    image: str
    #: The container's name (``container_name``): how it is found again to be removed.
    name: str
    workdir: Path
    checkpoint_dir: Path
    #: The rank's full environment (the attempt's and its own), values included.
    env: Mapping[str, str]
    #: The names in ``env`` that the job itself set (``envs`` and ``secrets``).
    job_env_names: Sequence[str] = ()
    #: Dataset name → its ``mount`` in the spec; the file is ``SUANLI_DATASET_<NAME>`` in ``env``.
    dataset_mounts: Mapping[str, str] = field(default_factory=dict)
    #: ``none``: no network at all; anything else shares the host's (ranks of a gang meet on
    #: 127.0.0.1, as without a container).
    network: str = "any"
    memory_gib: float | None = None
    cpus: float | None = None
    gpu_indices: Sequence[int] = ()
    #: ``uid:gid`` the command runs as (the tenant's ``run_as``); None: the image's user.
    user: str | None = None


def container_name(attempt_id: int, rank: int) -> str:
    """One name per rank of an attempt, the same after an agent restart."""
    return f"suanli-a{attempt_id}-r{rank}"


def podman_argv(
    rank: ContainerRank, *, podman: str = "podman", exists: Callable[[str], bool] = os.path.exists
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)``: the ``podman run`` argv prefix for ``rank`` (append the command to run in
    the container, e.g. ``/bin/sh -c SCRIPT``), and the whole environment podman must be started
    with: ``PODMAN_ENV`` and the job's variables carried as ``SUANLI_ENV__NAME``. ``exists``:
    whether a device or file is on this machine (injectable for tests). ValueError when a path
    or name cannot be given to podman safely."""
    if not _NAME_RE.match(rank.name):
        raise ValueError(f"{rank.name!r} cannot name a container")
    image = parse_image(rank.image)
    binds = _binds(rank)
    env = _container_env(rank, binds)
    argv = [
        podman,
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--init",
        "--name",
        rank.name,
        "--pull",
        "never",
        "--log-driver",
        "none",  # output goes to the supervisor's pipe, not to podman's own store as well
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        f"nofile={NOFILE}:{NOFILE}",
        "--ulimit",
        f"nproc={NPROC}:{NPROC}",
        "--network",
        "none" if rank.network == "none" else "host",
        "--workdir",
        WORKDIR,
    ]
    if rank.user is not None:
        argv += ["--user", rank.user]
    if rank.memory_gib is not None and rank.memory_gib > 0:
        argv += ["--memory", f"{max(6, round(rank.memory_gib * 1024))}m"]  # podman's floor is 6 MiB
    if rank.cpus is not None and rank.cpus > 0:
        argv += ["--cpus", f"{rank.cpus:g}"]
    argv += _gpu_devices(rank.gpu_indices, exists)
    for b in binds:
        argv += ["--mount", f"type=bind,source={b.source},target={b.target}" + (",ro" if b.read_only else "")]
    names = sorted(env)
    carried = {CARRIED + name: env[name] for name in names}
    carried[CARRIED_NAMES] = " ".join(names)
    for name in sorted(carried):
        argv += ["--env", name]
    argv += [image.text, "/bin/sh", "-c", PRELUDE, "suanli-env"]
    return argv, {**PODMAN_ENV, **carried}


def _mount_path(path: str, what: str) -> str:
    if not _MOUNT_PATH_RE.match(path) or "/../" in f"{path}/":
        raise ValueError(f"{what} {path!r} cannot be mounted into a container (no ',', '=', ':' or '..' in it)")
    return path


def _binds(rank: ContainerRank) -> list[Bind]:
    binds = [
        Bind(rank.workdir, WORKDIR),
        Bind(rank.checkpoint_dir, CHECKPOINT),
    ]
    output = rank.env.get("SUANLI_OUTPUT_DIR")
    if output:
        binds.append(Bind(Path(output), OUTPUT))
    datasets = rank.env.get("SUANLI_DATASETS_DIR")
    if datasets:
        binds.append(Bind(Path(datasets), DATASETS, read_only=True))
    for name, mount in sorted(rank.dataset_mounts.items()):
        source = rank.env.get("SUANLI_DATASET_" + re.sub(r"[^A-Z0-9]", "_", name.upper()))
        if source:
            binds.append(Bind(Path(source), _mount_path(mount, f"dataset {name}'s mount"), read_only=True))
    for b in binds:
        _mount_path(str(b.source), "the folder")
    return binds


def _container_env(rank: ContainerRank, binds: Sequence[Bind]) -> dict[str, str]:
    """The variables that go in, host paths rewritten to the paths inside."""
    names = set(rank.job_env_names) | {k for k in rank.env if k.startswith("SUANLI_")} | set(_PASSED)
    out: dict[str, str] = {}
    for name in names:
        value = rank.env.get(name)
        if value is None or not _ENV_NAME_RE.match(name):
            continue
        out[name] = _inside(value, binds)
    return out


def _inside(value: str, binds: Sequence[Bind]) -> str:
    """A host path under one of ``binds`` → the same path inside the container; else as is."""
    for b in sorted(binds, key=lambda b: len(str(b.source)), reverse=True):
        src = str(b.source)
        if value == src:
            return b.target
        if value.startswith(src.rstrip("/") + "/"):
            return b.target + value[len(src.rstrip("/")) :]
    return value


def _gpu_devices(indices: Sequence[int], exists: Callable[[str], bool]) -> list[str]:
    if not indices:
        return []
    if any(exists(spec) for spec in CDI_SPECS):
        return [arg for i in indices for arg in ("--device", f"nvidia.com/gpu={i}")]
    devices = [f"/dev/nvidia{i}" for i in indices] + list(NVIDIA_CONTROL)
    return [arg for d in devices if exists(d) for arg in ("--device", d)]


# -- podman on this machine ---------------------------------------------------------------


def find_podman() -> str | None:
    """podman's path when podman and runc are both installed here, else None."""
    podman = shutil.which("podman")
    runc = shutil.which("runc") or next((p for p in ("/usr/sbin/runc", "/usr/bin/runc") if os.path.exists(p)), None)
    return podman if podman and runc else None


def image_problem(podman: str, image: str, site: str, timeout_s: float = 60.0) -> str | None:
    """Why ``image`` cannot run at this site, in words (None: it can). A reference must be in the
    local store (sites never pull); an archive must be a readable file."""
    ref = parse_image(image)
    where = f"site {site}" if site else "this site"
    if ref.is_archive:
        if ref.path is None or not os.path.isfile(ref.path):
            return f"image {image} not found at {where}: there is no archive file {ref.path} there"
        return None
    try:
        found = subprocess.run(
            [podman, "image", "exists", image],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot ask podman at {where} for image {image}: {exc}"
    if found.returncode == 0:
        return None
    if found.returncode == 1:
        return (
            f"image {image} not found at {where}: sites never pull images; ask its operator to "
            "`podman load` or `podman import` it there, or name an image the site has"
        )
    detail = found.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"podman at {where} cannot look up image {image}: {detail[-1] if detail else f'exit {found.returncode}'}"


def remove_command(podman: str, names: Sequence[str]) -> list[str]:
    """The command that removes these containers, running or not, and ignores missing ones."""
    return [podman, "rm", "--force", "--ignore", "--time", "0", *names]


class LocalContainers:
    """The local backend's podman: whether it is here, whether an attempt's image is, the
    command a rank runs under, and removing an attempt's containers once it has ended."""

    def __init__(self, podman: str | None = None, *, exists: Callable[[str], bool] = os.path.exists) -> None:
        self.podman = podman if podman is not None else find_podman()
        self._exists = exists
        self._removals: list[threading.Thread] = []

    def available(self) -> bool:
        return self.podman is not None

    def problem(self, spec: AttemptAssignment, site: str) -> str | None:
        """Why the attempt cannot run in its image here (None: it can, or it names none)."""
        if not spec.image:
            return None
        if self.podman is None:
            where = f"site {site}" if site else "this site"
            return f"image {spec.image}: {where} runs no containers (podman and runc are not installed there)"
        return image_problem(self.podman, spec.image, site)

    def rank(self, a: _Attempt, r: _Rank, user: RunAs | None) -> tuple[dict[str, str], str, list[str], list[str]]:
        """``(env, shell, wrap, supervisor options)`` that run rank ``r`` of ``a`` in its image."""
        spec, image = a.spec, a.spec.image
        if self.podman is None or image is None or a.checkpoint_dir is None:
            raise ValueError("the attempt cannot run in a container here")
        node = next((n for n in spec.nodes if n.rank == r.rank), None)
        env = dict(a.env)
        env.update(
            SUANLI_NODE_RANK=str(r.rank),
            SUANLI_NODE_NAME=r.node,
            SUANLI_NUM_GPUS_PER_NODE=str(len(r.gpu_indices)),
            CUDA_VISIBLE_DEVICES=",".join(str(i) for i in r.gpu_indices),
        )
        name = container_name(spec.attempt_id, r.rank)
        wrap, podman_env = podman_argv(
            ContainerRank(
                image=image,
                name=name,
                workdir=a.workdir,
                checkpoint_dir=a.checkpoint_dir,
                env=env,
                job_env_names=(*spec.envs, *spec.secrets),
                dataset_mounts={d.name: d.mount for d in spec.datasets},
                network=spec.network,
                memory_gib=node.memory_gib if node is not None else None,
                cpus=node.cpus if node is not None else None,
                gpu_indices=tuple(r.gpu_indices),
                user=f"{user.uid}:{user.gid}" if user is not None else None,
            ),
            podman=self.podman,
            exists=self._exists,
        )
        return podman_env, "/bin/sh", wrap, ["--container", name, "--podman", self.podman]

    def remove(self, a: _Attempt) -> None:
        """Remove the containers of ``a``'s ranks (whatever is left of them), in the background:
        a thread runs ``podman rm`` and waits for it (a cancel never waits for podman)."""
        self.reap()
        if self.podman is None or not a.spec.image or not any(r.pid is not None for r in a.ranks):
            return
        names = [container_name(a.spec.attempt_id, r.rank) for r in a.ranks]
        thread = threading.Thread(
            target=_run_quietly, args=(remove_command(self.podman, names),), name="podman-rm", daemon=True
        )
        thread.start()
        self._removals.append(thread)

    def reap(self, wait_s: float | None = None) -> None:
        """Forget finished removals (``wait_s``: first wait up to that long for each, e.g. at exit)."""
        if wait_s is not None:
            for t in self._removals:
                t.join(wait_s)
        self._removals = [t for t in self._removals if t.is_alive()]


def _run_quietly(argv: list[str]) -> None:
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=PODMAN_ENV, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("cannot remove the containers %s: %s", " ".join(argv[6:]), exc)
