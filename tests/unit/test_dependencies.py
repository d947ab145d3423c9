"""``core.dependencies``: the verdict on a job's dependencies, and their spec and CLI forms."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from suanli.cli.jobs import with_after
from suanli.core.dependencies import Dependency, Outcome, When, decide, parse_dependencies, parse_dependency
from suanli.core.errors import SpecError
from suanli.core.lifecycle import JobRecord, never_runs
from suanli.core.spec import parse_job_spec
from suanli.core.states import JobState

S = JobState


@pytest.mark.parametrize(
    ("when", "state", "outcome"),
    [
        (When.OK, S.RUNNING, Outcome.WAITING),
        (When.OK, S.PENDING, Outcome.WAITING),
        (When.OK, S.SUCCEEDED, Outcome.MET),
        (When.OK, S.FAILED, Outcome.NEVER),
        (When.OK, S.CANCELLED, Outcome.NEVER),
        (When.ANY, S.SUCCEEDED, Outcome.MET),
        (When.ANY, S.FAILED, Outcome.MET),
        (When.ANY, S.CANCELLED, Outcome.MET),
        (When.ANY, S.SCHEDULED, Outcome.WAITING),
        (When.NOTOK, S.FAILED, Outcome.MET),
        (When.NOTOK, S.CANCELLED, Outcome.MET),
        (When.NOTOK, S.SUCCEEDED, Outcome.NEVER),
        (When.NOTOK, S.STARTING, Outcome.WAITING),
    ],
)
def test_each_kind_is_met_waits_or_never_is(when: When, state: JobState, outcome: Outcome) -> None:
    assert decide([Dependency("a", when)], {"a": state}).outcome == outcome


def test_the_reasons_name_the_job_and_the_kind() -> None:
    assert decide([Dependency("a")], {"a": S.RUNNING}).reason == "waiting for job a (afterok)"
    both = decide([Dependency("a"), Dependency("b", When.ANY)], {"a": S.RUNNING, "b": S.PENDING})
    assert both.reason == "waiting for job a (afterok) and 1 more"
    never = decide([Dependency("a"), Dependency("b")], {"a": S.RUNNING, "b": S.FAILED})
    assert never.outcome == Outcome.NEVER  # one that can never be met decides at once
    assert never.reason == "dependency never satisfied: job b ended FAILED (afterok)"
    gone = decide([Dependency("a", When.ANY)], {})
    assert gone.reason == "dependency never satisfied: job a no longer exists (afterany)"
    assert decide([], {}).outcome == Outcome.MET


def test_the_cli_form_is_id_or_id_colon_when() -> None:
    assert parse_dependencies("a, b:any,c:notok,d:afterok") == [
        Dependency("a"),
        Dependency("b", When.ANY),
        Dependency("c", When.NOTOK),
        Dependency("d", When.OK),
    ]
    with pytest.raises(ValueError, match=r"ok .* any .* notok"):
        parse_dependency("a:later")
    with pytest.raises(ValueError, match="names no job"):
        parse_dependency(":any")


def test_the_spec_takes_strings_and_mappings() -> None:
    spec = parse_job_spec("run: x\nafter: [abc123, 'def456:any', {job: ghi789, when: notok}]\n")
    assert [a.dependency for a in spec.after] == [
        Dependency("abc123"),
        Dependency("def456", When.ANY),
        Dependency("ghi789", When.NOTOK),
    ]
    assert spec.model_dump(mode="json")["after"][1] == {"job": "def456", "when": "any"}
    with pytest.raises(SpecError, match=r"after\[0\]\.when"):
        parse_job_spec("run: x\nafter: [{job: a, when: soon}]\n")


def test_a_job_that_never_runs_ends_cancelled_through_the_lifecycle() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    change = never_runs(JobRecord(state=S.PENDING), "dependency never satisfied: job a ended FAILED (afterok)", now)
    assert change.job is not None
    assert change.job.state == S.CANCELLED
    assert change.job_changed
    assert change.job.reason.startswith("dependency never satisfied")
    assert never_runs(JobRecord(state=S.SCHEDULED), "x", now) == never_runs(JobRecord(state=S.CANCELLED), "x", now)


def test_submit_after_adds_to_the_specs_after() -> None:
    spec = with_after(parse_job_spec("run: x\nafter: [a]\n"), "b:any,c")
    assert [a.dependency for a in spec.after] == [Dependency("a"), Dependency("b", When.ANY), Dependency("c")]
    with pytest.raises(typer.BadParameter):
        with_after(spec, "d:soon")
