"""GPU health from NVML, against the fake NVML (and, where nvidia-ml-py is installed, through
pynvml's own wrappers over a fake C library)."""

from __future__ import annotations

import ctypes
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from suanli.agent import fake_nvml
from suanli.agent.backends import gpus
from suanli.agent.fake_nvml import FakeGpu, FakeNvml
from suanli.agent.health import HealthChecker, HealthChecks
from suanli.agent.nvml_gpus import FAKE_NVML_ENV, load_nvml
from suanli.agent.nvml_health import DEFAULT_FATAL_XIDS, NvmlHealth, parse_xids
from suanli.core.protocol import NodeReport


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def node(name: str = "gpu-01") -> NodeReport:
    return NodeReport(name=name, gpu_type="H100", gpus_total=8, cpus=64, memory=512)


def watch(fake: FakeNvml, **options: Any) -> NvmlHealth:
    options.setdefault("interval_s", 0)
    health = NvmlHealth(fake, **options)
    assert health.start()
    return health


def verdict(health: NvmlHealth, name: str = "gpu-01") -> NodeReport:
    (out,) = health.apply([node(name)])
    return out


def test_healthy_gpus_leave_the_node_as_it_is() -> None:
    fake = FakeNvml(8)
    health = watch(fake)
    assert verdict(health) == node()
    assert fake.initialized == 1
    health.close()
    assert fake.initialized == 0


def test_a_fatal_xid_marks_the_node_unhealthy_for_good() -> None:
    fake = FakeNvml(8)
    health = watch(fake)
    fake.xid(3, 79)
    out = verdict(health)
    assert (out.healthy, out.transient) == (False, False)
    assert out.reason == "GPU 3: XID 79 (GPU has fallen off the bus)"
    for _ in range(3):  # events are gone, the fault is not: sticky until the agent restarts
        assert verdict(health).reason == "GPU 3: XID 79 (GPU has fallen off the bus)"
    fake.xid(3, 79)  # the same again adds nothing; another does
    fake.xid(5, 48)
    assert verdict(health).reason == "GPU 3: XID 79 (GPU has fallen off the bus); GPU 5: XID 48 (double-bit ECC error)"


def test_an_application_xid_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeNvml(2)
    health = watch(fake)
    fake.xid(1, 13)
    fake.xid(1, 31)
    with caplog.at_level(logging.WARNING, logger="suanli.agent.gpu_health"):
        assert verdict(health).healthy
    assert "GPU 1: XID 13 (graphics engine exception); not in the fatal set" in caplog.text


def test_the_fatal_set_is_configurable() -> None:
    assert parse_xids("13, 79") == {13, 79}
    assert parse_xids("default") == DEFAULT_FATAL_XIDS
    with pytest.raises(ValueError, match="whole numbers"):
        parse_xids("79,x")
    fake = FakeNvml(2)
    health = watch(fake, fatal_xids={13})
    fake.xid(0, 79)
    assert verdict(health).healthy
    fake.xid(0, 13)
    assert verdict(health).reason == "GPU 0: XID 13 (graphics engine exception)"


def test_an_xid_nvml_cannot_attribute_still_counts() -> None:
    fake = FakeNvml(2)
    health = watch(fake)
    fake.xid(None, 95)
    assert verdict(health).reason == "a GPU: XID 95 (uncontained ECC error)"


def test_rising_uncorrected_ecc_errors_mark_the_node_unhealthy() -> None:
    fake = FakeNvml([FakeGpu(ecc_uncorrected=2), FakeGpu()])
    health = watch(fake)
    assert verdict(health).healthy  # errors from before the agent started are the baseline
    fake.gpus[0].ecc_uncorrected = 3
    out = verdict(health)
    assert (out.healthy, out.transient) == (False, False)
    assert out.reason == "GPU 0: uncorrected ECC errors rose from 2 to 3"
    fake.gpus[0].ecc_uncorrected = 0  # a GPU reset clears the volatile count: the fault stays
    assert not verdict(health).healthy


