"""This machine's GPUs through NVML: loading NVML, opening the GPUs, and the queries that the
GPU health watcher (:class:`suanli.agent.nvml_health.NvmlHealth`) builds its checks on.

NVML is ``pynvml`` (the optional ``nvidia`` extra, package ``nvidia-ml-py``), imported lazily by
:func:`load_nvml`, or a :class:`suanli.agent.fake_nvml.FakeNvml` that tests and fault drills
pass instead or name in ``$SUANLI_FAKE_NVML`` (testing only).

:class:`NvmlGpus` holds one NVML session: the GPUs it opened (:class:`Gpu`, with what is known of
each: its ECC baseline, its temperature limit, which queries it supports, whether it is lost),
the event set their XID events queue in, and the faults found so far. What a failed query
means is decided here: NVML's "GPU is lost" and "reset required" are faults of that GPU, "not
supported" means the GPU lacks the feature, and anything else is logged once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suanli import adaptors
from suanli.agent.fake_nvml import FakeNvml

log = logging.getLogger("suanli.agent.gpu_health")

#: Names the JSON file of a fake NVML (``suanli.agent.fake_nvml``) that the agent uses instead
#: of pynvml. For tests and fault drills only; never set it on a production node.
FAKE_NVML_ENV = "SUANLI_FAKE_NVML"

DEFAULT_MAX_TEMP_C = 90.0


def load_nvml() -> Any | None:
    """NVML for the agent: the fake named by ``$SUANLI_FAKE_NVML`` when set (testing only), else
    the ``pynvml`` module, else None (the ``nvidia`` extra is not installed)."""
    path = os.environ.get(FAKE_NVML_ENV)
    if path:
        log.warning("using the fake NVML of %s ($%s): for testing only", path, FAKE_NVML_ENV)
        return FakeNvml.from_file(path)
    nvml = adaptors.pynvml()
    if nvml is None:
        log.debug("pynvml is not installed; no NVIDIA GPUs are seen")
    return nvml


@dataclass
class Gpu:
    """One GPU of the session (``index``: NVML's, as nvidia-smi numbers them)."""

    index: int
    handle: Any
    ecc_baseline: int | None = None  # None: the GPU has no (enabled) ECC
    limit_c: float = DEFAULT_MAX_TEMP_C
    hot_at: float | None = None  # the highest temperature since it became hot; None: not hot
    retired_pages: bool = True  # whether the query is supported, as far as we know
    remapped_rows: bool = True
    lost: bool = False


class NvmlGpus:
    """An NVML session over this machine's GPUs, and the faults that its queries revealed.

    ``nvml``: pynvml, or a :class:`~suanli.agent.fake_nvml.FakeNvml`. ``max_temp_c``: the
    temperature limit of every GPU; None: each GPU's own slowdown threshold. Not thread-safe on
    its own: the watcher calls it under its lock.
    """

    def __init__(self, nvml: Any, *, max_temp_c: float | None = DEFAULT_MAX_TEMP_C) -> None:
        self.nvml, self.max_temp_c = nvml, max_temp_c
        self._gpus: list[Gpu] = []
        self._faults: dict[tuple[Any, ...], str] = {}  # sticky, in the order they were found
        self._events: Any = None
        self._noted: set[tuple[Any, ...]] = set()  # things logged once

    # -- the session -------------------------------------------------------------------------------
    def _open(self) -> int:
        """Initialise NVML, open every GPU, register each for XID events and take its ECC baseline
        and temperature limit. How many GPUs NVML counts; 0 when NVML cannot be used here or sees
        no GPU (NVML is shut down again)."""
        nvml = self.nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, …
            log.info("NVML is not usable here (%s); GPU health is not watched", exc)
            return 0
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            log.warning("NVML failed to count the GPUs (%s); GPU health is not watched", exc)
            self._shutdown()
            return 0
        if count == 0:
            self._shutdown()
            return 0
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                self._failed(index, "open", exc)
                continue
            gpu = Gpu(index, handle)
            self._gpus.append(gpu)
            gpu.ecc_baseline = self._query(gpu, "ECC", self._uncorrected)
            gpu.limit_c = self._limit(gpu)
            self._register(gpu)
        return count

    def _close(self) -> None:
        """Free the event set, shut NVML down and forget the GPUs."""
        if self._events is not None:
            with contextlib.suppress(Exception):
                self.nvml.nvmlEventSetFree(self._events)
            self._events = None
        self._shutdown()
        self._gpus = []

    def _shutdown(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown failed: %s", exc)

    # -- what NVML's errors mean -------------------------------------------------------------------
    def _code(self, exc: BaseException) -> int | None:
        value = getattr(exc, "value", None)
        return value if isinstance(value, int) else None

    def _failed(self, index: int | None, what: str, exc: BaseException) -> None:
        """A query failed: a lost GPU or one that needs a reset is a fault; others are logged."""
        code = self._code(exc)
        name = f"GPU {index}" if index is not None else "a GPU"
        if code == getattr(self.nvml, "NVML_ERROR_GPU_IS_LOST", 15):
            self._fault(("lost", index), f"{name} is lost (fallen off the bus)")
            for gpu in self._gpus:
                if gpu.index == index:
                    gpu.lost = True
        elif code == getattr(self.nvml, "NVML_ERROR_RESET_REQUIRED", 16):
            self._fault(("reset", index), f"{name} needs a reset (NVML: {exc})")
        else:
            self._once(("failed", index, what), logging.WARNING, "NVML: %s query of %s failed: %s", what, name, exc)

    def _not_supported(self, exc: BaseException) -> bool:
        return self._code(exc) in (
            getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3),
            getattr(self.nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13),
        )

    def _fault(self, key: tuple[Any, ...], reason: str) -> None:
        if key not in self._faults:
            self._faults[key] = reason
            log.warning("GPU fault: %s", reason)

    def _once(self, key: tuple[Any, ...], level: int, message: str, *args: Any) -> None:
        if key not in self._noted:
            self._noted.add(key)
            log.log(level, message, *args)

    # -- queries -----------------------------------------------------------------------------------
    def _query(self, gpu: Gpu, what: str, query: Callable[[Any], int]) -> int | None:
        """``query(handle)``, or None when it is not supported or failed (a fault if lost)."""
        try:
            return query(gpu.handle)
        except Exception as exc:
            if not self._not_supported(exc):
                self._failed(gpu.index, what, exc)
            return None

    def _supported(self, gpu: Gpu, flag: str, query: Callable[[Any], Any]) -> Any:
        """``query(handle)``; on "not supported", never asks again for this GPU."""
        try:
            return query(gpu.handle)
        except Exception as exc:
            if self._not_supported(exc):
                setattr(gpu, flag, False)
            else:
                self._failed(gpu.index, flag.replace("_", " "), exc)
            return None

    def _uncorrected(self, handle: Any) -> int:
        nvml = self.nvml
        return int(
            nvml.nvmlDeviceGetTotalEccErrors(handle, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC)
        )

    def _temperature(self, handle: Any) -> int:
        nvml = self.nvml
        try:
            return int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        except Exception as exc:
            # nvmlDeviceGetTemperature is deprecated in favour of nvmlDeviceGetTemperatureV,
            # which older drivers lack: use the new one only when the old one is gone.
            if self._code(exc) != getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13) or not hasattr(
                nvml, "nvmlDeviceGetTemperatureV"
            ):
                raise
            return int(nvml.nvmlDeviceGetTemperatureV(handle, nvml.NVML_TEMPERATURE_GPU))

    def _limit(self, gpu: Gpu) -> float:
        if self.max_temp_c is not None:
            return self.max_temp_c
        nvml = self.nvml
        slowdown = self._query(
            gpu,
            "slowdown threshold",
            lambda h: int(nvml.nvmlDeviceGetTemperatureThreshold(h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)),
        )
        if not slowdown:
            log.info("GPU %d has no slowdown threshold in NVML; its limit is %g °C", gpu.index, DEFAULT_MAX_TEMP_C)
            return DEFAULT_MAX_TEMP_C
        return float(slowdown)

    # -- XID events --------------------------------------------------------------------------------
    def _register(self, gpu: Gpu) -> None:
        nvml = self.nvml
        xid = nvml.nvmlEventTypeXidCriticalError
        try:
            if not int(nvml.nvmlDeviceGetSupportedEventTypes(gpu.handle)) & xid:
                log.info("GPU %d does not report XID events to NVML", gpu.index)
                return
            if self._events is None:
                self._events = nvml.nvmlEventSetCreate()
            nvml.nvmlDeviceRegisterEvents(gpu.handle, xid, self._events)
        except Exception as exc:
            if self._not_supported(exc):
                log.info("GPU %d does not report XID events to NVML", gpu.index)
            else:
                self._failed(gpu.index, "XID event registration", exc)

    def _index_of(self, device: Any) -> int | None:
        """The NVML index of an event's device (None: NVML did not say)."""
        if device is None:
            return None
        with contextlib.suppress(Exception):
            return int(self.nvml.nvmlDeviceGetIndex(device))
        address = _address(device)
        for gpu in self._gpus:
            if gpu.handle is device or (address is not None and _address(gpu.handle) == address):
                return gpu.index
        return None


def _address(handle: Any) -> int | None:
    """The address a ctypes device handle points at (pynvml's handles are ctypes pointers)."""
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except Exception:
        return None
