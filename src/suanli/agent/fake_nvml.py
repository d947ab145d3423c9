# ruff: noqa: N801, N802, N803, N815, N816 - the names are pynvml's
"""A stand-in for ``pynvml`` (nvidia-ml-py), for tests and fault drills on machines without GPUs.

``FakeNvml`` has the functions, constants and error classes of pynvml that the agent uses, under
the same names and with the same values, so code written against it runs unchanged on a real
node. Tests change its GPUs' state and queue XID events through its attributes and methods
(``FakeGpu``, ``xid``). ``FakeNvml.from_file(path)`` reads that state from a JSON file instead,
re-read whenever the file changes, so another process (``bench/faults.py``) can break a GPU of a
running agent: the agent loads it when ``SUANLI_FAKE_NVML`` names the file
(``suanli.agent.nvml_gpus.load_nvml``). For testing only; never set it in production.

The file::

    {"gpus": 8,                                   # or a list of GPU objects, below
     "xids": [[1, 79]]}                           # (GPU index, XID) events, oldest first; each
                                                  # is delivered once: append to inject more
    GPU object: {"name": "NVIDIA H100 80GB HBM3", "temperature": 40, "slowdown_temperature": 90,
                 "ecc_uncorrected": 0, "retired_pages_pending": false,
                 "remapped_rows_pending": false, "remap_failure": false,
                 "lost": false, "ecc_supported": true}   # every key optional
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, fields
from pathlib import Path

# -- pynvml's constants (the values of nvidia-ml-py's pynvml.py) ------------------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_UNKNOWN = 999

NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1

nvmlEventTypeSingleBitEccError = 0x0000000000000001
nvmlEventTypeDoubleBitEccError = 0x0000000000000002
nvmlEventTypePState = 0x0000000000000004
nvmlEventTypeXidCriticalError = 0x0000000000000008
nvmlEventTypeNone = 0x0000000000000000

_MESSAGES = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


class NVMLError(Exception):
    """pynvml's error: ``value`` is the NVML return code. As in pynvml, ``NVMLError(15)`` makes an
    ``NVMLError_GpuIsLost``, and ``NVMLError_GpuIsLost()`` has the value 15."""

    code = NVML_ERROR_UNKNOWN
    _by_value: dict[int, type[NVMLError]] = {}  # noqa: RUF012 - a registry, filled by subclasses

    def __init_subclass__(cls) -> None:
        NVMLError._by_value[cls.code] = cls

    def __new__(cls, value: int | None = None) -> NVMLError:
        klass = NVMLError._by_value.get(value, cls) if cls is NVMLError and value is not None else cls
        obj = Exception.__new__(klass)
        obj.value = klass.code if value is None else value
        return obj

    def __init__(self, value: int | None = None) -> None:
        self.value: int
        super().__init__(self.value)

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


# The names pynvml generates from NVML_ERROR_* (string.capwords: GPU_IS_LOST → GpuIsLost).
class NVMLError_Uninitialized(NVMLError):
    code = NVML_ERROR_UNINITIALIZED


class NVMLError_InvalidArgument(NVMLError):
    code = NVML_ERROR_INVALID_ARGUMENT


class NVMLError_NotSupported(NVMLError):
    code = NVML_ERROR_NOT_SUPPORTED


class NVMLError_Timeout(NVMLError):
    code = NVML_ERROR_TIMEOUT


class NVMLError_LibraryNotFound(NVMLError):
    code = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_FunctionNotFound(NVMLError):
    code = NVML_ERROR_FUNCTION_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    code = NVML_ERROR_GPU_IS_LOST


class NVMLError_ResetRequired(NVMLError):
    code = NVML_ERROR_RESET_REQUIRED


class NVMLError_Unknown(NVMLError):
    code = NVML_ERROR_UNKNOWN


@dataclass
class FakeGpu:
    """One fake GPU's state; change the fields to change what NVML reports."""

    name: str = "NVIDIA H100 80GB HBM3"
    temperature: int = 40
    slowdown_temperature: int = 90
    ecc_uncorrected: int = 0
    retired_pages_pending: bool = False
    remapped_rows_pending: bool = False
    remap_failure: bool = False
    lost: bool = False
    ecc_supported: bool = True


