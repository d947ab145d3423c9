"""YAML loading that keeps line numbers, so errors can point at the line a user wrote.

We compose the YAML into a node tree first (``yaml.compose``), build plain Python values from
it ourselves, and remember where each path came from. Aliases and anchors are refused: they are
never needed in a job spec and are the vehicle of "billion laughs" documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from suanli.core.errors import Problem, SpecError

#: Largest document accepted, in bytes.
MAX_DOCUMENT_BYTES = 1 << 20
#: Most nodes (mappings, lists and scalars) in one document.
MAX_NODES = 100_000
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 64

Path = tuple[str | int, ...]


@dataclass
class LocatedDocument:
    """Plain data plus the 1-based line of every mapping key and sequence item."""

    data: Any
    lines: dict[Path, int]

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """Line of the deepest known prefix of ``path``."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)


def _build(node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise SpecError(
                    [Problem(_dotted(path), "mapping keys must be plain words", key_node.start_mark.line + 1)]
                )
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError(
                    [Problem(_dotted(path), "YAML merge keys ('<<') are not allowed", key_node.start_mark.line + 1)]
                )
            key = str(_scalar(key_node, path))
            if key == "<<":
                raise SpecError(
                    [Problem(_dotted(path), "YAML merge keys ('<<') are not allowed", key_node.start_mark.line + 1)]
                )
            if key in out:
                raise SpecError(
                    [Problem(_dotted((*path, key)), "this key appears twice", key_node.start_mark.line + 1)]
                )
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, path)


_resolver_loader = yaml.SafeLoader("")


def _scalar(node: yaml.ScalarNode, path: Path = ()) -> Any:
    try:
        return _resolver_loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:  # an unknown tag ('!foo', '!!python/object')
        why = exc.problem or "it has an unknown tag"
    except (ValueError, OverflowError) as exc:  # '!!int abc', a date like 2020-13-45, 5000 digits
        why = str(exc)
    finally:
        _resolver_loader.constructed_objects.clear()
    raise SpecError([Problem(_dotted(path), f"this value cannot be read: {why}", node.start_mark.line + 1)])


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def dotted(path: Sequence[str | int]) -> str:
    """``("resources", "accelerators", 0)`` → ``resources.accelerators[0]``."""
    return _dotted(path)


class _NoAliasComposer(yaml.SafeLoader):
    """Composes a node tree, refusing aliases and anchors, and stopping at :data:`MAX_NODES`
    nodes or :data:`MAX_DEPTH` levels (before Python's own recursion limit could be hit)."""

    _nodes = 0
    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise SpecError([Problem("", "YAML aliases ('*name') are not allowed", event.start_mark.line + 1)])
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None):
            raise SpecError([Problem("", "YAML anchors ('&name') are not allowed", event.start_mark.line + 1)])
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise SpecError(
                [Problem("", f"the document has more than {MAX_NODES:,} values; split it", event.start_mark.line + 1)]
            )
        if self._depth >= MAX_DEPTH:
            raise SpecError(
                [Problem("", f"the document nests deeper than {MAX_DEPTH} levels", event.start_mark.line + 1)]
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, source: str | None = None) -> LocatedDocument:
    """Parse ``text`` as one YAML mapping, refusing aliases, anchors, merge keys and huge input."""
    if len(text.encode("utf-8", "replace")) > MAX_DOCUMENT_BYTES:
        raise SpecError([Problem("", f"document is larger than {MAX_DOCUMENT_BYTES // 1024} KiB")], source)
    try:
        loader = _NoAliasComposer(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except SpecError as exc:
        exc.source = source
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or "could not be parsed"
        raise SpecError([Problem("", f"not valid YAML: {what}", line)], source) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem("", f"not valid YAML: {exc}")], source) from None
    if node is None:
        raise SpecError([Problem("", "the document is empty")], source)
    lines: dict[Path, int] = {}
    try:
        data = _build(node, (), lines)
    except SpecError as exc:
        exc.source = source
        raise
    if not isinstance(data, Mapping):
        raise SpecError([Problem("", "expected a mapping of fields (key: value) at the top level", 1)], source)
    return LocatedDocument(data=data, lines=lines)
