"""Trace loaders: public GPU-cluster job traces → :class:`TraceJob` lists.

``KIND:PATH`` names a trace, e.g. ``philly:../shared/traces/philly-82k/philly.csv``. Every
loader reports a malformed row as ``file:line: what is wrong``; with ``skip_bad`` it skips the
row and counts it instead. Times are seconds from the first submission of the trace.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from suanli.core.errors import SuanliError
from suanli.sim import gavel


class TraceError(SuanliError):
    """A trace file or row that cannot be read; the message names the file and line."""


@dataclass
class TraceJob:
    id: str
    #: Submit time, seconds from the start of the trace.
    submit_s: float
    #: GPUs the job asks for (0: CPU only).
    gpus: int
    #: Measured run time at ``gpus`` GPUs, seconds; None when a speed model decides (pollux).
    duration_s: float | None = None
    tenant: str = "default"
    #: Pollux application name (cifar10, bert, ...) and global batch size.
    application: str | None = None
    batch_size: int | None = None
    cpus: float = 1.0
    memory_gib: float = 1.0
    #: ``low`` | ``normal`` | ``high``, as a job spec's ``priority``.
    priority: str = "normal"
    #: Platform faults the job meets: attempt after attempt, the next one ends this many
    #: seconds into the attempt (if it runs that long), and the job is retried as the server
    #: retries it (``max_retries``, back-off). Traces carry none; benchmarks add them.
    faults: tuple[float, ...] = ()
    #: Retries after platform faults and preemptions (a job spec's ``max_retries``).
    max_retries: int = 3
    #: The job checkpoints (keeps its progress when stopped) and may be preempted for shorter
    #: work; False is a spec's ``preemptible: false``.
    preemptible: bool = True


@dataclass
class Trace:
    kind: str
    path: Path
    jobs: list[TraceJob]
    #: Rows skipped under ``--skip-bad``.
    skipped: int = 0
    #: The absolute time of ``submit_s == 0`` when the trace has real timestamps.
    epoch: datetime | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Reader:
    path: Path
    skip_bad: bool
    skipped: int = 0

    def rows(self, delimiter: str = ",", header: bool = True) -> Iterator[tuple[int, dict[str, str] | list[str]]]:
        try:
            handle = self.path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read the trace ({exc.strerror or exc})") from None
        with handle:
            if header:
                reader = csv.DictReader(handle, delimiter=delimiter)
                for row in reader:
                    yield reader.line_num, row
            else:
                for line_no, row_list in enumerate(csv.reader(handle, delimiter=delimiter), start=1):
                    if row_list:
                        yield line_no, row_list

    def bad(self, line: int, message: str) -> None:
        if not self.skip_bad:
            raise TraceError(f"{self.path}:{line}: {message} (or pass --skip-bad to skip such rows)")
        self.skipped += 1


def _num(row: dict[str, str], column: str) -> float:
    value = row.get(column)
    if value is None:
        raise ValueError(f"column '{column}' is missing")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"'{column}' is '{value}', not a number") from None


def rebase(jobs: list[TraceJob]) -> float:
    start = min((j.submit_s for j in jobs), default=0.0)
    for j in jobs:
        j.submit_s -= start
    jobs.sort(key=lambda j: (j.submit_s, j.id))
    return start


def load_philly(path: Path, skip_bad: bool = False) -> Trace:
    """philly-82k CSV: ``timestamp,duration,num_gpus,gpu_time,cluster``; tenant = virtual cluster."""
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        assert isinstance(row, dict)
        try:
            when = datetime.strptime(row.get("timestamp") or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            duration, gpus = _num(row, "duration"), int(_num(row, "num_gpus"))
            if duration <= 0 or gpus < 1:
                raise ValueError(f"duration {duration:g} s and num_gpus {gpus} must be positive")
        except ValueError as exc:
            r.bad(line, str(exc) if "timestamp" not in str(exc) else f"timestamp is not YYYY-MM-DD HH:MM:SS: {exc}")
            continue
        tenant = (row.get("cluster") or "").strip() or "unknown"
        jobs.append(TraceJob(f"philly-{line - 1}", when.timestamp(), gpus, duration, tenant))
    start = rebase(jobs)
    return Trace("philly", path, jobs, r.skipped, datetime.fromtimestamp(start, UTC) if jobs else None)


def load_gavel(
    path: Path, skip_bad: bool = False, throughputs: Path | None = None, worker: str = gavel.DEFAULT_WORKER
) -> Trace:
    """A Gavel .trace (:mod:`suanli.sim.gavel` reads both formats); tenant = the file's name (the
    VC); run time = total_steps / throughput of the job type on ``worker`` GPUs. ``throughputs``
    defaults to Gavel's layout (``seed=N/../simulation_throughputs.json``)."""
    table = gavel.Throughputs(throughputs or gavel.default_throughputs(path))
    table.check_worker(worker)
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    for line_no, cols in r.rows(delimiter="\t", header=False):
        assert isinstance(cols, list)
        try:
            line = gavel.parse_line(cols)
            duration = table.run_time(worker, line.job_type, line.scale_factor, line.total_steps)
        except ValueError as exc:
            r.bad(line_no, str(exc))
            continue
        tj = TraceJob(f"{path.stem}-{line_no}", line.arrival_s, line.scale_factor, duration, path.stem)
        tj.application = line.job_type
        jobs.append(tj)
    rebase(jobs)
    trace = Trace("gavel", path, jobs, r.skipped)
    trace.notes.append(f"gavel: run time = total_steps / the job type's {worker} throughput in {table.path.name}")
    return trace


