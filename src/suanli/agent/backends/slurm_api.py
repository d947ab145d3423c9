"""Talking to Slurm: its command-line tools (``--parsable``, ``--json``) or ``slurmrestd`` (JWT).

Both speak the same JSON (Slurm 22.05's ``squeue --json`` and ``sinfo --json`` are the
v0.0.38 REST documents), so one set of parsers serves both. ``SlurmApi`` is what the backend
needs; ``SlurmCli`` and ``SlurmRest`` are the two ways to get it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from suanli.core.errors import SuanliError


class SlurmUnavailable(SuanliError):
    """Slurm itself cannot be reached or used (no controller, no tools, a bad token)."""


class SlurmRejected(SuanliError):
    """Slurm refused one job (bad gres, unknown partition, …): the attempt fails, the site works."""


@dataclass(frozen=True)
class JobRequest:
    """One batch job, as suanli asks Slurm for it."""

    name: str
    script: Path
    workdir: Path
    #: ``--output``/``--error`` of the batch script itself (the ranks log elsewhere).
    output: Path
    env: Mapping[str, str]
    nodes: int = 1
    gpus_per_node: int = 0
    gpu_type: str | None = None
    cpus_per_task: float | None = None
    mem_per_node_mb: int | None = None
    time_limit_s: float | None = None
    partition: str | None = None
    account: str | None = None
    nodelist: Sequence[str] = ()
    extra_args: Sequence[str] = ()
    #: ``--comment``: the suanli site's marker (``engine.site_marker``), which the sweep of orphans reads.
    comment: str | None = None

    @property
    def gres(self) -> str | None:
        if self.gpus_per_node <= 0:
            return None
        return f"gpu:{self.gpu_type}:{self.gpus_per_node}" if self.gpu_type else f"gpu:{self.gpus_per_node}"

    @property
    def time_minutes(self) -> int | None:
        """Slurm counts time limits in minutes: round up, at least one."""
        return None if self.time_limit_s is None else max(1, math.ceil(self.time_limit_s / 60))

    def sbatch_args(self) -> list[str]:
        args = [
            "--parsable",
            f"--job-name={self.name}",
            f"--chdir={self.workdir}",
            f"--output={self.output}",
            f"--error={self.output}",
            f"--nodes={self.nodes}",
            "--ntasks-per-node=1",
            "--export=ALL",
        ]
        if self.gres:
            args.append(f"--gres={self.gres}")
        if self.cpus_per_task:
            args.append(f"--cpus-per-task={max(1, math.ceil(self.cpus_per_task))}")
        if self.mem_per_node_mb:
            args.append(f"--mem={self.mem_per_node_mb}M")
        if self.time_minutes is not None:
            args.append(f"--time={self.time_minutes}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.account:
            args.append(f"--account={self.account}")
        if self.nodelist:
            args.append(f"--nodelist={','.join(self.nodelist)}")
        if self.comment:
            args.append(f"--comment={self.comment}")
        return [*args, *self.extra_args, str(self.script)]


@dataclass(frozen=True)
class SlurmJob:
    """A job as ``squeue``/``sacct`` see it."""

    job_id: int
    name: str
    state: str
    reason: str = ""
    #: Popen convention: the exit status, or -signum when killed by a signal; None if unknown.
    exit_code: int | None = None
    nodes: str = ""
    start_time: float = 0.0
    end_time: float = 0.0
    elapsed_s: float | None = None
    allocated: dict[str, float] = field(default_factory=dict)
    #: The job's ``--comment`` (squeue only).
    comment: str = ""


@dataclass(frozen=True)
class SlurmNode:
    name: str
    cpus: int
    memory_mb: int
    gres: str
    state: str
    flags: tuple[str, ...] = ()
    reason: str = ""
    partitions: tuple[str, ...] = ()


class SlurmApi(ABC):
    """What the Slurm backend needs of Slurm."""

    @abstractmethod
    def submit(self, job: JobRequest) -> int:
        """The new job's id. Raises ``SlurmRejected`` for a job Slurm refuses, and
        ``SlurmUnavailable`` when Slurm cannot be reached."""

    @abstractmethod
    def jobs(self) -> dict[int, SlurmJob]:
        """The jobs the controller still holds (running, pending and recently ended)."""

    @abstractmethod
    def accounting(self, job_ids: Sequence[int]) -> dict[int, SlurmJob]:
        """Ended jobs from the accounting database (``sacct``); empty without slurmdbd."""

    @abstractmethod
    def cancel(self, job_id: int) -> None: ...

    @abstractmethod
    def nodes(self) -> list[SlurmNode]: ...


# -- the JSON documents ---------------------------------------------------------------------------


def wait_status_code(raw: object) -> int | None:
    """squeue's ``exit_code`` is a wait status (768 → 3, 9 → killed by signal 9 → -9)."""
    if not isinstance(raw, int):
        return None
    if raw & 0x7F:
        return -(raw & 0x7F)
    return raw >> 8


