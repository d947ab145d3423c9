"""suanli on a real NVIDIA GPU: the agent's NVML code against the real driver, and a job that
computes on the GPU through a small network (server, scheduler, agent with the local backend).

Run where there is a GPU: ``make test-gpu``, or ``bash scripts/gpu-check.sh``. Elsewhere these
fail (see conftest.py); ``make test`` leaves them out.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from suanli.agent.backends.gpus import detect_nvidia_gpus, short_gpu_name, this_machine
from suanli.agent.backends.local import LocalBackend
from suanli.agent.nvml_gpus import FAKE_NVML_ENV, load_nvml
from suanli.agent.nvml_health import NvmlHealth
from suanli.core.protocol import NodeReport
from suanli.core.spec import parse_job_spec
from tests.gpu.conftest import GpuProbe
from tests.integration.conftest import Net, start_net

pytestmark = pytest.mark.gpu

HEALTH_LOG = "suanli.agent.gpu_health"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture(autouse=True)
def _real_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pynvml, never a fake named in the environment."""
    monkeypatch.delenv(FAKE_NVML_ENV, raising=False)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _model(name: str) -> str | None:
    """The model in a marketing name, read independently of suanli: "NVIDIA H100 80GB HBM3" →
    "H100", "NVIDIA H200" → "H200", "NVIDIA A800-SXM4-80GB" → "A800"; None if it has none."""
    found = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name.replace("-", " "))
    return found.group(1) if found else None


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _optional(nvml: Any, query: Callable[..., Any], *args: Any) -> Any:
    """``query(*args)``, or None where NVML says this GPU or driver does not support it; any other
    NVML error fails the test."""
    try:
        return query(*args)
    except nvml.NVMLError as exc:
        if _code(exc) not in (nvml.NVML_ERROR_NOT_SUPPORTED, getattr(nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13)):
            raise
        return None


def test_nvml_reads_what_the_agent_reads_on_every_gpu(gpu: GpuProbe) -> None:
    """The NVML calls suanli makes (nvml_gpus.py, nvml_health.py, gpus.py) answer on the real
    driver with the types the code expects."""
    nvml = load_nvml()
    assert nvml is not None
    assert getattr(nvml, "__name__", "") == "pynvml", "load_nvml() must give the real pynvml"
    nvml.nvmlInit()
    try:
        count = int(nvml.nvmlDeviceGetCount())
        assert count == gpu.count >= 1
        lines = [f"driver {gpu.driver}, {count} GPU(s)"]
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = _text(nvml.nvmlDeviceGetName(handle))
            assert name == gpu.names[index]
            assert int(nvml.nvmlDeviceGetIndex(handle)) == index  # how XID events name their GPU

            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            assert memory.total >= 8 * 2**30, f"GPU {index} reports only {memory.total} bytes of memory"
            assert 0 <= memory.used <= memory.total

            temp = int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            assert 5 <= temp < 100, f"GPU {index} reads {temp} °C"
            slowdown = _optional(
                nvml, nvml.nvmlDeviceGetTemperatureThreshold, handle, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            )
            if slowdown is not None:
                assert temp < int(slowdown) <= 130

            uncorrected = _optional(  # None: ECC is off (consumer cards, or disabled)
                nvml,
                nvml.nvmlDeviceGetTotalEccErrors,
                handle,
                nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nvml.NVML_VOLATILE_ECC,
            )
            if uncorrected is not None:
                assert int(uncorrected) >= 0

            rows = _optional(nvml, nvml.nvmlDeviceGetRemappedRows, handle)  # Ampere and later
            if rows is not None:
                assert len(rows) == 4, rows
                _corrected, _uncorrected, pending, failure = (int(x) for x in rows)
                assert (pending, failure) == (0, 0), f"GPU {index} has row remapping pending or failed: {rows}"
            retired = _optional(nvml, nvml.nvmlDeviceGetRetiredPagesPendingStatus, handle)  # before Ampere
            if retired is not None:
                assert int(retired) != nvml.NVML_FEATURE_ENABLED, f"GPU {index} has retired pages pending"

            events = int(nvml.nvmlDeviceGetSupportedEventTypes(handle))
            xid = bool(events & nvml.nvmlEventTypeXidCriticalError)
            lines.append(
                f"GPU {index}: {name}, {memory.total / 2**30:.1f} GiB ({memory.used / 2**30:.1f} used), "
                f"{temp} °C (slowdown threshold {slowdown}), uncorrected volatile ECC errors {uncorrected}, "
                f"remapped rows {rows}, retired pages pending {retired}, XID events {'yes' if xid else 'no'}"
            )
        print("\n".join(lines))
    finally:
        nvml.nvmlShutdown()


