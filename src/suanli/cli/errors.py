"""The error boundary: every failure a user can meet becomes a sentence on stderr, never a traceback.

It lives in the root group's ``invoke``, so commands added later with ``app.command()`` or
``app.add_typer()`` get the same treatment. Exit codes: 1 for errors, 2 for usage errors
(raised by Typer itself), 130 for Ctrl-C. Set SUANLI_DEBUG=1 to see tracebacks of bugs.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from suanli.core.errors import SpecError, SuanliError

if TYPE_CHECKING:
    from suanli.sdk import ApiError

# The error boundary wraps every command, `suanli --help` included; what it needs to print an
# error (Rich, and the SDK with httpx) is imported by `report`, on the way out, so start-up
# does not pay for it.

#: Exceptions Typer uses for control flow; they pass through untouched.
_CONTROL_FLOW = (typer.Exit, typer.Abort, typer.TyperException)


class SuanliGroup(TyperGroup):
    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except _CONTROL_FLOW:
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(141) from None
        except Exception as exc:
            if not report(exc) and os.environ.get("SUANLI_DEBUG"):
                raise
            raise typer.Exit(1) from None


def report(exc: BaseException) -> bool:
    """Print ``exc`` for a user. Returns False when it is unexpected (a bug)."""
    from suanli.cli.context import error, note
    from suanli.sdk import ApiError

    if isinstance(exc, SpecError):
        for problem in exc.problems:
            note(problem.render(exc.source))
        if not exc.problems:
            error(str(exc))
    elif isinstance(exc, ApiError):
        error(_api_message(exc), [_render_entry(e) for e in exc.errors])
    elif isinstance(exc, SuanliError):  # ServerUnreachable, WorkdirTooLarge, ...
        error(str(exc))
    elif isinstance(exc, FileNotFoundError):
        error(f"no such file: {exc.filename or exc}")
    elif isinstance(exc, IsADirectoryError):
        error(f"{exc.filename} is a folder; give the path of a YAML file")
    elif isinstance(exc, PermissionError):
        error(f"permission denied: {exc.filename or exc}")
    elif isinstance(exc, UnicodeDecodeError):
        error(f"not a text file (UTF-8 expected): {exc.reason}")
    else:
        hint = "" if os.environ.get("SUANLI_DEBUG") else " (set SUANLI_DEBUG=1 to see the traceback)"
        error(f"unexpected {type(exc).__name__}: {exc}{hint}")
        return False
    return True


def _api_message(exc: ApiError) -> str:
    message = exc.detail or exc.title
    if exc.status == 401 and not os.environ.get("SUANLI_TOKEN"):
        # The server's sentence may name 'suanli login' already: one hint, not two.
        message = message.replace(" ('suanli login')", "") + " ('suanli login', or pass --token / $SUANLI_TOKEN)"
    return message


def _render_entry(entry: Any) -> str:
    """One entry of a problem document's ``errors``: our Problems or pydantic's shape."""
    if not isinstance(entry, dict):
        return str(entry)
    message = entry.get("message") or entry.get("msg")
    where = entry.get("field")
    if where is None and isinstance(entry.get("loc"), list):
        where = ".".join(str(p) for p in entry["loc"] if p != "body")
    if message is None:
        return json.dumps(entry, ensure_ascii=False, default=str)
    line = entry.get("line")
    prefix = ": ".join(str(p) for p in (f"line {line}" if line else None, where) if p)
    return f"{prefix}: {message}" if prefix else str(message)


def _silence_stdout() -> None:
    # The reader went away (e.g. `suanli logs x | head`); keep Python from complaining at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
