"""The network scheduler: pure, deterministic policy functions over plain state types.

``suanli.core.scheduler`` re-exports the public names; import from there.
"""
