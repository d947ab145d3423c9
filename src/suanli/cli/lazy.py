"""Commands whose modules are imported only when they run, so ``suanli --help`` and
``suanli jobs`` start at once.

A :class:`LazyCommand` names where its command lives (``"module:attribute"``, a command
function or a ``typer.Typer`` sub-app) and carries what the root ``--help`` shows of it (its
panel and the first paragraph of its help), so listing the commands imports none of them.
``tests/unit/test_cli_start.py`` checks that these copies match the real commands.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from suanli.cli import helptext
from suanli.cli.errors import SuanliGroup

helptext.install()


@dataclass(frozen=True)
class LazyCommand:
    name: str
    #: ``"package.module:attribute"``: a command function or a ``typer.Typer`` sub-app.
    target: str
    #: The ``rich_help_panel`` it is listed under.
    panel: str
    #: The first paragraph of its help, as the root ``--help`` shows it.
    help: str
    #: A ``typer.Typer`` sub-app: listed after the plain commands, as Typer lists groups.
    group: bool = False

    def load(self) -> Any:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def command(self) -> TyperCommand | TyperGroup:
        """The real command, built exactly as ``app.command()`` / ``app.add_typer()`` would."""
        target = self.load()
        holder = typer.Typer()
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=self.name, rich_help_panel=self.panel)
        else:
            holder.command(self.name, rich_help_panel=self.panel)(target)
        command = typer.main.get_group(holder).commands[self.name]
        return cast(TyperCommand | TyperGroup, helptext.reflow_command(command))


class _Placeholder(TyperCommand):
    """What ``--help``, typo suggestions and shell completion see of a command not yet imported."""

    def __init__(self, lazy: LazyCommand) -> None:
        super().__init__(lazy.name, help=helptext.reflow(lazy.help), rich_help_panel=lazy.panel)
        self.lazy = lazy


class LazyGroup(SuanliGroup):
    """The root group: the eager commands, then the lazy ones in the order registered (commands
    before groups, as Typer orders them)."""

    lazy: ClassVar[dict[str, LazyCommand]] = {}

    @classmethod
    def register(cls, *commands: LazyCommand) -> None:
        for command in commands:
            cls.lazy[command.name] = command

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        helptext.reflow_command(self)  # the root's help and its eager commands
        for lazy in sorted(self.lazy.values(), key=lambda c: c.group):  # stable: commands, then groups
            self.commands.setdefault(lazy.name, _Placeholder(lazy))

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        """Running (or completing) a lazy command imports it, once."""
        if args and isinstance(placeholder := self.commands.get(args[0]), _Placeholder):
            self.commands[args[0]] = placeholder.lazy.command()
        return super().resolve_command(ctx, args)
