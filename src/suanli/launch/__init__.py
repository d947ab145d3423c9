"""Process composition: `suanli server`, `suanli agent` and `suanli up`.

This package wires the layers together (server, agents, SDK) and so is the one place allowed to
import several of them; it adds its commands to the CLI's Typer app from ``suanli.__main__``.
"""
