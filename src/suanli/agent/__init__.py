"""The site agent: registers a site with the server, runs its attempts on a backend, reports back.

It reaches the server only over HTTP, through ``suanli.sdk.Client``.
"""

from suanli.agent.agent import Agent
from suanli.agent.backends import Backend, FakeBackend, LocalBackend
from suanli.agent.cycle import AgentClient

__all__ = ["Agent", "AgentClient", "Backend", "FakeBackend", "LocalBackend"]
