"""Task definitions in the lm-evaluation-harness style, and rendering documents through them.

A task names how a document becomes a prompt (``doc_to_text``), its answer (``doc_to_target``)
and, for multiple choice, its options (``doc_to_choice``). Each of these is a Jinja template
(``"Question: {{question}}\\nAnswer:"``), a bare field name (``answer``) or, for choices, a
list written in the task. A template that is one expression (``"{{choices}}"``) keeps its value's
type, so a list field stays a list and an integer target stays an integer. Templates run in
Jinja's sandbox: a tenant's task can read the document and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from jinja2.sandbox import ImmutableSandboxedEnvironment

OutputType = Literal["multiple_choice", "generate_until", "loglikelihood"]
OUTPUT_TYPES: tuple[str, ...] = ("multiple_choice", "generate_until", "loglikelihood")
#: Which metrics each output type can report.
METRICS: dict[str, tuple[str, ...]] = {
    "multiple_choice": ("acc", "acc_norm"),
    "generate_until": ("exact_match", "pass@1"),
    "loglikelihood": ("loglikelihood", "perplexity"),
}
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}).)*)\}\}$", re.DOTALL)
_ENV = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


class TaskError(ValueError):
    """A task definition or a document it renders is unusable; the message says which and why."""


@dataclass(frozen=True)
class TaskSpec:
    """One task. Field names and meanings follow lm-evaluation-harness's task YAML."""

    #: The task's name (``task:`` in the YAML), e.g. ``synthetic-mc``.
    name: str
    #: ``multiple_choice``, ``generate_until`` or ``loglikelihood``.
    output_type: OutputType
    #: Template or field giving the prompt.
    doc_to_text: str
    #: Template or field giving the answer: for multiple choice an index or one of the choices.
    doc_to_target: str
    #: Multiple choice only: a template, a field, or a list of fixed choices.
    doc_to_choice: str | tuple[str, ...] | None = None
    #: Metric names, each among :data:`METRICS` of the output type.
    metrics: tuple[str, ...] = ()
    #: Put between the prompt and a choice or target (lm-evaluation-harness's default).
    target_delimiter: str = " "
    #: generate_until: stop sequences and the most tokens to generate.
    until: tuple[str, ...] = ()
    max_gen_toks: int = 64
    #: pass@1 only: the program to run, a template over the document and ``completion``.
    test_program: str | None = None
    #: Seconds one program may run (pass@1).
    timeout_s: float = 10.0
    #: The author's version of the task (``metadata.version``); goes on the ledger with scores.
    version: str = "0"
    #: The field that names a document (its position in the file when absent).
    doc_id: str | None = None
    description: str = ""

    def digest(self) -> str:
        """SHA-256 of the task's canonical JSON: two runs of one task digest alike."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("metrics", "until"):
            out[key] = list(out[key])
        if isinstance(self.doc_to_choice, tuple):
            out["doc_to_choice"] = list(self.doc_to_choice)
        return out


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TaskError(f"{what} must be a string or a list of strings")
    return tuple(value)


def task_from_dict(data: dict[str, Any]) -> TaskSpec:
    """A checked :class:`TaskSpec` from a parsed task YAML (or :meth:`TaskSpec.to_dict`)."""
    if not isinstance(data, dict):
        raise TaskError("a task definition must be a mapping")
    known = set(TaskSpec.__dataclass_fields__) | {"task", "metric_list", "metadata", "generation_kwargs"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TaskError(f"unknown task field(s): {', '.join(unknown)}")
    name = data.get("task", data.get("name"))
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise TaskError("task must be a name of lowercase letters, digits, '.', '_' or '-' (at most 63)")
    output_type = data.get("output_type")
    if output_type not in OUTPUT_TYPES:
        raise TaskError(f"task {name}: output_type must be one of {', '.join(OUTPUT_TYPES)}")
    for key in ("doc_to_text", "doc_to_target"):
        if not isinstance(data.get(key), str | int) or isinstance(data.get(key), bool):
            raise TaskError(f"task {name}: {key} is required (a template or a field name)")
    choice = data.get("doc_to_choice")
    if output_type == "multiple_choice":
        if choice is None:
            raise TaskError(f"task {name}: a multiple_choice task needs doc_to_choice")
        choice = choice if isinstance(choice, str) else _strings(choice, "doc_to_choice")
    elif choice is not None:
        raise TaskError(f"task {name}: doc_to_choice is for multiple_choice tasks only")
    metrics = _metric_names(data, name)
    allowed = METRICS[output_type]
    wrong = [m for m in metrics if m not in allowed]
    if wrong:
        raise TaskError(f"task {name}: {output_type} reports {', '.join(allowed)}, not {', '.join(wrong)}")
    gen = data.get("generation_kwargs") or {}
    until = _strings(data.get("until", gen.get("until", [])), "until")
    max_gen = data.get("max_gen_toks", gen.get("max_gen_toks", 64))
    if not isinstance(max_gen, int) or not 1 <= max_gen <= 4096:
        raise TaskError(f"task {name}: max_gen_toks must be a whole number from 1 to 4096")
    program = data.get("test_program")
    if ("pass@1" in metrics) != (program is not None):
        raise TaskError(f"task {name}: test_program goes with the pass@1 metric, and pass@1 needs one")
    version = data.get("version", (data.get("metadata") or {}).get("version", "0"))
    spec = TaskSpec(
        name=name,
        output_type=output_type,
        doc_to_text=str(data["doc_to_text"]),
        doc_to_target=str(data["doc_to_target"]),
        doc_to_choice=choice,
        metrics=metrics,
        target_delimiter=str(data.get("target_delimiter", " ")),
        until=until,
        max_gen_toks=max_gen,
        test_program=program,
        timeout_s=float(data.get("timeout_s", 10.0)),
        version=str(version),
        doc_id=data.get("doc_id"),
        description=str(data.get("description", "")),
    )
    for template in (spec.doc_to_text, spec.doc_to_target, spec.test_program, choice):
        if isinstance(template, str):
            _compile(template, name)
    return spec


def _metric_names(data: dict[str, Any], name: str) -> tuple[str, ...]:
    raw = data.get("metric_list", data.get("metrics"))
    if raw is None:
        raise TaskError(f"task {name}: name at least one metric (metric_list)")
    names = [m.get("metric") if isinstance(m, dict) else m for m in raw] if isinstance(raw, list) else None
    if not names or not all(isinstance(m, str) for m in names):
        raise TaskError(f"task {name}: metric_list must be a list of metric names or of {{metric: NAME}}")
    return tuple(str(m) for m in names)


@functools.lru_cache(maxsize=256)
def _compile(template: str, task: str) -> Any:
    """The compiled template (cached: a task renders the same few templates for every document)."""
    try:
        match = _ONE_EXPRESSION.match(template.strip())
        if match:
            return _ENV.compile_expression(match.group("expr"), undefined_to_none=False)
        return _ENV.from_string(template)
    except Exception as exc:
        raise TaskError(f"task {task}: the template {template!r} does not parse: {exc}") from exc


def render(template: str, doc: dict[str, Any], task: str, **extra: Any) -> Any:
    """A template's value over ``doc``: a field's value, one expression's value, or rendered text."""
    if _FIELD.match(template) and template in doc:
        return doc[template]
    compiled = _compile(template, task)
    try:
        if _ONE_EXPRESSION.match(template.strip()):
            return compiled(**doc, **extra)
        return compiled.render(**doc, **extra)
    except Exception as exc:
        raise TaskError(f"task {task}: the template {template!r} failed on a document: {exc}") from exc