def _sacct_exit(raw: object) -> int | None:
    """sacct's ``{"status": "SIGNALED", "signal": {"signal_id": 9}}`` → -9; ``return_code`` else."""
    if not isinstance(raw, dict):
        return wait_status_code(raw)
    signal = raw.get("signal")
    if raw.get("status") == "SIGNALED" and isinstance(signal, dict) and isinstance(signal.get("signal_id"), int):
        return -int(signal["signal_id"])
    code = raw.get("return_code")
    return int(code) if isinstance(code, int) else None


def _state(raw: object) -> str:
    """``"RUNNING"`` (22.05) or ``["RUNNING", "COMPLETING"]`` (23.x) → ``"RUNNING"``."""
    if isinstance(raw, list):
        return str(raw[0]) if raw else "UNKNOWN"
    if isinstance(raw, dict):  # sacct: {"current": "COMPLETED", "reason": ...}
        return _state(raw.get("current"))
    return str(raw or "UNKNOWN")


def _number(raw: object) -> float:
    if isinstance(raw, dict):  # 23.x: {"set": true, "number": 5}
        raw = raw.get("number")
    return float(raw) if isinstance(raw, int | float) else 0.0


def _tres(text: str) -> dict[str, float]:
    """``"cpu=1,mem=1000M,node=1,gres/gpu=2"`` → {"cpu": 1, "mem": 1000, "node": 1, "gres/gpu": 2}."""
    out: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)$", value.strip())
        if key and m:
            scale = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)]
            out[key.strip()] = float(m.group(1)) * (scale if key.strip() == "mem" else 1)
    return out


def parse_squeue(doc: Mapping[str, Any]) -> dict[int, SlurmJob]:
    jobs: dict[int, SlurmJob] = {}
    for j in doc.get("jobs") or []:
        job_id = int(_number(j.get("job_id")))
        start, end = _number(j.get("start_time")), _number(j.get("end_time"))
        state = _state(j.get("job_state"))
        jobs[job_id] = SlurmJob(
            job_id=job_id,
            name=str(j.get("name") or ""),
            state=state,
            reason=str(j.get("state_reason") or ""),
            exit_code=wait_status_code(j.get("exit_code")),
            nodes=str(j.get("nodes") or ""),
            start_time=start,
            end_time=end,
            elapsed_s=max(0.0, end - start) if start and end and state not in ("RUNNING", "PENDING") else None,
            allocated=_tres(str(j.get("tres_alloc_str") or "")),
            comment=str(j.get("comment") or ""),
        )
    return jobs