@dataclass(frozen=True)
class FakeDevice:
    """A device handle (pynvml's ``c_nvmlDevice_t``)."""

    index: int


@dataclass
class FakeEventData:
    """What ``nvmlEventSetWait`` returns (pynvml's ``c_nvmlEventData_t``)."""

    device: FakeDevice | None
    eventType: int
    eventData: int
    gpuInstanceId: int = 0xFFFFFFFF
    computeInstanceId: int = 0xFFFFFFFF


class FakeEventSet:
    def __init__(self) -> None:
        self.devices: dict[int, int] = {}  # GPU index → registered event mask
        self.freed = False


class FakeNvml:
    """pynvml's functions over fake GPUs. ``fail_init``: an NVML return code that ``nvmlInit``
    raises (e.g. ``NVML_ERROR_LIBRARY_NOT_FOUND``: no driver). ``events_supported``: whether the
    GPUs support XID events (``nvmlDeviceGetSupportedEventTypes``)."""

    # the module-level names, reachable from an instance as from the module
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_ResetRequired = NVMLError_ResetRequired
    NVMLError_Unknown = NVMLError_Unknown
    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_RESET_REQUIRED = NVML_ERROR_RESET_REQUIRED
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN
    NVML_FEATURE_DISABLED = NVML_FEATURE_DISABLED
    NVML_FEATURE_ENABLED = NVML_FEATURE_ENABLED
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    NVML_MEMORY_ERROR_TYPE_CORRECTED = NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = NVML_VOLATILE_ECC
    NVML_AGGREGATE_ECC = NVML_AGGREGATE_ECC
    nvmlEventTypeSingleBitEccError = nvmlEventTypeSingleBitEccError
    nvmlEventTypeDoubleBitEccError = nvmlEventTypeDoubleBitEccError
    nvmlEventTypePState = nvmlEventTypePState
    nvmlEventTypeXidCriticalError = nvmlEventTypeXidCriticalError
    nvmlEventTypeNone = nvmlEventTypeNone

    def __init__(
        self,
        gpus: int | list[FakeGpu] = 8,
        *,
        fail_init: int | None = None,
        events_supported: bool = True,
    ) -> None:
        self.gpus: list[FakeGpu] = [FakeGpu() for _ in range(gpus)] if isinstance(gpus, int) else list(gpus)
        self.fail_init = fail_init
        self.events_supported = events_supported
        self.initialized = 0  # nvmlInit calls not yet matched by nvmlShutdown
        self.calls: list[str] = []
        self._pending: deque[tuple[int | None, int]] = deque()  # (GPU index or None, XID)
        self._sets: list[FakeEventSet] = []
        self._lock = threading.RLock()
        self._file: Path | None = None
        self._file_seen: tuple[float, int] | None = None
        self._file_xids = 0  # XIDs of the file already queued

    # -- driving the fake (tests) --------------------------------------------------------------
    def xid(self, gpu: int | None, xid: int) -> None:
        """Queue an XID critical-error event for GPU ``gpu`` (None: one NVML cannot attribute)."""
        with self._lock:
            self._pending.append((gpu, xid))

    @classmethod
    def from_file(cls, path: Path | str) -> FakeNvml:
        """A fake whose state is the JSON file at ``path`` (see the module's doc), re-read
        whenever the file changes."""
        fake = cls(0)
        fake._file = Path(path)
        fake._reload()
        return fake

    def _reload(self) -> None:
        if self._file is None:
            return
        try:
            stat = self._file.stat()
        except FileNotFoundError:
            return
        seen = (stat.st_mtime, stat.st_size)
        if seen == self._file_seen:
            return
        try:
            data = json.loads(self._file.read_text() or "{}")
        except (OSError, ValueError):
            return  # half-written: keep the last state, read it again next time
        self._file_seen = seen
        known = {f.name for f in fields(FakeGpu)}
        raw = data.get("gpus", 8)
        if isinstance(raw, int):
            gpus = [FakeGpu() for _ in range(raw)]
        else:
            gpus = [FakeGpu(**{k: v for k, v in dict(g).items() if k in known}) for g in raw]
        with self._lock:
            self.gpus = gpus
            xids = [(None if g is None else int(g), int(x)) for g, x in data.get("xids", [])]
            self._file_xids = min(self._file_xids, len(xids))
            self._pending.extend(xids[self._file_xids :])
            self._file_xids = len(xids)

    def _gpu(self, handle: FakeDevice) -> FakeGpu:
        self._check_init()
        self._reload()
        if not 0 <= handle.index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpu

    def _check_init(self) -> None:
        if self.initialized <= 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    # -- pynvml's functions ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.fail_init is not None:
            raise NVMLError(self.fail_init)
        self._reload()
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._check_init()
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        self._reload()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        self._check_init()
        self._reload()
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if self.gpus[index].lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return FakeDevice(index)

    def nvmlDeviceGetIndex(self, handle: FakeDevice) -> int:
        self._gpu(handle)
        return handle.index

    def nvmlDeviceGetName(self, handle: FakeDevice) -> str:
        return self._gpu(handle).name

    def nvmlDeviceGetTemperature(self, handle: FakeDevice, sensor: int) -> int:
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self._gpu(handle).temperature

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeDevice, threshold: int) -> int:
        gpu = self._gpu(handle)
        if threshold == NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            return gpu.slowdown_temperature
        if threshold == NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
            return gpu.slowdown_temperature + 5
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetTotalEccErrors(self, handle: FakeDevice, errorType: int, counterType: int) -> int:
        gpu = self._gpu(handle)
        if not gpu.ecc_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return gpu.ecc_uncorrected
        return 0

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: FakeDevice) -> int:
        gpu = self._gpu(device)
        if not gpu.ecc_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return NVML_FEATURE_ENABLED if gpu.retired_pages_pending else NVML_FEATURE_DISABLED

    def nvmlDeviceGetRemappedRows(self, device: FakeDevice) -> tuple[int, int, int, int]:
        """(correctable rows, uncorrectable rows, remapping pending, remapping failed)."""
        gpu = self._gpu(device)
        if not gpu.ecc_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return (0, 0, int(gpu.remapped_rows_pending), int(gpu.remap_failure))

    def nvmlDeviceGetSupportedEventTypes(self, handle: FakeDevice) -> int:
        self._gpu(handle)
        return nvmlEventTypeXidCriticalError | nvmlEventTypeDoubleBitEccError if self.events_supported else 0

    def nvmlEventSetCreate(self) -> FakeEventSet:
        self._check_init()
        event_set = FakeEventSet()
        self._sets.append(event_set)
        return event_set

    def nvmlDeviceRegisterEvents(self, handle: FakeDevice, eventTypes: int, eventSet: FakeEventSet) -> None:
        self._gpu(handle)
        if not self.events_supported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        eventSet.devices[handle.index] = eventSet.devices.get(handle.index, 0) | eventTypes

    def nvmlEventSetWait(self, eventSet: FakeEventSet, timeoutms: int) -> FakeEventData:
        """The oldest queued XID of a GPU registered in ``eventSet``; ``NVMLError_Timeout`` at
        once when there is none (the fake never sleeps)."""
        self._check_init()
        self._reload()
        with self._lock:
            for _ in range(len(self._pending)):
                gpu, xid = self._pending.popleft()
                wanted = gpu is None or eventSet.devices.get(gpu, 0) & nvmlEventTypeXidCriticalError
                if wanted:
                    device = None if gpu is None else FakeDevice(gpu)
                    return FakeEventData(device=device, eventType=nvmlEventTypeXidCriticalError, eventData=xid)
                # not registered: NVML would not have delivered it to this set; drop it
        raise NVMLError(NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, eventSet: FakeEventSet) -> None:
        eventSet.freed = True
