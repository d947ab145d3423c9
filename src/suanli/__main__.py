"""The `suanli` program: the CLI's commands plus the ones that start the network."""

from __future__ import annotations

from suanli.cli import app
from suanli.launch.commands import add_commands

add_commands(app)


def main() -> None:
    app(prog_name="suanli")


if __name__ == "__main__":
    main()
