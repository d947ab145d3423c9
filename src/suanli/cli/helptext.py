"""How ``--help`` reads: prose reflowed to the terminal, and option values named for what they
are.

Typer (0.29, rich mode) keeps the hard line breaks of a docstring in command listings and in
the paragraphs after the first, so help printed at another width breaks mid-sentence ("every
\\n command also takes"); and it labels an option without a metavar by its Python type
(``<bool>`` beside a flag, ``<str>``). Here every help text is reflowed paragraph by paragraph
(a paragraph starting with ``\\b`` keeps its lines, as in Click), a flag shows no value, and any
other option shows its name (``--site SITE``), as Slurm's and Click's help do.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from typer.core import TyperOption

C = TypeVar("C")


def reflow(text: str | None) -> str | None:
    """``text`` with each paragraph's lines joined into one (``\\b`` paragraphs kept as they are)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def reflow_command(command: C) -> C:
    """``command`` (a Click command; for a group, its subcommands too) with reflowed help."""
    command.help = reflow(getattr(command, "help", None))  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        reflow_command(sub)
    return command


def _value_name(self: TyperOption, ctx: Any) -> str | None:
    if self.metavar is not None:
        return self.metavar
    if self.is_flag or self.count:
        return None
    name = (self.name or "value").upper()
    return name + "..." if self.nargs != 1 or self.multiple else name


def install() -> None:
    """Name option values as described above (idempotent; the CLI calls it once)."""
    method: Any = _value_name
    TyperOption.display_type_rich = method  # type: ignore[method-assign]
