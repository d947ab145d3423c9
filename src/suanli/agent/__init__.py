"""The site agent: registers a site with the server, runs its attempts on a backend, reports back.

It reaches the server only over HTTP, through ``suanli.sdk.Client``.
"""

from suanli.agent.agent import Agent, AgentClient
from suanli.agent.backends import Backend, FakeBackend, LocalBackend

__all__ = ["Agent", "AgentClient", "Backend", "FakeBackend", "LocalBackend"]
