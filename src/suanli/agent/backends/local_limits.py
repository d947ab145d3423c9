"""The local backend's resource limits: memory and CPUs of ``resources``, per rank.

A cgroup per rank where this machine lets the agent make one: cgroup v2 (``memory.max``,
``cpu.max``) when the memory controller is delegated to the agent's own cgroup, else the v1
``memory`` and ``cpu`` hierarchies (``memory.limit_in_bytes``, ``cpu.cfs_quota_us``), as on
hosts with hybrid cgroups. The rank's supervisor joins them before the rank starts
(``--cgroup``) and counts the OOM kills there when it ends, so a job that went past its memory
ends FAILED with "killed: exceeded N GiB memory". Without a usable memory cgroup, memory falls
back to ``RLIMIT_AS`` (``--rlimit-as``: allocations past it fail inside the job, which then
exits as it handles that); without a CPU cgroup, CPUs are not enforced (the scheduler still
never places more than a node's CPUs).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("suanli.agent.local")

GIB = 2**30
#: CFS period (µs) for CPU quotas.
PERIOD_US = 100_000


@dataclass(frozen=True)
class Cgroups:
    """Where the agent makes its ranks' cgroups (None: that limit has no cgroup here)."""

    memory: Path | None = None
    cpu: Path | None = None
    v2: bool = False

    @classmethod
    def probe(cls, name: str, proc_root: str = "/proc") -> Cgroups:
        """The usable cgroup folders for this agent (``name``: its folder under each)."""
        try:
            lines = Path(proc_root, "self", "cgroup").read_text(encoding="ascii").splitlines()
            mounts = Path(proc_root, "self", "mounts").read_text(encoding="ascii").splitlines()
        except OSError:
            return cls()
        v1: dict[str, str] = {}
        v2_path: str | None = None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                v2_path = path
            for c in controllers.split(","):
                v1[c] = path
        v2_mount = next((m.split()[1] for m in mounts if m.split()[2:3] == ["cgroup2"]), None)
        if v2_mount and v2_path is not None:
            root = Path(v2_mount + v2_path.rstrip("/")) / name
            if _usable(root, "memory.max"):
                return cls(memory=root, cpu=root if (root / "cpu.max").exists() else None, v2=True)
        found: dict[str, Path | None] = {"memory": None, "cpu": None}
        for m in mounts:
            fields = m.split()
            if len(fields) < 4 or fields[2] != "cgroup":
                continue
            options = fields[3].split(",")
            for controller, probe_file in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
                if controller in options and controller in v1 and found[controller] is None:
                    root = Path(fields[1] + v1[controller].rstrip("/")) / name
                    if _usable(root, probe_file):
                        found[controller] = root
        return cls(memory=found["memory"], cpu=found["cpu"])

    def describe(self) -> str:
        if self.memory is None:
            return "memory by RLIMIT_AS (no usable memory cgroup); CPUs not enforced"
        kind = "cgroup v2" if self.v2 else "cgroup v1"
        return f"memory by {kind}" + ("; CPUs by cgroup" if self.cpu else "; CPUs not enforced")

    def prepare(self, key: str, memory_gib: float | None, cpus: float | None) -> list[str]:
        """Make rank ``key``'s cgroups with these limits; the supervisor options that apply
        them (``--cgroup`` / ``--rlimit-as``)."""
        args: list[str] = []
        if memory_gib:
            limit = int(memory_gib * GIB)
            group = self._make(self.memory, key)
            if group is not None and self._write(group, "memory.max" if self.v2 else "memory.limit_in_bytes", limit):
                if not self.v2:
                    self._write(group, "memory.memsw.limit_in_bytes", limit, quiet=True)
                args += ["--cgroup", str(group)]
            else:
                args += ["--rlimit-as", str(limit)]
        if cpus:
            group = self._make(self.cpu, key)
            quota = max(1000, int(cpus * PERIOD_US))
            if group is not None:
                ok = (
                    self._write(group, "cpu.max", f"{quota} {PERIOD_US}")
                    if self.v2
                    else self._write(group, "cpu.cfs_period_us", PERIOD_US)
                    and self._write(group, "cpu.cfs_quota_us", quota)
                )
                if ok and str(group) not in args:
                    args += ["--cgroup", str(group)]
        return args

    def remove(self, key: str) -> None:
        """Drop rank ``key``'s cgroups (once its processes are gone; a busy one stays)."""
        for root in {self.memory, self.cpu}:
            if root is not None:
                with contextlib.suppress(OSError):
                    (root / key).rmdir()

    @staticmethod
    def _make(root: Path | None, key: str) -> Path | None:
        if root is None:
            return None
        try:
            (root / key).mkdir(exist_ok=True)
        except OSError as exc:
            log.warning("cannot make cgroup %s: %s", root / key, exc)
            return None
        return root / key

    @staticmethod
    def _write(group: Path, name: str, value: object, quiet: bool = False) -> bool:
        try:
            (group / name).write_text(str(value), encoding="ascii")
        except OSError as exc:
            if not quiet:
                log.warning("cannot set %s of cgroup %s: %s", name, group, exc)
            return False
        return True


def _usable(root: Path, probe_file: str) -> bool:
    """Whether the agent can make cgroups under ``root`` with the controller of ``probe_file``."""
    try:
        root.mkdir(exist_ok=True)
        test = root / f"probe-{os.getpid()}"
        test.mkdir(exist_ok=True)
        try:
            return (test / probe_file).exists() and os.access(test / probe_file, os.W_OK)
        finally:
            test.rmdir()
    except OSError:
        return False