def parse_sacct(doc: Mapping[str, Any]) -> dict[int, SlurmJob]:
    jobs: dict[int, SlurmJob] = {}
    for j in doc.get("jobs") or []:
        job_id = int(_number(j.get("job_id")))
        t = j.get("time") or {}
        allocated: dict[str, float] = {}
        for item in (j.get("tres") or {}).get("allocated") or []:
            key = f"{item['type']}/{item['name']}" if item.get("name") else str(item.get("type"))
            if isinstance(item.get("count"), int | float):
                allocated[key] = float(item["count"])
        jobs[job_id] = SlurmJob(
            job_id=job_id,
            name=str(j.get("name") or ""),
            state=_state(j.get("state")),
            reason=str((j.get("state") or {}).get("reason") or ""),
            exit_code=_sacct_exit(j.get("exit_code")),
            nodes=str(j.get("nodes") or ""),
            start_time=_number(t.get("start")),
            end_time=_number(t.get("end")),
            elapsed_s=_number(t.get("elapsed")),
            allocated=allocated,
        )
    return jobs


def parse_sinfo(doc: Mapping[str, Any]) -> list[SlurmNode]:
    nodes: dict[str, SlurmNode] = {}
    for n in doc.get("nodes") or []:
        state = n.get("state")
        flags = [str(f) for f in n.get("state_flags") or []]
        if isinstance(state, list):  # 23.x: ["IDLE", "DRAIN"]
            flags += [str(s) for s in state[1:]]
        nodes[str(n["name"])] = SlurmNode(
            name=str(n["name"]),
            cpus=int(_number(n.get("cpus"))),
            memory_mb=int(_number(n.get("real_memory"))),
            gres=str(n.get("gres") or ""),
            state=_state(state).lower(),
            flags=tuple(f.upper() for f in flags),
            reason=str(n.get("reason") or ""),
            partitions=tuple(str(p) for p in n.get("partitions") or []),
        )
    return list(nodes.values())


def parse_gres(text: str) -> tuple[str | None, int]:
    """``"gpu:4"`` → (None, 4); ``"gpu:H100:8(S:0-1)"`` → ("H100", 8); other gres are ignored."""
    gpu_type, count = None, 0
    for part in re.split(r",(?![^()]*\))", text):
        fields = re.sub(r"\(.*\)$", "", part.strip()).split(":")
        if not fields or fields[0] != "gpu":
            continue
        if len(fields) == 2 and fields[1].isdigit():
            count += int(fields[1])
        elif len(fields) >= 3 and fields[2].isdigit():
            gpu_type, count = fields[1], count + int(fields[2])
    return gpu_type, count


# -- the command-line tools -------------------------------------------------------------------------

_UNREACHABLE = re.compile(r"Unable to contact slurm controller|Socket timed out|Connection refused|Zero Bytes", re.I)


