"""GPU health from NVML: XID errors, uncorrected ECC errors, pages or rows waiting for a reset,
lost GPUs and temperature, for the node the agent runs on.

NVML comes from ``pynvml`` (the optional ``nvidia`` extra, package ``nvidia-ml-py``), imported
lazily: without it, or without a driver, nothing is checked and the agent runs as before. Tests
and fault drills pass a :class:`suanli.agent.fake_nvml.FakeNvml` instead (``nvml=``), or name a
fake's JSON file in ``SUANLI_FAKE_NVML`` (testing only; see
:func:`suanli.agent.nvml_gpus.load_nvml`).

What marks the node unhealthy, with a reason naming the GPU (NVML's index, as nvidia-smi numbers):

- an **XID critical-error event** (``nvmlEventTypeXidCriticalError``) whose XID is in the fatal
  set (:data:`DEFAULT_FATAL_XIDS`; configurable): ``GPU 3: XID 79 (GPU has fallen off the bus)``.
  Other XIDs (13, 31, 43, 45, … which NVIDIA attributes to the application) are only logged;
- the **uncorrected volatile ECC count** rising above what it was when the agent started
  (``nvmlDeviceGetTotalEccErrors(h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED, NVML_VOLATILE_ECC)``);
- **retired pages pending** (``nvmlDeviceGetRetiredPagesPendingStatus``, before Ampere) or **row
  remapping pending or failed** (``nvmlDeviceGetRemappedRows``, Ampere and later): the memory
  is repaired only by a GPU reset;
- a **lost GPU**: ``NVML_ERROR_GPU_IS_LOST`` from any query (``GPU 2 is lost (fallen off the
  bus)``), or ``NVML_ERROR_RESET_REQUIRED``;
- a **hot GPU**: its temperature (``nvmlDeviceGetTemperature``, ``NVML_TEMPERATURE_GPU``) at or
  above ``max_temp_c`` (90 °C by default; None: the GPU's own slowdown threshold,
  ``NVML_TEMPERATURE_THRESHOLD_SLOWDOWN``).

Which faults last: XIDs, ECC, pending repairs and lost GPUs are **sticky**. The agent keeps
reporting them until it restarts (a GPU reset or a reboot, the cure for all of them, restarts it
anyway), and the server drains the node on the first report, until an operator runs
``suanli undrain``. Heat is **transient**: the node is reported unhealthy while a GPU is hot and
healthy again once it has cooled ``cool_by_c`` (5 °C) below the limit; the report says
``transient``, so the server keeps new work off the node meanwhile but neither drains it nor
stops what runs there (a hot GPU slows itself down, and one that overheats shuts down and
reports a fatal XID).

Events are read on every heartbeat's inventory (``nvmlEventSetWait`` with a zero timeout: NVML
queues them in the event set meanwhile); the other queries run every ``interval_s`` seconds.

The NVML side (loading NVML, opening the GPUs, the queries and what their errors mean) is
:mod:`suanli.agent.nvml_gpus`; this module holds the watcher that runs the checks on it, reads
the XID events, and overlays the verdict on the node.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from suanli.agent.health import overlay
from suanli.agent.nvml_gpus import DEFAULT_MAX_TEMP_C, Gpu, NvmlGpus, load_nvml
from suanli.core.protocol import NodeReport

log = logging.getLogger("suanli.agent.gpu_health")

#: What the XIDs mean (NVIDIA's Xid catalog, docs.nvidia.com/deploy/xid-errors), for the reasons.
XID_MEANINGS: dict[int, str] = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup, due to previous errors",
    48: "double-bit ECC error",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded; a GPU reset activates it",
    64: "ECC page retirement or row remapping failed",
    68: "video processor exception",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    140: "unrecovered ECC error",
}

#: XIDs that drain the node. NVIDIA's Xid catalog and its GPU debug guidelines give these a GPU
#: reset (or a reboot, or service) as the resolution, not a restart of the application:
#:
#: - 48 double-bit ECC error, 94 contained and 95 uncontained ECC error, 140 unrecovered ECC
#:   error: memory returned wrong data; the page or row is retired or remapped only at the next
#:   reset (after 95, the whole GPU must be reset before anything runs on it again);
#: - 63 a page retirement or row remapping was recorded and needs a reset to take effect; 64 it
#:   failed: the memory cannot be repaired (service);
#: - 92 a high single-bit ECC error rate: the memory is failing;
#: - 62 internal micro-controller halt, 119 GSP RPC timeout, 120 GSP error: the GPU's firmware
#:   stopped answering; reset the GPU;
#: - 74 NVLink error: the links of a multi-GPU job are unreliable until reset or repair;
#: - 79 the GPU has fallen off the bus: it is gone until the machine is power-cycled.
#:
#: Not included: XIDs the catalog attributes to the application or its driver calls (13, 31, 43,
#: 45, 68, 69, 109: restart the application) and 154 (the driver's recovery-action report, which
#: accompanies the XIDs above).
DEFAULT_FATAL_XIDS: frozenset[int] = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120, 140})


def parse_xids(text: str) -> frozenset[int]:
    """``"48,79, 95"`` → {48, 79, 95}; ``"default"`` → :data:`DEFAULT_FATAL_XIDS`."""
    if text.strip().lower() == "default":
        return DEFAULT_FATAL_XIDS
    try:
        return frozenset(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise ValueError(f"XIDs are whole numbers separated by commas, not {text!r}") from None


class NvmlHealth(NvmlGpus):
    """Watches this machine's NVIDIA GPUs and overlays their faults on one node of the inventory.

    ``nvml``: pynvml, or a :class:`~suanli.agent.fake_nvml.FakeNvml`. ``node``: the node these
    GPUs belong to; None: the inventory's only node, else the node named like this host.
    ``fatal_xids``, ``max_temp_c``, ``cool_by_c``, ``interval_s``: see the module's doc.
    ``apply`` (the agent's health hook) starts watching on first use; ``open`` starts at once.
    The NVML session, its GPUs and the faults found are :class:`~suanli.agent.nvml_gpus.NvmlGpus`.
    """

    def __init__(
        self,
        nvml: Any,
        *,
        node: str | None = None,
        fatal_xids: Iterable[int] = DEFAULT_FATAL_XIDS,
        max_temp_c: float | None = DEFAULT_MAX_TEMP_C,
        cool_by_c: float = 5.0,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(nvml, max_temp_c=max_temp_c)
        self.node = node
        self.fatal_xids = frozenset(fatal_xids)
        self.cool_by_c, self.interval_s, self.clock = cool_by_c, interval_s, clock
        self._started: bool | None = None  # None: not tried yet; False: NVML is not usable
        self._checked_at: float | None = None
        self._lock = threading.RLock()

    @classmethod
    def open(cls, nvml: Any | None = None, **options: Any) -> NvmlHealth | None:
        """A started watcher, or None when NVML is missing or unusable, or there is no GPU."""
        nvml = nvml if nvml is not None else load_nvml()
        if nvml is None:
            return None
        health = cls(nvml, **options)
        return health if health.start() else None

    # -- watching --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Initialise NVML, find the GPUs, register for XID events and take the ECC baselines.
        False when NVML cannot be used here or sees no GPU."""
        with self._lock:
            if self._started is not None:
                return self._started
            self._started = False
            count = self._open()
            if not count:
                return False
            self._started = True
            events = "XID events" if self._events is not None else "no XID events (not supported)"
            log.info(
                "watching %d GPU(s) through NVML: %s, ECC, pending repairs, temperature (limit %s)",
                count,
                events,
                f"{self.max_temp_c:g} °C" if self.max_temp_c is not None else "each GPU's slowdown threshold",
            )
            self._check_gpus()
            return True

    def close(self) -> None:
        with self._lock:
            if not self._started:
                return
            self._close()
            self._started = None

    # -- checks ----------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read the queued XID events, and run the other checks when ``interval_s`` has passed."""
        with self._lock:
            if self._started is None:
                self.start()
            if not self._started:
                return
            self._read_events()
            now = self.clock()
            if self._checked_at is None or now - self._checked_at >= self.interval_s:
                self._check_gpus()

    def _read_events(self, most: int = 256) -> None:
        if self._events is None:
            return
        nvml = self.nvml
        for _ in range(most):
            try:
                data = nvml.nvmlEventSetWait(self._events, 0)
            except Exception as exc:
                code = self._code(exc)
                if code == getattr(nvml, "NVML_ERROR_TIMEOUT", 10):
                    return  # nothing queued
                if code == getattr(nvml, "NVML_ERROR_GPU_IS_LOST", 15):
                    # Find which one: its own queries fail the same way.
                    self._check_gpus()
                    if not any(g.lost for g in self._gpus):
                        self._failed(None, "event", exc)
                    return
                self._once(("events",), logging.WARNING, "NVML: reading XID events failed: %s", exc)
                return
            if not int(data.eventType) & nvml.nvmlEventTypeXidCriticalError:
                continue
            xid, index = int(data.eventData), self._index_of(data.device)
            name = f"GPU {index}" if index is not None else "a GPU"
            meaning = XID_MEANINGS.get(xid)
            text = f"{name}: XID {xid}" + (f" ({meaning})" if meaning else "")
            if xid in self.fatal_xids:
                self._fault(("xid", index, xid), text)
            else:
                self._once(("xid", index, xid), logging.WARNING, "%s; not in the fatal set, the node stays up", text)

    def _check_gpus(self) -> None:
        self._checked_at = self.clock()
        nvml = self.nvml
        for gpu in self._gpus:
            if gpu.lost:
                continue
            self._check_heat(gpu)
            if gpu.lost:
                continue
            if gpu.ecc_baseline is not None:
                count = self._query(gpu, "ECC", self._uncorrected)
                if count is not None and count > gpu.ecc_baseline:
                    self._fault(
                        ("ecc", gpu.index),
                        f"GPU {gpu.index}: uncorrected ECC errors rose from {gpu.ecc_baseline} to {count}",
                    )
                elif count is not None and count < gpu.ecc_baseline:
                    gpu.ecc_baseline = count  # the GPU was reset: its volatile counts start again
            if gpu.retired_pages and not gpu.lost:
                pending = self._supported(gpu, "retired_pages", nvml.nvmlDeviceGetRetiredPagesPendingStatus)
                if pending is not None and int(pending) == nvml.NVML_FEATURE_ENABLED:
                    self._fault(
                        ("retired", gpu.index), f"GPU {gpu.index}: retired pages pending (a GPU reset retires them)"
                    )
            if gpu.remapped_rows and not gpu.lost:
                rows = self._supported(gpu, "remapped_rows", nvml.nvmlDeviceGetRemappedRows)
                if rows is not None:
                    _corrected, _uncorrected, pending, failure = rows
                    if failure:
                        self._fault(("remap-failed", gpu.index), f"GPU {gpu.index}: row remapping failed")
                    if pending:
                        self._fault(
                            ("remap", gpu.index), f"GPU {gpu.index}: row remapping pending (a GPU reset applies it)"
                        )

    def _check_heat(self, gpu: Gpu) -> None:
        temp = self._query(gpu, "temperature", self._temperature)
        if temp is None:
            return
        if gpu.hot_at is None and temp >= gpu.limit_c:
            gpu.hot_at = temp
            log.warning("GPU %d is hot: %d °C, at or above its %g °C limit", gpu.index, temp, gpu.limit_c)
        elif gpu.hot_at is not None and temp <= gpu.limit_c - self.cool_by_c:
            gpu.hot_at = None
            log.info("GPU %d has cooled to %d °C", gpu.index, temp)
        elif gpu.hot_at is not None:
            gpu.hot_at = max(gpu.hot_at, temp)  # the peak: a reason that changes seldom

    # -- the verdict ---------------------------------------------------------------------------
    @property
    def faults(self) -> list[str]:
        """The sticky faults found so far, oldest first."""
        with self._lock:
            return list(self._faults.values())

    @property
    def hot(self) -> list[str]:
        """The GPUs hot now, as reasons."""
        with self._lock:
            return [
                f"GPU {g.index} is hot: reached {g.hot_at:g} °C (limit {g.limit_c:g} °C)"
                for g in self._gpus
                if g.hot_at is not None and not g.lost
            ]

    def _target(self, nodes: Sequence[NodeReport]) -> str | None:
        names = [n.name for n in nodes]
        if self.node is not None:
            return self.node if self.node in names else None
        if len(names) == 1:
            return names[0]
        host = socket.gethostname()
        for candidate in (host, host.split(".")[0]):
            if candidate in names:
                return candidate
        self._once(
            ("target",), logging.WARNING, "NVML sees this machine's GPUs, but no node is named %s: not applied", host
        )
        return None

    def apply(self, nodes: Sequence[NodeReport]) -> list[NodeReport]:
        """The inventory with this machine's GPU faults on its node (see the module's doc)."""
        self.poll()
        with self._lock:
            faults, hot = list(self._faults.values()), self.hot
        if not faults and not hot:
            return list(nodes)
        target = self._target(nodes)
        out: list[NodeReport] = []
        for node in nodes:
            if node.name == target:
                node = overlay(node, "; ".join(faults or hot), transient=not faults)
            out.append(node)
        return out
