"""Backends run attempts on a site's engine; ``Backend`` is the interface they share.

``LocalBackend`` (processes on the agent's machine) is the default; ``FakeBackend`` is an
in-memory one for tests and simulations.
"""

from suanli.agent.backends.base import Backend
from suanli.agent.backends.fake import FakeBackend
from suanli.agent.backends.local import LocalBackend

__all__ = ["Backend", "FakeBackend", "LocalBackend"]
