"""Turn pydantic validation errors into Problems that name the field, the line and a fix."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from suanli.core.errors import Problem, SpecError
from suanli.core.yamldoc import LocatedDocument, dotted, load_yaml

M = TypeVar("M", bound=BaseModel)


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the field at ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _first_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _first_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic adds union branch / validator names (e.g. "function-after[...]", "list[...]");
    # keep only real keys and indexes.
    out: list[str | int] = []
    for part in loc:
        wrapper = isinstance(part, str) and ("[" in part or part.startswith(("function-", "tagged-")))
        if not wrapper:
            out.append(part)
    return tuple(out)


def problems_from(exc: ValidationError, model: type[BaseModel], doc: LocatedDocument | None) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        raw = tuple(err["loc"])
        kind = err["type"]
        # An unknown key is the last part as the user wrote it, even one that looks like a
        # validator's name ("a[b]"): only the parts before it can be wrappers.
        loc = _clean_loc(raw[:-1]) + raw[-1:] if kind == "extra_forbidden" and raw else _clean_loc(raw)
        if kind == "extra_forbidden":
            name = str(loc[-1])
            owner = _model_at(model, loc[:-1])
            known = sorted(owner.model_fields) if owner else []
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = (
                f"; did you mean '{close[0]}'?" if close else (f"; known fields: {', '.join(known)}" if known else "")
            )
            message = f"unknown field '{name}'{hint}"
        elif kind == "missing":
            message = "this field is required"
        else:
            message = str(err["msg"])
            if message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            if message.startswith("Assertion failed, "):
                message = message[len("Assertion failed, ") :]
        key = (dotted(loc), message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(dotted(loc), message, doc.line_of(loc) if doc else None))
    return sorted(problems, key=lambda p: p.line or 0)


def validate_data(model: type[M], data: Any, doc: LocatedDocument | None = None, source: str | None = None) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, model, doc), source) from None


def parse_yaml_as(model: type[M], text: str, source: str | None = None) -> M:
    """Parse YAML text into ``model``; every problem is reported with its field and line."""
    doc = load_yaml(text, source)
    return validate_data(model, doc.data, doc, source)