def test_the_agent_finds_the_gpus_by_their_type(gpu: GpuProbe) -> None:
    found = detect_nvidia_gpus()
    assert found is not None, "detect_nvidia_gpus() found nothing on a machine where NVML lists GPUs"
    assert found.count == gpu.count
    assert found.type == short_gpu_name(gpu.names[0])
    model = _model(gpu.names[0])
    if model is not None:  # e.g. "NVIDIA H200" → H200, the name a job asks for
        assert found.type == model, f"{gpu.names[0]!r} is reported as {found.type!r}, not {model!r}"
    if shutil.which("nvidia-smi"):  # and nvidia-smi, a second witness, agrees
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert [line.strip() for line in smi.stdout.splitlines() if line.strip()] == gpu.names

    node = this_machine("gpu-node")
    assert (node.gpu_type, node.gpus_total, node.gpu_source) == (found.type, found.count, "nvml")
    assert node.cpus >= 1
    assert node.memory > 0
    print(f"this machine: {node.gpus_total} × {node.gpu_type} ({gpu.names[0]}), {node.cpus:g} CPUs, {node.memory} GiB")


def test_healthy_gpus_are_judged_healthy(gpu: GpuProbe, caplog: pytest.LogCaptureFixture) -> None:
    """The health watcher starts on the real driver, queries every GPU without a failed call, and
    leaves a healthy node as it is, with the default limits and with the GPUs' own slowdown
    thresholds."""
    pynvml = load_nvml()
    assert pynvml is not None
    node = NodeReport(name="gpu-node", gpu_type=short_gpu_name(gpu.names[0]), gpus_total=gpu.count, cpus=16, memory=64)
    with caplog.at_level(logging.INFO, logger=HEALTH_LOG):
        for max_temp_c in (90.0, None):
            health = NvmlHealth.open(pynvml, max_temp_c=max_temp_c, interval_s=0)
            assert health is not None, "NvmlHealth.open() gave nothing on a machine where NVML lists GPUs"
            try:
                for _ in range(3):  # each apply polls: events, ECC, pending repairs, temperature
                    assert health.apply([node]) == [node]
                assert health.faults == []
                assert health.hot == []
                assert [g.index for g in health._gpus] == list(range(gpu.count))
                for g in health._gpus:
                    assert g.ecc_baseline is None or g.ecc_baseline >= 0
                    assert 40 <= g.limit_c <= 130
                    assert not g.lost
            finally:
                health.close()
    problems = [r.getMessage() for r in caplog.records if r.name == HEALTH_LOG and r.levelno >= logging.WARNING]
    assert problems == [], "NVML calls failed on the real driver:\n" + "\n".join(problems)
    print("\n".join(r.getMessage() for r in caplog.records if r.name == HEALTH_LOG))


def test_xid_events_can_be_watched(gpu: GpuProbe) -> None:
    """The watcher registers for XID critical-error events on every GPU, and reading the (empty)
    queue answers NVML's timeout, which the agent takes for 'nothing happened'."""
    pynvml = load_nvml()
    assert pynvml is not None
    health = NvmlHealth.open(pynvml, interval_s=0)
    assert health is not None
    try:
        assert health._events is not None, "no GPU here reports XID events to NVML"
        with pytest.raises(pynvml.NVMLError) as caught:
            pynvml.nvmlEventSetWait(health._events, 0)
        assert _code(caught.value) == pynvml.NVML_ERROR_TIMEOUT
        health.poll()
        assert health.faults == []
    finally:
        health.close()


