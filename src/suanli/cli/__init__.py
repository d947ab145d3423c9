"""The ``suanli`` command line (Typer + Rich), built on :mod:`suanli.sdk` only."""

from suanli.cli.main import app, main

__all__ = ["app", "main"]
