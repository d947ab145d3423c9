"""The job spec: every error names the field and the line, with a fix where one is obvious."""

from __future__ import annotations

import re

import pytest

from suanli.core.errors import SpecError
from suanli.core.resources import Accelerator
from suanli.core.spec import JobSpec, Priority, job_spec_from_data, parse_job_spec

FULL = """\
name: llama-ft
resources:
  accelerators: H100:8
  cpus: 16+
  memory: 64+
  num_nodes: 2
placement:
  regions: [tianjin, ningxia]
  max_price_per_gpu_hour: 30
  max_latency_ms: 5
datasets:
  - name: notes
    mount: /data/notes
workdir: .
envs: {LR: "1e-4", STEPS: 100}
setup: pip install -r requirements.txt
run: python train.py --lr $LR --ckpt $SUANLI_CHECKPOINT_DIR
checkpoint: {keep: true}
priority: high
max_retries: 3
time_limit: 2h
"""


def errors(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_job_spec(text, "job.yaml")
    return str(info.value)


def test_full_design_example_parses() -> None:
    spec = parse_job_spec(FULL)
    assert spec.resources.accelerators == [Accelerator("H100", 8)]
    assert spec.resources.cpus == 16
    assert spec.resources.memory == 64
    assert spec.resources.num_nodes == 2
    assert spec.placement.regions == ["tianjin", "ningxia"]
    assert spec.envs == {"LR": "1e-4", "STEPS": "100"}
    assert spec.priority is Priority.HIGH
    assert spec.time_limit == 7200
    assert spec.datasets[0].mount == "/data/notes"


def test_round_trip_through_json() -> None:
    spec = parse_job_spec(FULL)
    again = job_spec_from_data(spec.model_dump(mode="json"))
    assert again == spec


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("H100:8", [Accelerator("H100", 8)]),
        ("H100", [Accelerator("H100", 1)]),
        ("[H100:8, A800:8]", [Accelerator("H100", 8), Accelerator("A800", 8)]),
        ("{910B: 4}", [Accelerator("910B", 4)]),
    ],
)
def test_accelerator_forms(value: str, expected: list[Accelerator]) -> None:
    spec = parse_job_spec(f"run: x\nresources:\n  accelerators: {value}\n")
    assert spec.resources.accelerators == expected


def test_unknown_field_says_did_you_mean_and_line() -> None:
    text = "name: a\nrun: x\nresurces:\n  cpus: 2\n"
    assert errors(text) == "job.yaml:3: resurces: unknown field 'resurces'; did you mean 'resources'?"


def test_unknown_nested_field() -> None:
    msg = errors("run: x\nresources:\n  cpus: 2\n  acelerators: H100:8\n")
    assert "job.yaml:4: resources.acelerators: unknown field 'acelerators'; did you mean 'accelerators'?" in msg


def test_unknown_field_named_like_a_pydantic_wrapper_is_named_as_written() -> None:
    for key in ("list[x]", "function-after"):
        with pytest.raises(SpecError, match=re.escape(f"unknown field '{key}'")):
            job_spec_from_data({"run": "x", key: 1})
    with pytest.raises(SpecError, match=re.escape("placement.[: unknown field '['")):
        job_spec_from_data({"run": "x", "placement": {"[": 1}})


def test_zero_gpus_refused_with_line() -> None:
    msg = errors("run: x\nresources:\n  accelerators: H100:0\n")
    assert msg.startswith("job.yaml:3: resources.accelerators[0]: 'H100:0' asks for 0 GPUs")


def test_cpus_lots() -> None:
    msg = errors("run: x\nresources:\n  cpus: lots\n")
    assert msg == "job.yaml:3: resources.cpus: cpus must be a number like 16 or '16+', not 'lots'"


def test_num_nodes_zero() -> None:
    msg = errors("run: x\nresources:\n  num_nodes: 0\n")
    assert msg == "job.yaml:3: resources.num_nodes: num_nodes must be at least 1, not 0"


def test_missing_run() -> None:
    assert "run: this field is required" in errors("name: a\n")


def test_not_yaml() -> None:
    msg = errors("run: [unclosed\nname: x\n")
    assert msg.startswith("job.yaml:")
    assert "not valid YAML" in msg


def test_not_a_mapping() -> None:
    assert "expected a mapping" in errors("- just\n- a list\n")


def test_empty_document() -> None:
    assert "empty" in errors("")


def test_all_problems_reported_at_once() -> None:
    msg = errors("resources:\n  accelerators: H100:0\n  cpus: lots\n")
    assert msg.count("\n") >= 2  # three problems: H100:0, cpus, missing run


def test_aliases_and_anchors_refused() -> None:
    assert "anchors" in errors("a: &x [1, 2]\nb: *x\nrun: x\n")


def test_billion_laughs_refused_quickly() -> None:
    bomb = 'a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nrun: x\n'
    assert "not allowed" in errors(bomb)


def test_duplicate_key() -> None:
    assert "appears twice" in errors("run: x\nrun: y\n")


def test_bad_env_name_and_reserved_prefix() -> None:
    assert "not a valid environment variable name" in errors("run: x\nenvs: {'1X': a}\n")
    assert "set by suanli" in errors("run: x\nenvs: {SUANLI_JOB_ID: a}\n")


def test_bad_name() -> None:
    assert "not a valid name" in errors("run: x\nname: 'has spaces'\n")


def test_priority_and_duration_errors() -> None:
    assert "priority" in errors("run: x\npriority: urgent\n")
    assert "duration" in errors("run: x\ntime_limit: soon\n")


def test_defaults() -> None:
    spec = JobSpec(run="echo")
    assert spec.resources.num_nodes == 1
    assert spec.resources.accelerators == []
    assert spec.priority is Priority.NORMAL
    assert spec.checkpoint.keep is True


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90m", 5400), ("2h30m", 9000), ("1.5d", 129600), ("1h 5s", 3605)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_job_spec(f"run: x\ntime_limit: {text}\n").time_limit == seconds


def test_problems_sorted_by_line() -> None:
    msg = errors("resources:\n  cpus: lots\n  accelerators: H100:0\nrun: x\n")
    assert msg.index(":2:") < msg.index(":3:")
