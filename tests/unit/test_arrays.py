"""``core.arrays``: array expressions as Slurm's --array writes them, task ids, the ``%N``
throttle and the state an array shows."""

from __future__ import annotations

import pytest

from suanli.core.arrays import (
    MAX_ARRAY_TASKS,
    Task,
    array_state,
    counts_words,
    parse_array,
    split_task_id,
    task_env,
    task_id,
    throttle,
)
from suanli.core.errors import SpecError
from suanli.core.spec import parse_job_spec
from suanli.core.states import JobState

S = JobState


@pytest.mark.parametrize(
    ("text", "indices", "limit"),
    [
        ("0-3", (0, 1, 2, 3), None),
        ("0-9:4", (0, 4, 8), None),
        ("1,3,5-7", (1, 3, 5, 6, 7), None),
        ("0-9:3%2", (0, 3, 6, 9), 2),
        ("7", (7,), None),
        (5, (5,), None),
        ("3,1,3", (1, 3), None),
        (" 0 - 2 ", (0, 1, 2), None),
    ],
)
def test_expressions_parse_as_slurm_reads_them(text: object, indices: tuple[int, ...], limit: int | None) -> None:
    array = parse_array(text)
    assert (array.indices, array.max_running) == (indices, limit)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("5-1", "ends before it starts; write it as 1-5"),
        ("0-9:0", "step in 0-9:0 must be at least 1"),
        ("0-9%0", "how many tasks may run at once"),
        ("0-9%x", "how many tasks may run at once"),
        ("a-b", "'a-b' is not an index or a range"),
        ("", "Write the array's indices"),
        ("-1", "not an index or a range"),
        (f"0-{MAX_ARRAY_TASKS}", "at most 10,000 tasks"),
        ("0-999999999", "indices run from 0 to 999999"),
        ("0-5000,6000-12000", "at most 10,000 tasks"),
        (True, "Write the array's indices"),
        ("1" * 5000, "indices run from 0 to 999999"),
        ("0-5%" + "9" * 5000, "how many tasks may run at once"),
        ("0-5%²", "how many tasks may run at once"),
        ("٣", "not an index or a range"),
        (10**40, "indices run from 0 to 999999; a number alone is one index"),
        (-1, "indices run from 0 to 999999"),
    ],
)
def test_bad_expressions_say_how_to_write_them(text: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_array(text)


def test_the_largest_array_is_accepted_and_kept_as_written() -> None:
    assert parse_array(f"0-{MAX_ARRAY_TASKS - 1}").count == MAX_ARRAY_TASKS
    spec = parse_job_spec("run: x\narray: 0-99:2%5\n")
    assert spec.array is not None
    assert spec.array.count == 50
    assert spec.model_dump(mode="json")["array"] == "0-99:2%5"


def test_the_spec_names_the_field_and_refuses_an_array_with_one_output() -> None:
    with pytest.raises(SpecError, match=r"array: '9-0'"):
        parse_job_spec("run: x\narray: 9-0\n")
    with pytest.raises(SpecError, match="cannot all become one output dataset"):
        parse_job_spec("run: x\narray: 0-1\noutput: {dataset: out}\n")


def test_task_ids_are_the_array_id_and_the_index() -> None:
    assert task_id("k3mz8qpa", 4) == "k3mz8qpa_4"
    assert split_task_id("k3mz8qpa_4") == ("k3mz8qpa", 4)
    assert split_task_id("k3mz8qpa") is None
    assert split_task_id("_4") is None
    assert split_task_id("a_b") is None
    assert task_env("k3", 4, 10) == {
        "SUANLI_ARRAY_JOB_ID": "k3",
        "SUANLI_ARRAY_INDEX": "4",
        "SUANLI_ARRAY_TASK_COUNT": "10",
    }


def test_the_throttle_lets_the_lowest_indices_fill_what_is_free() -> None:
    pending = [Task(f"a_{i}", "a", i, 3) for i in (5, 2, 9, 7)] + [Task(f"b_{i}", "b", i, 1) for i in (0, 1)]
    held = throttle(pending, {"a": 1})
    assert sorted(held) == ["a_7", "a_9", "b_1"]
    assert held["a_9"] == "array a runs at most 3 tasks at once (%3); 1 are running"
    assert sorted(throttle(pending, {"a": 5, "b": 1})) == ["a_2", "a_5", "a_7", "a_9", "b_0", "b_1"]


@pytest.mark.parametrize(
    ("counts", "state"),
    [
        ({S.PENDING: 3, S.RUNNING: 1, S.FAILED: 1}, S.RUNNING),
        ({S.PENDING: 3, S.SUCCEEDED: 1}, S.PENDING),
        ({S.SUCCEEDED: 3, S.FAILED: 1, S.CANCELLED: 1}, S.FAILED),
        ({S.SUCCEEDED: 3, S.CANCELLED: 1}, S.CANCELLED),
        ({S.SUCCEEDED: 3}, S.SUCCEEDED),
    ],
)
def test_an_array_shows_its_tasks_summed_up(counts: dict[JobState, int], state: JobState) -> None:
    assert array_state(counts) == state


def test_counts_read_active_states_first() -> None:
    assert counts_words({S.SUCCEEDED: 2, S.PENDING: 0, S.RUNNING: 3}) == "3 RUNNING, 2 SUCCEEDED"