def load_pollux(path: Path, skip_bad: bool = False) -> Trace:
    """Pollux workload CSV: ``name,time,application,num_replicas,batch_size``; run time comes
    from the per-application profiles (the pollux speed model)."""
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        assert isinstance(row, dict)
        try:
            submit, gpus, bsz = _num(row, "time"), int(_num(row, "num_replicas")), int(_num(row, "batch_size"))
            app = (row.get("application") or "").strip()
            if not app:
                raise ValueError("application is empty")
            if gpus < 1 or bsz < 1:
                raise ValueError("num_replicas and batch_size must be at least 1")
        except ValueError as exc:
            r.bad(line, str(exc))
            continue
        jobs.append(TraceJob(row.get("name") or f"job-{line}", submit, gpus, None, application=app, batch_size=bsz))
    jobs.sort(key=lambda j: (j.submit_s, j.id))  # times are kept as given (the artifact's clock)
    return Trace("pollux", path, jobs, r.skipped)


def load_tiresias(path: Path, skip_bad: bool = False) -> Trace:
    """Tiresias CSV: ``job_id,num_gpu,submit_time,iterations,model_name,duration,interval``."""
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        assert isinstance(row, dict)
        try:
            gpus, submit, duration = int(_num(row, "num_gpu")), _num(row, "submit_time"), _num(row, "duration")
            if gpus < 1 or duration <= 0:
                raise ValueError("num_gpu and duration must be positive")
        except ValueError as exc:
            r.bad(line, str(exc))
            continue
        name = f"tiresias-{row.get('job_id') or line}"
        jobs.append(TraceJob(name, submit, gpus, duration, application=row.get("model_name")))
    rebase(jobs)
    return Trace("tiresias", path, jobs, r.skipped)


def load_openb(path: Path, skip_bad: bool = False) -> Trace:
    """Alibaba openb pod list: one pod per row; run time = deletion − creation (a snapshot, so
    good for packing studies, not JCT). A fractional GPU (``gpu_milli`` < 1000) holds a whole GPU."""
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    for line, row in r.rows():
        assert isinstance(row, dict)
        try:
            created, deleted = _num(row, "creation_time"), _num(row, "deletion_time")
            gpus, cpu_milli, mem_mib = int(_num(row, "num_gpu")), _num(row, "cpu_milli"), _num(row, "memory_mib")
            if deleted < created or gpus < 0:
                raise ValueError(f"deletion_time {deleted:g} is before creation_time {created:g}")
        except ValueError as exc:
            r.bad(line, str(exc))
            continue
        job = TraceJob(row.get("name") or f"pod-{line}", created, gpus, deleted - created, row.get("qos") or "default")
        job.cpus, job.memory_gib = max(cpu_milli / 1000, 0.001), max(mem_mib / 1024, 0.001)
        jobs.append(job)
    rebase(jobs)
    return Trace("alibaba-openb", path, jobs, r.skipped)


