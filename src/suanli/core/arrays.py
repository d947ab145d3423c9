"""Job arrays (``array: 0-999`` in a spec, ``suanli submit --array``), as Slurm's ``--array``.

One submission makes one task per index; every task is a job of its own (scheduled, retried,
cancelled and billed as one), whose id is the array's id, ``_`` and the index: array
``k3mz8qpa`` has tasks ``k3mz8qpa_0``, ``k3mz8qpa_1``, … as Slurm's ``123_4``. A task sees
``SUANLI_ARRAY_JOB_ID``, ``SUANLI_ARRAY_INDEX`` and ``SUANLI_ARRAY_TASK_COUNT``.

The expression is Slurm's: ``0-999``, ``0-999:4`` (every 4th index), ``1,3,5-7`` (a list of
indices and ranges) and, at the end, ``%50`` (at most 50 tasks run at once). Pure: parsing,
the task ids, the throttle a scheduling pass applies, the state an array shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from suanli.core.states import JobState

#: Most tasks one array may have (Slurm's MaxArraySize is 1001 by default; ours is larger
#: because a task costs a row, not a process). Ask for more as several arrays.
MAX_ARRAY_TASKS = 10_000
#: Indices run from 0 to this (Slurm's default MaxArraySize - 1 is far lower).
MAX_ARRAY_INDEX = 999_999
#: Between the array's id and a task's index in the task's id (``k3mz8qpa_4``).
TASK_SEP = "_"

_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", re.ASCII)
#: More digits than any index, step or limit has: refused before int() reads them.
_MAX_DIGITS = 7


@dataclass(frozen=True)
class TaskArray:
    """An array expression, parsed: the task indices in ascending order and the throttle."""

    #: Distinct, ascending.
    indices: tuple[int, ...]
    #: At most this many tasks run (are placed, start or run) at once; None: no limit.
    max_running: int | None = None
    #: The expression as written, normalised (no spaces): what the stored spec keeps.
    text: str = ""

    def __str__(self) -> str:
        return self.text

    @property
    def count(self) -> int:
        return len(self.indices)


def parse_array(value: object) -> TaskArray:
    """``0-999``, ``0-999:4``, ``1,3,5-7``, any of them with ``%N`` at the end; a number alone
    is one index. Raises ValueError with a sentence that says how to write it."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(_HOW)
    if isinstance(value, int) and not 0 <= value <= MAX_ARRAY_INDEX:
        raise ValueError(f"indices run from 0 to {MAX_ARRAY_INDEX}; a number alone is one index. {_HOW}")
    text = str(value).replace(" ", "")
    if not text:
        raise ValueError(_HOW)
    body, pct, limit = text.partition("%")
    max_running: int | None = None
    if pct:
        if not (limit.isascii() and limit.isdigit()) or len(limit) > _MAX_DIGITS or int(limit) < 1:
            raise ValueError(f"'{text}': after '%' write how many tasks may run at once, a whole number from 1")
        max_running = int(limit)
    indices: set[int] = set()
    for part in body.split(","):
        match = _RANGE_RE.match(part)
        if match is None:
            raise ValueError(f"'{text}': '{part}' is not an index or a range. {_HOW}")
        if any(len(g) > _MAX_DIGITS for g in match.groups() if g is not None):
            raise ValueError(f"'{text}': indices run from 0 to {MAX_ARRAY_INDEX}; {part} is beyond")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        step = int(match[3]) if match[3] is not None else 1
        if last < first:
            raise ValueError(f"'{text}': the range {part} ends before it starts; write it as {last}-{first}")
        if step < 1:
            raise ValueError(f"'{text}': the step in {part} must be at least 1")
        if last > MAX_ARRAY_INDEX:
            raise ValueError(f"'{text}': indices run from 0 to {MAX_ARRAY_INDEX}, and {last} is beyond")
        if len(indices) + (last - first) // step + 1 > MAX_ARRAY_TASKS:
            raise ValueError(_too_many(text))
        indices.update(range(first, last + 1, step))
        if len(indices) > MAX_ARRAY_TASKS:
            raise ValueError(_too_many(text))
    return TaskArray(tuple(sorted(indices)), max_running, text)


_HOW = (
    "Write the array's indices as Slurm's --array takes them: '0-999', '0-999:4' (every 4th), "
    "'1,3,5-7', optionally with '%50' at the end (at most 50 tasks at once)"
)


def _too_many(text: str) -> str:
    return f"'{text}': an array has at most {MAX_ARRAY_TASKS:,} tasks; submit several arrays for more"


def task_id(array_id: str, index: int) -> str:
    """The id of task ``index`` of array ``array_id``."""
    return f"{array_id}{TASK_SEP}{index}"


def split_task_id(job_id: str) -> tuple[str, int] | None:
    """(array id, index) of a task's id; None for any other id."""
    array_id, sep, index = job_id.rpartition(TASK_SEP)
    if not sep or not array_id or not index.isdigit():
        return None
    return array_id, int(index)


def task_env(array_id: str, index: int, count: int) -> dict[str, str]:
    """What a task sees of its array."""
    return {
        "SUANLI_ARRAY_JOB_ID": array_id,
        "SUANLI_ARRAY_INDEX": str(index),
        "SUANLI_ARRAY_TASK_COUNT": str(count),
    }


@dataclass(frozen=True)
class Task:
    """A pending task as the throttle sees it."""

    job_id: str
    array_id: str
    index: int
    max_running: int


def throttle(pending: Iterable[Task], active: Mapping[str, int]) -> dict[str, str]:
    """The pending tasks a pass must not place (job id → the reason they wait) so that no array
    has more than its ``%N`` tasks active: each array's lowest indices go first, up to what its
    ``active`` tasks (placed, starting or running) leave free."""
    by_array: dict[str, list[Task]] = {}
    for task in pending:
        by_array.setdefault(task.array_id, []).append(task)
    held: dict[str, str] = {}
    for array_id, tasks in by_array.items():
        tasks.sort(key=lambda t: t.index)
        limit = tasks[0].max_running
        running = active.get(array_id, 0)
        room = max(0, limit - running)
        reason = f"array {array_id} runs at most {limit} tasks at once (%{limit}); {running} are running"
        held.update({t.job_id: reason for t in tasks[room:]})
    return held


def array_state(counts: Mapping[JobState, int]) -> JobState:
    """The one state an array shows for its tasks' ``counts``: RUNNING while any task is active,
    else PENDING while any waits; once all ended, FAILED if any failed, else CANCELLED if any
    was cancelled, else SUCCEEDED."""
    if any(counts.get(s, 0) for s in JobState if s.is_active()):
        return JobState.RUNNING
    if counts.get(JobState.PENDING, 0):
        return JobState.PENDING
    for state in (JobState.FAILED, JobState.CANCELLED):
        if counts.get(state, 0):
            return state
    return JobState.SUCCEEDED


#: The order counts are shown in.
SHOWN_ORDER: Sequence[JobState] = (
    JobState.RUNNING,
    JobState.STARTING,
    JobState.SCHEDULED,
    JobState.PENDING,
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
)


def counts_words(counts: Mapping[JobState, int]) -> str:
    """``3 RUNNING, 997 PENDING``: the non-zero counts, active states first."""
    return ", ".join(f"{counts[s]} {s.value}" for s in SHOWN_ORDER if counts.get(s, 0))
