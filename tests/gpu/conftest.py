"""Tests on a real NVIDIA GPU (``pytest -m gpu tests/gpu``; ``make test-gpu``;
``scripts/gpu-check.sh`` runs them with the transfer benchmark on a GPU machine).

``make test`` leaves them out (``-m "not ... gpu"``). Run on purpose where there is no GPU, they
FAIL, each with the reason, rather than skip: a green run must mean they ran on a GPU.

The probe asks NVML (``pynvml``, from ``nvidia-ml-py``) directly, not through suanli, so a
fault in suanli's own NVML code cannot hide the GPU from the tests that check that code.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import pytest

from suanli import adaptors
from suanli.agent.nvml_gpus import FAKE_NVML_ENV


@dataclass
class GpuProbe:
    """What NVML says of this machine's GPUs; ``problem`` says why there are none to test on."""

    names: list[str] = field(default_factory=list)
    driver: str = ""
    problem: str | None = None

    @property
    def count(self) -> int:
        return len(self.names)

    def require(self) -> None:
        """Fail the calling test (in its call phase, so it counts as a failure) without a GPU."""
        if self.problem is not None:
            pytest.fail(
                f"no real NVIDIA GPU to test on: {self.problem}\nThe gpu tests are meant for a machine "
                "with an NVIDIA GPU and its driver (make test-gpu, scripts/gpu-check.sh); make test "
                "leaves them out.",
                pytrace=False,
            )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_gpus() -> GpuProbe:
    if os.environ.get(FAKE_NVML_ENV):
        return GpuProbe(problem=f"${FAKE_NVML_ENV} is set: it swaps the real NVML for a fake one; unset it")
    pynvml = adaptors.pynvml()
    if pynvml is None:
        return GpuProbe(problem="pynvml is not importable (install nvidia-ml-py, the 'nvidia' extra)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        return GpuProbe(problem=f"NVML cannot start here ({type(exc).__name__}: {exc}); is an NVIDIA driver loaded?")
    try:
        names = [
            _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(int(pynvml.nvmlDeviceGetCount()))
        ]
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
    except Exception as exc:
        return GpuProbe(problem=f"NVML started but could not list the GPUs ({type(exc).__name__}: {exc})")
    finally:
        pynvml.nvmlShutdown()
    if not names:
        return GpuProbe(problem="NVML sees no GPU on this machine")
    return GpuProbe(names=names, driver=driver)


@functools.cache
def gpu_probe() -> GpuProbe:
    """The probe, once per session."""
    return probe_gpus()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Every gpu test fails at once, as a failure of the test itself (not a setup error, not a
    skip), where there is no GPU."""
    if item.get_closest_marker("gpu") is not None:
        gpu_probe().require()


@pytest.fixture
def gpu() -> GpuProbe:
    """The machine's GPUs as NVML lists them (the test has failed already where there are none)."""
    return gpu_probe()