JOB = """\
import os, time
import torch

visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
print(f"CUDA_VISIBLE_DEVICES={visible}", flush=True)
assert torch.cuda.is_available(), "torch sees no GPU"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s)", flush=True)
print(f"device={torch.cuda.get_device_name(0)}", flush=True)
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
c = a @ b  # warm-up
torch.cuda.synchronize()
t0 = time.perf_counter()
for _ in range(10):
    c = a @ b
torch.cuda.synchronize()
seconds = (time.perf_counter() - t0) / 10
ref = a[:256].float() @ b.float()
err = ((c[:256].float() - ref).abs().max() / ref.abs().max()).item()
print(f"bf16 matmul {n}x{n}x{n}: {2 * n**3 / seconds / 1e12:.0f} TFLOP/s, max relative error {err:.2g}", flush=True)
assert err < 0.02, err
print("job ok", flush=True)
"""


def _network(gpu_type: str, count: int) -> str:
    return textwrap.dedent(f"""\
        regions: [tianjin]
        sites:
          - name: gpu-site
            region: tianjin
            latency_ms: {{tianjin: 0.2}}
            nodes: [{{name: gpu-node, gpus: {gpu_type}:{count}, cpus: 2, memory: 4}}]
        tenants:
          - {{name: tj-ai, home_region: tianjin}}
        """)


def _wait(net: Net, job_id: str, timeout_s: float) -> str:
    """Cycle the network until the job ends; its state (the caller checks it)."""
    deadline = time.monotonic() + timeout_s
    while (state := net.state(job_id)) not in TERMINAL:
        if time.monotonic() > deadline:
            break
        net.cycle()
        time.sleep(0.05)
    return state


@pytest.mark.timeout(180)
def test_a_job_computes_on_the_gpu_the_agent_gives_it(
    gpu: GpuProbe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server, scheduler and an agent whose local backend finds the GPUs through NVML: a job
    asking for one GPU of this machine's type runs torch on it, with CUDA_VISIBLE_DEVICES set by
    the agent to the GPU it was given."""
    assert importlib.util.find_spec("torch") is not None, f"torch is not installed for {sys.executable}"
    gpu_type = short_gpu_name(gpu.names[0])
    # Whatever the machine had, the job must see the agent's value, not this one.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "not-set-by-the-agent")
    script = tmp_path / "gpu_job.py"
    script.write_text(JOB)

    with start_net(tmp_path / "net", _network(gpu_type, gpu.count)) as net:
        backend = LocalBackend(net.tmp / "sites" / "gpu-site", node_name="gpu-node", kill_grace_s=2.0)
        agent = net.agent("gpu-site", backend)  # no declared nodes: the backend reports this machine
        health = NvmlHealth(load_nvml(), interval_s=0)
        agent.health = health
        try:
            assert [(n.gpu_type, n.gpus_total, n.gpu_source) for n in backend.inventory()] == [
                (gpu_type, gpu.count, "nvml")
            ]
            net.cycle()
            [node] = net.client.nodes("gpu-site")
            assert (node.gpu_type, node.gpus_total, node.healthy) == (gpu_type, gpu.count, True), node
            assert node.state == "idle", node

            spec = parse_job_spec(
                f"name: gpu-smoke\nrun: {sys.executable} {script}\nresources: {{accelerators: {gpu_type}:1}}\n"
            )
            job = net.client.submit(spec).id
            state = _wait(net, job, timeout_s=150)
            out = net.client.job(job)
            logs = "".join(net.client.logs(job))
            print(logs)
            assert state == "SUCCEEDED", f"job {state}: {out.reason}\n--- its log ---\n{logs}"

            [attempt] = out.attempts
            assert attempt.gpu_type == gpu_type
            [placed] = attempt.nodes
            assert placed.node == "gpu-node"
            assert len(placed.gpu_indices) == 1
            assert 0 <= placed.gpu_indices[0] < gpu.count
            assert f"CUDA_VISIBLE_DEVICES={placed.gpu_indices[0]}\n" in logs
            assert f"device={gpu.names[placed.gpu_indices[0]]}\n" in logs
            assert "job ok\n" in logs
            assert health.faults == []
            assert health.hot == []
            [node] = net.client.nodes("gpu-site")
            assert (node.healthy, node.state) == (True, "idle"), node
        finally:
            health.close()
