"""What the engine backends (Slurm, Ray) share: an attempt's folder, its environment, its logs.

An engine backend keeps each attempt in ``<work_dir>/attempts/<attempt_id>/`` (the workdir
unpacked from its archive, the scripts it submits, the rank logs) and the job's checkpoints in
``<work_dir>/checkpoints/<job_id>/``, as the local backend does. For a multi-node engine,
``work_dir`` must be on a file system every compute node mounts at the same path.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from suanli.agent.backends.logstream import Utf8Stream
from suanli.core.protocol import AttemptAssignment, LogChunk

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Staged:
    """An attempt's folder, ready to submit: ``problem`` says in words why it cannot run."""

    dir: Path
    workdir: Path
    checkpoint_dir: Path
    problem: str | None = None


def stage_attempt(work_dir: Path, spec: AttemptAssignment, archive: Path | None) -> Staged:
    """A fresh folder for the attempt (a leftover one with the same id goes), its workdir
    unpacked from ``archive`` and its checkpoint folder made."""
    adir = work_dir / "attempts" / str(spec.attempt_id)
    if adir.exists():
        shutil.rmtree(adir)
    workdir = adir / "workdir"
    workdir.mkdir(parents=True)
    keep = spec.keep_checkpoint and _SAFE_NAME.match(spec.job_id)
    ckpt = work_dir / "checkpoints" / spec.job_id if keep else adir / "checkpoint"
    staged = Staged(dir=adir, workdir=workdir, checkpoint_dir=ckpt)
    if not _SAFE_NAME.match(spec.job_id):
        staged.problem = f"job id {spec.job_id!r} cannot name a checkpoint folder"
        return staged
    if not spec.nodes:
        staged.problem = "the assignment names no nodes to run on"
        return staged
    ckpt.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                # "data" refuses absolute paths, '..', links leaving the folder and devices.
                tar.extractall(workdir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            staged.problem = f"cannot unpack the workdir archive: {exc}"
    return staged


def kept_checkpoint_dir(work_dir: Path, spec: AttemptAssignment) -> Path | None:
    """``<work_dir>/checkpoints/<job id>``: the one folder every attempt of a job with
    ``keep_checkpoint`` gets as SUANLI_CHECKPOINT_DIR at this site (None: it keeps none here)."""
    if not spec.keep_checkpoint or not _SAFE_NAME.match(spec.job_id):
        return None
    return work_dir / "checkpoints" / spec.job_id


def restore_checkpoint(archive: Path, folder: Path) -> None:
    """Replace what ``folder`` holds with the checkpoint ``archive`` (a ``.tar.gz``): a job's
    checkpoint made at another site, so its next attempt here resumes from it. Unpacked beside
    the folder first and swapped in whole, so a failure leaves the folder as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = folder.with_name(f".{folder.name}.restoring-{os.getpid()}")
    if fresh.exists():
        shutil.rmtree(fresh)
    fresh.mkdir(mode=0o700)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # "data" refuses absolute paths, '..', links leaving the folder and devices.
            tar.extractall(fresh, filter="data")
        old = folder.with_name(f".{folder.name}.replaced-{os.getpid()}")
        if folder.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(folder, old)
        os.replace(fresh, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise


def job_environment(
    spec: AttemptAssignment, checkpoint_dir: Path, *, inherit: bool = True, secrets: bool = True
) -> dict[str, str]:
    """What every rank sees, before the engine adds the rank's own variables. With ``inherit``
    the agent's environment is passed on (as Slurm's ``--export=ALL`` does), without its own
    SUANLI_* variables: they may hold the site's token. ``secrets``: with the job's secrets (an
    engine that shows environments to its users gets them another way: ``secrets_script``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")} if inherit else {}
    env.update(spec.envs)
    if secrets:
        env.update(spec.secrets)
    env.update(
        SUANLI_JOB_ID=spec.job_id,
        SUANLI_JOB_NAME=spec.job_name,
        SUANLI_ATTEMPT=str(spec.attempt_number),
        SUANLI_NUM_NODES=str(max(1, len(spec.nodes))),
        SUANLI_CHECKPOINT_DIR=str(checkpoint_dir),
        PYTHONUNBUFFERED="1",
    )
    if inherit:  # `python` in a job is the agent's interpreter where the nodes share its install
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH") or os.defpath])
    return env


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the agent's user only (0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def secrets_script(secrets: dict[str, str]) -> str:
    """Shell lines exporting ``secrets``, for a file the job's entry script sources."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in secrets.items())


@dataclass
class RankLog:
    """One rank's log file, read incrementally (the same offsets contract as the local backend);
    make its ``stream`` with the job's secrets (``Utf8Stream(spec.secrets.values())``) to mask them."""

    rank: int
    path: Path
    stream: Utf8Stream = field(default_factory=Utf8Stream)
    #: All output returned and the attempt has ended: nothing more will come.
    drained: bool = False

    def read(self, attempt_id: int, fencing_token: int, limit: int, ended: bool) -> tuple[LogChunk | None, int]:
        """New output (at most about ``limit`` bytes) and the bytes it cost. ``ended``: the
        attempt has ended (checked before the file's size, so no write is missed)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        data = b""
        take = min(self.stream.room(limit), size - self.stream.consumed)
        if take > 0:
            with self.path.open("rb") as fh:
                fh.seek(self.stream.consumed)
                data = fh.read(take)
        final = ended and self.stream.consumed + len(data) >= size
        cost = len(data) + self.stream.held
        offset, text = self.stream.feed(data, final)
        self.drained = final
        if not text:
            return None, cost
        return LogChunk(
            attempt_id=attempt_id, fencing_token=fencing_token, rank=self.rank, offset=offset, data=text
        ), cost


def note(path: Path, message: str) -> None:
    """Append a line from suanli to a rank's log: the user cannot otherwise see why it stopped."""
    try:
        with path.open("ab") as out:
            out.write(f"[suanli] {message}\n".encode())
    except OSError:
        pass


def exit_words(code: int) -> str:
    """``3`` → "exited with code 3"; ``-9`` → "was killed by SIGKILL"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