def test_gpus_without_ecc_are_not_checked_for_it() -> None:
    fake = FakeNvml([FakeGpu(ecc_supported=False)])
    health = watch(fake)
    fake.gpus[0].ecc_uncorrected = 7  # never readable: NVML answers "not supported"
    assert verdict(health).healthy


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("retired_pages_pending", "GPU 1: retired pages pending (a GPU reset retires them)"),
        ("remapped_rows_pending", "GPU 1: row remapping pending (a GPU reset applies it)"),
        ("remap_failure", "GPU 1: row remapping failed"),
    ],
)
def test_memory_waiting_for_a_reset_marks_the_node_unhealthy(field: str, reason: str) -> None:
    fake = FakeNvml(2)
    health = watch(fake)
    setattr(fake.gpus[1], field, True)
    out = verdict(health)
    assert (out.healthy, out.transient, out.reason) == (False, False, reason)


def test_a_lost_gpu_marks_the_node_unhealthy() -> None:
    fake = FakeNvml(4)
    health = watch(fake)
    fake.gpus[2].lost = True
    out = verdict(health)
    assert (out.healthy, out.transient, out.reason) == (False, False, "GPU 2 is lost (fallen off the bus)")
    fake.gpus[2].lost = False  # it does not come back by itself
    assert verdict(health).reason == "GPU 2 is lost (fallen off the bus)"


def test_a_gpu_lost_before_the_agent_started_is_reported() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(lost=True)])
    health = watch(fake)
    assert verdict(health).reason == "GPU 1 is lost (fallen off the bus)"


def test_a_hot_gpu_makes_the_node_unhealthy_until_it_cools() -> None:
    fake = FakeNvml(2)
    health = watch(fake)
    fake.gpus[1].temperature = 89
    assert verdict(health).healthy
    fake.gpus[1].temperature = 93
    out = verdict(health)
    assert (out.healthy, out.transient) == (False, True)
    assert out.reason == "GPU 1 is hot: reached 93 °C (limit 90 °C)"
    fake.gpus[1].temperature = 87  # below the limit, not yet 5 °C below: still hot
    assert verdict(health).reason == "GPU 1 is hot: reached 93 °C (limit 90 °C)"
    fake.gpus[1].temperature = 85
    assert verdict(health).healthy


def test_the_limit_can_be_each_gpus_slowdown_threshold() -> None:
    fake = FakeNvml([FakeGpu(slowdown_temperature=84, temperature=84)])
    health = watch(fake, max_temp_c=None)
    assert verdict(health).reason == "GPU 0 is hot: reached 84 °C (limit 84 °C)"


def test_a_lasting_fault_outranks_heat() -> None:
    fake = FakeNvml(2)
    health = watch(fake)
    fake.gpus[0].temperature = 95
    assert verdict(health).transient
    fake.xid(1, 79)
    out = verdict(health)
    assert (out.healthy, out.transient, out.reason) == (False, False, "GPU 1: XID 79 (GPU has fallen off the bus)")


def test_queries_run_every_interval_and_events_on_every_call() -> None:
    clock = Clock()
    fake = FakeNvml(1)
    health = watch(fake, interval_s=10, clock=clock)
    fake.gpus[0].temperature = 99
    assert verdict(health).healthy  # not looked at yet
    fake.xid(0, 79)
    assert verdict(health).reason == "GPU 0: XID 79 (GPU has fallen off the bus)"
    clock.now = 10
    assert verdict(health).reason == "GPU 0: XID 79 (GPU has fallen off the bus)"  # outranks the heat
    assert health.hot == ["GPU 0 is hot: reached 99 °C (limit 90 °C)"]


