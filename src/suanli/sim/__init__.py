"""The simulator: replay real GPU-cluster traces on a network with the scheduler the server runs.

``suanli simulate`` is the command; :func:`suanli.sim.runner.run_compare` and
:func:`suanli.sim.runner.run_sweep` are the library entry points. The simulator imports only
``suanli.core`` of ours: the placement of every job is decided by
:func:`suanli.core.scheduler.schedule`, as in the live server.
"""

from __future__ import annotations

from suanli.sim.engine import Simulation
from suanli.sim.policies import POLICIES, make_policy
from suanli.sim.state import SimResult
from suanli.sim.trace import LOADERS, Trace, TraceError, TraceJob, load_trace

__all__ = [
    "LOADERS",
    "POLICIES",
    "SimResult",
    "Simulation",
    "Trace",
    "TraceError",
    "TraceJob",
    "load_trace",
    "make_policy",
]
