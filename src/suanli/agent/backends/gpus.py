"""What this machine has: CPUs and memory from psutil, NVIDIA GPUs from NVML when present.

NVML (``pynvml``, from the optional ``nvidia-ml-py`` package) is imported lazily: a laptop or a
CPU-only server has neither the package nor a driver, and the agent must still start there.
``$SUANLI_FAKE_NVML`` swaps in a fake NVML for tests (``suanli.agent.nvml_gpus.load_nvml``).
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from dataclasses import dataclass

import psutil

from suanli.agent.nvml_gpus import load_nvml  # pynvml, or a test's fake NVML
from suanli.core.protocol import NodeReport

log = logging.getLogger("suanli.agent.gpus")

_VENDOR_WORDS = {"NVIDIA", "TESLA", "GEFORCE", "QUADRO"}
_SERIES_WORDS = {"RTX", "GTX", "TITAN"}


@dataclass(frozen=True)
class GpuInventory:
    """The GPUs found on this machine: their type (as the scheduler names it) and count."""

    type: str
    count: int


def short_gpu_name(full: str) -> str:
    """NVML's marketing name → the scheduler's type name.

    "NVIDIA H100 80GB HBM3" → "H100", "NVIDIA A800-SXM4-80GB" → "A800",
    "Tesla V100-SXM2-16GB" → "V100", "NVIDIA GeForce RTX 4090" → "RTX4090".
    """
    words = [w for w in full.replace("_", " ").split() if w.upper() not in _VENDOR_WORDS]
    if not words:
        return full.strip() or "GPU"
    if words[0].upper() in _SERIES_WORDS and len(words) > 1:
        return (words[0] + words[1].split("-")[0]).upper()
    return words[0].split("-")[0]


def detect_nvidia_gpus() -> GpuInventory | None:
    """The machine's NVIDIA GPUs, or None without pynvml, a driver or any GPU."""
    pynvml = load_nvml()
    if pynvml is None:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
        log.info("NVML is not usable here (%s); reporting no GPUs", exc)
        return None
    try:
        names: list[str] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(index))
            names.append(name.decode() if isinstance(name, bytes) else str(name))
    except Exception as exc:
        log.warning("NVML failed while listing GPUs (%s); reporting no GPUs", exc)
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", exc)
    if not names:
        return None
    kinds = Counter(short_gpu_name(n) for n in names)
    if len(kinds) > 1:
        log.warning("this machine mixes GPU types (%s); reporting all as %s", dict(kinds), kinds.most_common(1)[0][0])
    return GpuInventory(type=kinds.most_common(1)[0][0], count=len(names))


def this_machine(name: str | None = None) -> NodeReport:
    """This machine as one node: logical CPUs, memory in GiB, and its NVIDIA GPUs if any."""
    gpus = detect_nvidia_gpus()
    return NodeReport(
        name=name or socket.gethostname(),
        gpu_type=gpus.type if gpus else None,
        gpus_total=gpus.count if gpus else 0,
        cpus=float(psutil.cpu_count(logical=True) or 1),
        memory=round(psutil.virtual_memory().total / 2**30, 1),
        gpu_source="nvml" if gpus else "virtual",
    )
