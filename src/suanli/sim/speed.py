"""Speed models: how fast a job progresses on the GPUs it holds.

A job has ``total`` units of work and makes progress at a rate that depends on its placement
(GPUs per node). :class:`MeasuredDuration` is for fixed-size traces: the work is the measured
run time and the rate is 1 at the requested GPUs. :class:`PolluxProfiles` follows the model of
the Pollux OSDI'21 artifact, rebuilt from the published profiles: a job runs at a fixed global
batch size; each step takes the measured ``step_time`` for its placement (``placements.csv``,
else ``scalability.csv``), and each epoch advances "progress" by the statistical efficiency of
that batch size measured in ``validation-<bsz>.csv`` (the gradient noise scale:
``gain = (var + sqr) / (var / scale + sqr)``). The job ends when it has done the progress the
profiles record for the application's last validated epoch, so a job spread over more nodes
is slower exactly as much as the measurements say.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from suanli.sim.trace import TraceError, TraceJob

Placement = tuple[int, ...]


class SpeedModel(Protocol):
    #: Seconds a job spends restarting after each (re)allocation, making no progress.
    restart_s: float

    def total(self, job: TraceJob) -> float: ...

    def time_to_finish(self, job: TraceJob, progress: float, placement: Placement) -> float: ...

    def advance(self, job: TraceJob, progress: float, placement: Placement, seconds: float) -> float: ...


@dataclass
class MeasuredDuration:
    """Work = the measured run time; rate 1 at the requested GPUs (the trace measured it so)."""

    restart_s: float = 0.0

    def total(self, job: TraceJob) -> float:
        return job.duration_s or 0.0

    def time_to_finish(self, job: TraceJob, progress: float, placement: Placement) -> float:
        return max(self.total(job) - progress, 0.0)

    def advance(self, job: TraceJob, progress: float, placement: Placement, seconds: float) -> float:
        return min(progress + seconds, self.total(job))


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Linear interpolation, clamped at the ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y0


@dataclass
class _Validation:
    progress: list[float]
    grad_sqr: list[float]
    grad_var: list[float]


@dataclass
class Application:
    """One application's profiles (a folder with scalability, placements, validation CSVs)."""

    name: str
    #: placement string → sorted [(local_bsz, step_time, sync_time)].
    placements: dict[str, list[tuple[float, float, float]]]
    #: (num_nodes, num_replicas) → sorted [(local_bsz, step_time, sync_time)].
    groups: dict[tuple[int, int], list[tuple[float, float, float]]]
    validation: dict[int, _Validation]
    max_local_bsz: int
    max_epochs: int = field(init=False)

    def __post_init__(self) -> None:
        self.max_epochs = min(len(v.progress) for v in self.validation.values())

    @property
    def init_batch_size(self) -> int:
        return min(self.validation)

    @property
    def max_batch_size(self) -> int:
        return max(self.validation)

    def epoch_progress(self) -> list[float]:
        """Progress at the start of each epoch 0..max_epochs (the last one is 'done')."""
        return [0.0] + [min(v.progress[e] for v in self.validation.values()) for e in range(self.max_epochs)]

    def grad_stats(self, batch_size: float, epoch: int) -> tuple[float, float]:
        sizes = sorted(self.validation)
        lo = max((b for b in sizes if b <= batch_size), default=sizes[0])
        hi = min((b for b in sizes if b >= batch_size), default=sizes[-1])
        a, b = self.validation[lo], self.validation[hi]
        if lo == hi:
            return a.grad_sqr[epoch], a.grad_var[epoch]
        w = (batch_size - lo) / (hi - lo)
        return (
            a.grad_sqr[epoch] + w * (b.grad_sqr[epoch] - a.grad_sqr[epoch]),
            a.grad_var[epoch] + w * (b.grad_var[epoch] - a.grad_var[epoch]),
        )

    def step_time(self, placement: Placement, local_bsz: float) -> tuple[float, float]:
        """(step_time, sync_time) for this placement and per-GPU batch size."""
        used = tuple(p for p in placement if p)
        rotations = [used[i:] + used[:i] for i in range(len(used))]
        key = "".join(map(str, min(rotations)))
        rows = self.placements.get(key)
        if rows is None:
            nodes, replicas = min(len(used), 16), sum(used)
            rows = self.groups.get((nodes, replicas))
            if rows is None:  # nearest measured shape: same node count first, then replicas
                nearest = min(self.groups, key=lambda g: (abs(g[0] - nodes), abs(g[1] - replicas)))
                rows = self.groups[nearest]
        xs = [r[0] for r in rows]
        return _interp(xs, [r[1] for r in rows], local_bsz), _interp(xs, [r[2] for r in rows], local_bsz)


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the profile ({exc.strerror or exc})") from None


#: The artifact caps yolov3's per-GPU batch at 8 (memory); every other app uses its profiled maximum.
MAX_LOCAL_BSZ = {"yolov3": 8}