def choices_of(task: TaskSpec, doc: dict[str, Any]) -> list[str]:
    """The options of a multiple-choice document, as strings."""
    raw = list(task.doc_to_choice) if isinstance(task.doc_to_choice, tuple) else None
    if raw is None:
        value = render(str(task.doc_to_choice), doc, task.name)
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        raw = value if isinstance(value, list) else None
    if not raw:
        raise TaskError(f"task {task.name}: doc_to_choice must give a non-empty list of choices")
    return [str(c) for c in raw]


def target_index(task: TaskSpec, doc: dict[str, Any], choices: list[str]) -> int:
    """The index of the right choice: the target is an index or the text of one choice."""
    target = render(task.doc_to_target, doc, task.name)
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target.strip())
    if isinstance(target, int) and not isinstance(target, bool):
        if not 0 <= target < len(choices):
            raise TaskError(f"task {task.name}: target index {target} is outside the {len(choices)} choices")
        return target
    if str(target) in choices:
        return choices.index(str(target))
    raise TaskError(f"task {task.name}: the target {target!r} is not one of the choices {choices}")


def prompt_of(task: TaskSpec, doc: dict[str, Any]) -> str:
    return str(render(task.doc_to_text, doc, task.name))


def target_text(task: TaskSpec, doc: dict[str, Any]) -> str:
    return str(render(task.doc_to_target, doc, task.name))


def doc_key(task: TaskSpec, doc: dict[str, Any], line: int) -> str:
    """What names a document: its ``doc_id`` field, else its line number in the file."""
    if task.doc_id is not None:
        if task.doc_id not in doc:
            raise TaskError(f"task {task.name}: document on line {line + 1} has no field {task.doc_id!r} (doc_id)")
        return str(doc[task.doc_id])
    return str(line)