#: Generic CSV columns and the names they may have; ``--column submit=start_time`` maps others.
GENERIC_COLUMNS = {
    "id": ("id", "job_id", "name"),
    "submit": ("submit", "submit_time", "time", "arrival"),
    "gpus": ("gpus", "num_gpus", "num_gpu"),
    "duration": ("duration", "runtime", "duration_s"),
    "tenant": ("tenant", "user", "vc", "cluster"),
}


def load_csv(path: Path, skip_bad: bool = False, mapping: dict[str, str] | None = None) -> Trace:
    """A CSV with a header: submit time (s), GPUs, duration (s); optional id and tenant."""
    r = Reader(path, skip_bad)
    jobs: list[TraceJob] = []
    chosen: dict[str, str] | None = None
    for line, row in r.rows():
        assert isinstance(row, dict)
        if chosen is None:
            chosen = _map_columns(path, list(row), mapping or {})
        try:
            submit, gpus, duration = (
                _num(row, chosen["submit"]),
                int(_num(row, chosen["gpus"])),
                _num(row, chosen["duration"]),
            )
            if gpus < 0 or duration <= 0:
                raise ValueError("gpus must be 0 or more and duration more than 0")
        except ValueError as exc:
            r.bad(line, str(exc))
            continue
        name = row.get(chosen.get("id", ""), "") or f"job-{line}"
        tenant = row.get(chosen.get("tenant", ""), "") or "default"
        jobs.append(TraceJob(name, submit, gpus, duration, tenant))
    rebase(jobs)
    return Trace("csv", path, jobs, r.skipped)


def _map_columns(path: Path, header: list[str], mapping: dict[str, str]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for key, names in GENERIC_COLUMNS.items():
        if key in mapping:
            if mapping[key] not in header:
                raise TraceError(f"{path}:1: column '{mapping[key]}' (for {key}) is not in the header")
            chosen[key] = mapping[key]
            continue
        found = next((h for h in header if h.strip().lower() in names), None)
        if found is not None:
            chosen[key] = found
        elif key in ("submit", "gpus", "duration"):
            raise TraceError(
                f"{path}:1: no column for '{key}' (tried {', '.join(names)}); map one with --column {key}=NAME"
            )
    return chosen


LOADERS: dict[str, Callable[[Path, bool], Trace]] = {
    "philly": load_philly,
    "gavel": load_gavel,
    "pollux": load_pollux,
    "tiresias": load_tiresias,
    "alibaba-openb": load_openb,
    "csv": load_csv,
}


def load_trace(
    spec: str,
    skip_bad: bool = False,
    mapping: dict[str, str] | None = None,
    gavel_worker: str | None = None,
    throughputs: Path | None = None,
) -> Trace:
    """``KIND:PATH`` → a Trace. For pollux, PATH may be one workload CSV. For gavel, run times
    come from ``throughputs`` (default: Gavel's ``simulation_throughputs.json`` beside the
    ``seed=N`` folder) on ``gavel_worker`` GPUs (default v100, Gavel's own cluster)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in LOADERS:
        raise TraceError(f"'{spec}' is not KIND:PATH; KIND is one of {', '.join(LOADERS)}")
    path = Path(rest)
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    if kind == "csv":
        trace = load_csv(path, skip_bad, mapping)
    elif kind == "gavel":
        trace = load_gavel(path, skip_bad, throughputs, gavel_worker or gavel.DEFAULT_WORKER)
    else:
        trace = LOADERS[kind](path, skip_bad)
    if not trace.jobs:
        skipped = f" ({trace.skipped} malformed row(s) skipped)" if trace.skipped else ""
        raise TraceError(f"{path}: no jobs in this {kind} trace{skipped}")
    return trace
