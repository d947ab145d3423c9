"""Gavel traces: both line formats, and run times from Gavel's measured throughputs.

A Gavel ``.trace`` line is tab-separated, without a header, in one of two formats:

- 7 columns (the ``msr`` traces): ``job_type, command, num_steps_arg, needs_data_dir,
  total_steps, arrival_time, scale_factor``;
- 10 columns (Gavel's later generator): ``job_type, command, working_directory,
  num_steps_arg, needs_data_dir, total_steps, scale_factor, priority_weight, SLO,
  arrival_time`` — note that arrival and scale factor swap places.

Gavel's simulator turns a line into a run time with ``simulation_throughputs.json``: the
throughput (steps per second) of ``(job_type, scale_factor)`` on a worker type (``v100``,
``p100``, ``k80``), alone on its GPUs (the ``null`` entry). The run time is
``total_steps / throughput``, as here. Gavel measured scale factors 1, 2, 4 and 8 only (and
some job types at 1 only); a line for any other has no run time, in Gavel too, and is
refused with its line number.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from suanli.core.errors import SuanliError
from suanli.core.network import NetworkSpec

#: Where Gavel keeps it, relative to a ``seed=N/<vc>.trace`` file.
THROUGHPUTS_NAME = "simulation_throughputs.json"
#: Gavel's own cluster for the msr traces is V100s only (``cluster_specs.json``).
DEFAULT_WORKER = "v100"


class GavelError(SuanliError):
    """Gavel's throughputs cannot give run times: no file, or no such worker type."""


@dataclass(frozen=True)
class GavelLine:
    job_type: str
    total_steps: float
    arrival_s: float
    scale_factor: int


def parse_line(cols: list[str]) -> GavelLine:
    """One tab-split line of either format; ValueError says what is wrong."""
    if len(cols) == 7:
        steps, arrival, scale = cols[4], cols[5], cols[6]
    elif len(cols) == 10:
        steps, scale, arrival = cols[5], cols[6], cols[9]
    else:
        raise ValueError(f"expected 7 or 10 tab-separated columns (Gavel's two formats), found {len(cols)}")
    try:
        line = GavelLine(cols[0].strip(), float(steps), float(arrival), int(scale))
    except ValueError:
        names = "total_steps, arrival_time, scale_factor"
        raise ValueError(f"{names} are '{steps}', '{arrival}', '{scale}'; they must be numbers") from None
    if not line.job_type:
        raise ValueError("job_type (the first column) is empty")
    if line.total_steps <= 0 or line.scale_factor < 1 or line.arrival_s < 0:
        raise ValueError(
            f"total_steps {line.total_steps:g} and scale_factor {line.scale_factor} must be positive "
            f"and arrival_time {line.arrival_s:g} not negative"
        )
    return line


class Throughputs:
    """Gavel's ``simulation_throughputs.json``: steps per second by worker type, job type and
    scale factor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise GavelError(
                f"{path}: cannot read Gavel's throughputs ({exc.strerror or exc}); pass --throughputs FILE"
            ) from None
        except json.JSONDecodeError as exc:
            raise GavelError(f"{path}: not JSON ({exc})") from None
        #: worker type → (job type, scale factor) → steps/s alone on its GPUs.
        self.table: dict[str, dict[tuple[str, int], float]] = {}
        for worker, entries in raw.items():
            if worker.endswith("_unconsolidated") or not isinstance(entries, dict):
                continue
            rows = self.table.setdefault(worker, {})
            for key, value in entries.items():
                try:
                    job_type, scale = ast.literal_eval(key)  # "('ResNet-18 (batch size 16)', 1)"
                except (ValueError, SyntaxError, TypeError):
                    continue
                rate = value.get("null") if isinstance(value, dict) else None
                if isinstance(job_type, str) and isinstance(scale, int) and isinstance(rate, int | float):
                    rows[(job_type, scale)] = float(rate)

    @property
    def workers(self) -> list[str]:
        return sorted(self.table)

    def worker_for(self, gpu_types: list[str]) -> str:
        """The first of the network's GPU types that Gavel measured (``V100`` → ``v100``)."""
        for t in gpu_types:
            if t.lower() in self.table:
                return t.lower()
        have = ", ".join(gpu_types) or "none"
        raise GavelError(
            f"the network's GPU types ({have}) have no Gavel throughputs in {self.path}; Gavel measured "
            f"{', '.join(self.workers)}: declare one of these GPU types or pass --gavel-gpu TYPE"
        )

    def check_worker(self, worker: str) -> None:
        if worker not in self.table:
            raise GavelError(f"{self.path}: no throughputs for worker type '{worker}' (have {', '.join(self.workers)})")

    def run_time(self, worker: str, job_type: str, scale_factor: int, total_steps: float) -> float:
        self.check_worker(worker)
        rows = self.table[worker]
        rate = rows.get((job_type, scale_factor))
        if rate is None or rate <= 0:
            measured = sorted(s for (jt, s) in rows if jt == job_type)
            at = f"measured at {', '.join(map(str, measured))} GPUs" if measured else "job type not measured at all"
            raise ValueError(
                f"Gavel has no {worker} throughput for job type '{job_type}' at {scale_factor} GPU(s) ({at})"
            )
        return total_steps / rate


def default_throughputs(trace_path: Path) -> Path:
    return trace_path.parent.parent / THROUGHPUTS_NAME


def network_worker(network: NetworkSpec, throughputs: Path) -> str:
    """The worker type whose throughputs a Gavel trace takes on ``network``."""
    types = list(dict.fromkeys(n.gpu_type for s in network.sites for n in s.node_decls() if n.gpu_type))
    return Throughputs(throughputs).worker_for(types)