def load_application(folder: Path) -> Application:
    placements: dict[str, list[tuple[float, float, float]]] = {}
    sums: dict[tuple[int, int, float], list[tuple[float, float]]] = {}
    for row in _read_rows(folder / "placements.csv"):
        p = row["placement"].strip()
        entry = (float(row["local_bsz"]), float(row["step_time"]), float(row["sync_time"]))
        placements.setdefault(p, []).append(entry)
        digits = [int(c) for c in p]
        sums.setdefault((len(digits), sum(digits), entry[0]), []).append(entry[1:])
    groups: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    for (nodes, replicas, bsz), vals in sums.items():
        mean = (sum(v[0] for v in vals) / len(vals), sum(v[1] for v in vals) / len(vals))
        groups.setdefault((nodes, replicas), []).append((bsz, *mean))
    for row in _read_rows(folder / "scalability.csv"):
        key = (int(row["num_nodes"]), int(row["num_replicas"]))
        groups.setdefault(key, []).append((float(row["local_bsz"]), float(row["step_time"]), float(row["sync_time"])))
    validation: dict[int, _Validation] = {}
    for path in folder.glob("validation-*.csv"):
        rows = _read_rows(path)
        validation[int(path.stem.split("-")[-1])] = _Validation(
            [float(r["progress"]) for r in rows],
            [float(r["grad_sqr"]) for r in rows],
            [float(r["grad_var"]) for r in rows],
        )
    if not placements or not validation:
        raise TraceError(f"{folder}: not a Pollux profile folder (needs placements.csv and validation-*.csv)")
    for rows_ in (*placements.values(), *groups.values()):
        rows_.sort()
    max_local = MAX_LOCAL_BSZ.get(folder.name, int(max(e[0] for rows_ in placements.values() for e in rows_)))
    return Application(folder.name, placements, groups, validation, max_local)


@dataclass
class _JobPlan:
    """A job's fixed batch configuration and its per-epoch progress boundaries and gains."""

    atomic_bsz: int
    accum_steps: int
    bounds: list[float]
    gains: list[float]


@dataclass
class PolluxProfiles:
    """Speed from the Pollux profiles; ``folder`` holds one sub-folder per application."""

    folder: Path
    restart_s: float = 30.0
    apps: dict[str, Application] = field(default_factory=dict)
    plans: dict[tuple[str, int, int], _JobPlan] = field(default_factory=dict)

    def app(self, name: str) -> Application:
        if name not in self.apps:
            sub = self.folder / name
            if not sub.is_dir():
                known = sorted(p.name for p in self.folder.iterdir() if p.is_dir()) if self.folder.is_dir() else []
                raise TraceError(f"no profile for application '{name}' in {self.folder} (have: {', '.join(known)})")
            self.apps[name] = load_application(sub)
        return self.apps[name]

    def plan(self, job: TraceJob) -> _JobPlan:
        return _plan(self, job.application or "", job.gpus, job.batch_size or 0)

    def total(self, job: TraceJob) -> float:
        return self.plan(job).bounds[-1]

    def _rates(self, job: TraceJob, placement: Placement) -> tuple[_JobPlan, list[float]]:
        plan = self.plan(job)
        step, sync = self.app(job.application or "").step_time(placement, plan.atomic_bsz)
        total_time = step + (step - sync) * plan.accum_steps
        return plan, [g / total_time for g in plan.gains]

    def time_to_finish(self, job: TraceJob, progress: float, placement: Placement) -> float:
        plan, rates = self._rates(job, placement)
        t = 0.0
        for e, rate in enumerate(rates):
            lo, hi = plan.bounds[e], plan.bounds[e + 1]
            if progress < hi:
                t += (hi - max(progress, lo)) / rate
        return t

    def advance(self, job: TraceJob, progress: float, placement: Placement, seconds: float) -> float:
        plan, rates = self._rates(job, placement)
        for e, rate in enumerate(rates):
            hi = plan.bounds[e + 1]
            if progress >= hi:
                continue
            need = (hi - progress) / rate
            if need >= seconds:
                return progress + seconds * rate
            seconds -= need
            progress = hi
        return progress


def _plan(model: PolluxProfiles, app_name: str, replicas: int, batch_size: int) -> _JobPlan:
    key = (app_name, replicas, batch_size)
    cached = model.plans.get(key)
    if cached is not None:
        return cached
    app = model.app(app_name)
    local = math.ceil(batch_size / replicas - 1e-8)
    accum = math.ceil(local / app.max_local_bsz - 1e-8) - 1
    if replicas == 1 and batch_size > app.init_batch_size:
        accum = max(1, accum)
    atomic = math.ceil(local / (accum + 1) - 1e-8)
    atomic = max(1, min(atomic, int(app.max_batch_size / (replicas * (accum + 1)))))
    effective = replicas * atomic * (accum + 1)
    scale = effective / app.init_batch_size
    gains = []
    for epoch in range(app.max_epochs):
        sqr, var = app.grad_stats(effective, epoch)
        gains.append((var + sqr) / (var / scale + sqr))
    plan = _JobPlan(atomic, accum, app.epoch_progress(), gains)
    model.plans[key] = plan
    return plan