class SlurmCli(SlurmApi):
    """``sbatch``, ``squeue``, ``sacct``, ``scancel``, ``sinfo`` on this machine's PATH."""

    def __init__(self, *, bin_dir: Path | None = None, timeout_s: float = 30.0) -> None:
        self._bin = bin_dir
        self._timeout_s = timeout_s

    def _tool(self, name: str) -> str:
        found = str(self._bin / name) if self._bin else shutil.which(name)
        if not found or not os.access(found, os.X_OK):
            raise SlurmUnavailable(f"'{name}' is not on this machine's PATH: install Slurm's client tools here")
        return found

    def _run(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        try:
            done = subprocess.run(
                [self._tool(name), *args],
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                env=dict(env) if env is not None else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SlurmUnavailable(f"{name} did not answer within {self._timeout_s:g}s") from exc
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip() or f"{name} exited with code {done.returncode}"
            if _UNREACHABLE.search(message):
                raise SlurmUnavailable(f"{name}: {message}")
            raise SlurmRejected(f"{name}: {message}")
        return done.stdout

    def submit(self, job: JobRequest) -> int:
        out = self._run("sbatch", job.sbatch_args(), env=job.env)
        try:
            return int(out.strip().split(";")[0])
        except ValueError as exc:
            raise SlurmUnavailable(f"sbatch printed {out.strip()!r}, not a job id") from exc

    def jobs(self) -> dict[int, SlurmJob]:
        return parse_squeue(_json(self._run("squeue", ["--json"]), "squeue"))

    def accounting(self, job_ids: Sequence[int]) -> dict[int, SlurmJob]:
        if not job_ids:
            return {}
        try:
            out = self._run("sacct", ["--json", "-j", ",".join(str(i) for i in job_ids)])
        except SlurmRejected:  # no accounting storage configured
            return {}
        return parse_sacct(_json(out, "sacct"))

    def cancel(self, job_id: int) -> None:
        try:
            self._run("scancel", [str(job_id)])
        except SlurmRejected as exc:  # already gone
            if "Invalid job id" not in str(exc) and "already completing or completed" not in str(exc):
                raise

    def nodes(self) -> list[SlurmNode]:
        return parse_sinfo(_json(self._run("sinfo", ["--json"]), "sinfo"))


def _json(text: str, tool: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SlurmUnavailable(f"{tool} --json printed something that is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise SlurmUnavailable(f"{tool} --json printed {type(doc).__name__}, not an object")
    return doc


# -- slurmrestd ----------------------------------------------------------------------------------


class SlurmRest(SlurmApi):
    """slurmrestd's v0.0.38 API with a JWT (``scontrol token username=USER``)."""

    def __init__(self, url: str, user: str, token: str, *, version: str = "v0.0.38", timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": token},
            timeout=timeout_s,
        )
        self._v = version

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        try:
            r = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SlurmUnavailable(f"slurmrestd at {self._http.base_url}: {exc}") from exc
        if r.status_code in (401, 403):
            raise SlurmUnavailable(
                f"slurmrestd refused the token ({r.status_code}); make a new one with scontrol token"
            )
        try:
            doc = r.json()
        except ValueError as exc:
            raise SlurmUnavailable(f"slurmrestd answered {r.status_code} without JSON") from exc
        errors = [e for e in doc.get("errors") or [] if e.get("error_number") or e.get("error")]
        if errors or r.status_code >= 400:
            words = "; ".join(
                ": ".join(str(e[k]) for k in ("error", "description") if e.get(k)) or str(e) for e in errors
            )
            words = words or r.text[:200]
            raise SlurmRejected(f"slurmrestd {method} {path}: {words}")
        return dict(doc)

    def submit(self, job: JobRequest) -> int:
        props: dict[str, Any] = {
            "name": job.name,
            "current_working_directory": str(job.workdir),
            "standard_output": str(job.output),
            "standard_error": str(job.output),
            "nodes": job.nodes,
            "tasks_per_node": 1,
            "environment": dict(job.env),
        }
        if job.gres:
            props["gres"] = job.gres
        if job.cpus_per_task:
            props["cpus_per_task"] = max(1, math.ceil(job.cpus_per_task))
        if job.mem_per_node_mb:
            props["memory_per_node"] = job.mem_per_node_mb
        if job.time_minutes is not None:
            props["time_limit"] = job.time_minutes
        if job.partition:
            props["partition"] = job.partition
        if job.account:
            props["account"] = job.account
        if job.comment:
            props["comment"] = job.comment
        # v0.0.38 refuses "required_nodes" ("Disabled key"): through slurmrestd, Slurm picks the nodes.
        doc = self._call("POST", f"/slurm/{self._v}/job/submit", {"job": props, "script": job.script.read_text()})
        return int(doc["job_id"])

    def jobs(self) -> dict[int, SlurmJob]:
        return parse_squeue(self._call("GET", f"/slurm/{self._v}/jobs"))

    def accounting(self, job_ids: Sequence[int]) -> dict[int, SlurmJob]:
        out: dict[int, SlurmJob] = {}
        for job_id in job_ids:
            try:
                out.update(parse_sacct(self._call("GET", f"/slurmdb/{self._v}/job/{job_id}")))
            except SlurmRejected:
                continue
        return out

    def cancel(self, job_id: int) -> None:
        try:
            self._call("DELETE", f"/slurm/{self._v}/job/{job_id}")
        except SlurmRejected as exc:
            if "Invalid job id" not in str(exc) and "completed" not in str(exc).lower():
                raise

    def nodes(self) -> list[SlurmNode]:
        return parse_sinfo(self._call("GET", f"/slurm/{self._v}/nodes"))