def test_without_nvml_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(2, fail_init=fake_nvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    health = NvmlHealth(fake)
    assert not health.start()
    assert health.apply([node()]) == [node()]
    assert NvmlHealth.open(fake) is None
    assert NvmlHealth.open(FakeNvml(0)) is None  # no GPU
    monkeypatch.delenv(FAKE_NVML_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if nvidia-ml-py were not installed
    assert load_nvml() is None
    assert NvmlHealth.open() is None


def test_xid_events_unsupported_still_leave_the_other_checks() -> None:
    fake = FakeNvml(1, events_supported=False)
    health = watch(fake)
    fake.xid(0, 79)  # never delivered
    fake.gpus[0].remap_failure = True
    assert verdict(health).reason == "GPU 0: row remapping failed"


def test_it_applies_to_its_node_only() -> None:
    fake = FakeNvml(1)
    health = watch(fake, node="b")
    fake.xid(0, 79)
    out = {n.name: n for n in health.apply([node("a"), node("b")])}
    assert out["a"].healthy
    assert not out["b"].healthy
    lone = watch(FakeNvml(1))
    lone.nvml.xid(0, 79)
    assert not verdict(lone, "whatever").healthy  # the inventory's only node
    several = watch(FakeNvml(1))
    several.nvml.xid(0, 79)
    assert all(n.healthy for n in several.apply([node("x-1"), node("x-2")]))  # neither is this host


def test_it_combines_with_the_health_program() -> None:
    fake = FakeNvml(1)
    gpu = watch(fake)
    program = HealthChecker("echo 'disk full'; exit 1", interval_s=0)
    checks = HealthChecks(program, gpu)
    fake.gpus[0].temperature = 95
    (out,) = checks.apply([node()])
    assert (out.healthy, out.transient, out.reason) == (False, False, "health check: disk full")
    fake.xid(0, 79)
    (out,) = checks.apply([node()])
    assert out.reason == "health check: disk full; GPU 0: XID 79 (GPU has fallen off the bus)"


def test_the_fake_can_live_in_a_json_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "nvml.json"
    state.write_text(json.dumps({"gpus": 4}))
    monkeypatch.setenv(FAKE_NVML_ENV, str(state))
    nvml = load_nvml()
    assert isinstance(nvml, FakeNvml)
    assert gpus.detect_nvidia_gpus() == gpus.GpuInventory(type="H100", count=4)
    health = NvmlHealth.open(interval_s=0)
    assert health is not None
    assert verdict(health).healthy
    state.write_text(json.dumps({"gpus": 4, "xids": [[2, 79]]}))
    assert verdict(health).reason == "GPU 2: XID 79 (GPU has fallen off the bus)"
    gpu = {"temperature": 95}
    state.write_text(json.dumps({"gpus": [{}, gpu, {}, {}], "xids": [[2, 79], [0, 94]]}))
    assert verdict(health).reason == "GPU 2: XID 79 (GPU has fallen off the bus); GPU 0: XID 94 (contained ECC error)"
    assert health.hot == ["GPU 1 is hot: reached 95 °C (limit 90 °C)"]


def test_the_fake_behaves_like_pynvml() -> None:
    lost = fake_nvml.NVMLError(fake_nvml.NVML_ERROR_GPU_IS_LOST)
    assert isinstance(lost, fake_nvml.NVMLError_GpuIsLost)
    assert (lost.value, str(lost)) == (15, "GPU is lost")
    assert fake_nvml.NVMLError_Timeout().value == fake_nvml.NVML_ERROR_TIMEOUT
    fake = FakeNvml(1)
    with pytest.raises(fake_nvml.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    fake.nvmlInit()
    with pytest.raises(fake_nvml.NVMLError_Timeout):
        fake.nvmlEventSetWait(fake.nvmlEventSetCreate(), 100)


# -- the same names as nvidia-ml-py's pynvml, and its wrappers driven over a fake C library --------


def pynvml_names() -> list[str]:
    return [n for n in dir(FakeNvml) if n.startswith(("nvml", "NVML"))]


def test_the_fake_has_pynvmls_names_values_and_parameters() -> None:
    pynvml = pytest.importorskip("pynvml")
    fake = FakeNvml(1)
    for name in pynvml_names():
        real, mine = getattr(pynvml, name), getattr(FakeNvml, name)
        if isinstance(real, type):
            assert issubclass(real, pynvml.NVMLError), name
            if real is not pynvml.NVMLError:
                assert real().value == mine().value, name
        elif callable(real):
            mine_params = list(inspect.signature(getattr(fake, name)).parameters)
            assert list(inspect.signature(real).parameters) == mine_params, name
        else:
            assert real == mine, name


class FakeLibNvml:
    """libnvidia-ml's C functions (those NvmlHealth calls), for pynvml's real wrappers."""

    def __init__(self, pynvml: Any, gpus: int) -> None:
        self.p = pynvml
        self.devices = [pynvml.struct_c_nvmlDevice_t() for _ in range(gpus)]
        self.temperature = [40] * gpus
        self.ecc = [0] * gpus
        self.xids: list[tuple[int, int]] = []
        self.lost: set[int] = set()

    def index(self, handle: Any) -> int:
        address = ctypes.addressof(handle.contents)
        return next(i for i, d in enumerate(self.devices) if ctypes.addressof(d) == address)

    def __getattr__(self, name: str) -> Callable[..., int]:
        p = self.p

        def on_device(fill: Callable[..., None]) -> Callable[..., int]:
            def call(handle: Any, *args: Any) -> int:
                i = self.index(handle)
                if i in self.lost:
                    return int(p.NVML_ERROR_GPU_IS_LOST)
                fill(i, *args)
                return int(p.NVML_SUCCESS)

            return call

        def handle_by_index(index: Any, out: Any) -> int:
            out._obj.contents = self.devices[index.value]
            return 0

        def wait(_set: Any, out: Any, _timeout: Any) -> int:
            if not self.xids:
                return int(p.NVML_ERROR_TIMEOUT)
            gpu, xid = self.xids.pop(0)
            out._obj.device = ctypes.pointer(self.devices[gpu])
            out._obj.eventType, out._obj.eventData = p.nvmlEventTypeXidCriticalError, xid
            return 0

        def set_value(value: Callable[[int], int]) -> Callable[..., None]:
            def fill(i: int, *args: Any) -> None:
                args[-1]._obj.value = value(i)

            return fill

        functions: dict[str, Callable[..., int]] = {
            "nvmlInitWithFlags": lambda flags: 0,
            "nvmlShutdown": lambda: 0,
            "nvmlDeviceGetCount_v2": lambda out: setattr(out._obj, "value", len(self.devices)) or 0,
            "nvmlDeviceGetHandleByIndex_v2": handle_by_index,
            "nvmlDeviceGetIndex": on_device(set_value(lambda i: i)),
            "nvmlDeviceGetTemperature": on_device(set_value(lambda i: self.temperature[i])),
            "nvmlDeviceGetTotalEccErrors": on_device(set_value(lambda i: self.ecc[i])),
            "nvmlDeviceGetRetiredPagesPendingStatus": lambda h, out: int(p.NVML_ERROR_NOT_SUPPORTED),
            "nvmlDeviceGetRemappedRows": on_device(lambda i, *outs: None),
            "nvmlDeviceGetSupportedEventTypes": on_device(set_value(lambda i: p.nvmlEventTypeAll)),
            "nvmlEventSetCreate": lambda out: 0,
            "nvmlDeviceRegisterEvents": on_device(lambda i, types, event_set: None),
            "nvmlEventSetWait_v2": wait,
            "nvmlEventSetFree": lambda event_set: 0,
        }
        if name not in functions:
            raise AttributeError(name)
        return functions[name]


def test_it_drives_pynvmls_real_wrappers(monkeypatch: pytest.MonkeyPatch) -> None:
    pynvml = pytest.importorskip("pynvml")
    lib = FakeLibNvml(pynvml, 4)
    monkeypatch.setattr(pynvml, "nvmlLib", lib)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    health = NvmlHealth(pynvml, interval_s=0)
    assert health.start()
    assert verdict(health).healthy
    lib.xids.append((1, 79))
    lib.xids.append((2, 13))
    assert verdict(health).reason == "GPU 1: XID 79 (GPU has fallen off the bus)"
    lib.ecc[0] = 1
    lib.temperature[3] = 97
    lib.lost.add(2)
    assert verdict(health).reason == (
        "GPU 1: XID 79 (GPU has fallen off the bus); GPU 0: uncorrected ECC errors rose from 0 to 1; "
        "GPU 2 is lost (fallen off the bus)"
    )
    assert health.hot == ["GPU 3 is hot: reached 97 °C (limit 90 °C)"]
    health.close()
