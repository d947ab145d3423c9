"""`suanli up` in-process: a restart on the same home resumes the work it had."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from suanli.app.settings import Settings
from suanli.core.network import parse_network
from suanli.core.spec import parse_job_spec
from suanli.launch.network import LocalNetwork
from suanli.sdk import Client

NETWORK = parse_network(
    "regions: [r]\nsites:\n  - name: one\n    region: r\n    nodes: [{name: n1, gpus: H100:2, cpus: 8, memory: 16}]\n"
    "scheduling: {retry_backoff: 1s}\n"  # the lost attempt's retry waits 1 s, not the default 10
)


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_restart_requeues_and_resumes_from_checkpoint(tmp_path: Path) -> None:
    script = (
        'if [ -f "$SUANLI_CHECKPOINT_DIR/ckpt" ]; then echo resumed attempt $SUANLI_ATTEMPT; '
        'else touch "$SUANLI_CHECKPOINT_DIR/ckpt"; echo started; sleep 60; fi'
    )
    first = LocalNetwork(Settings(home=tmp_path, port=0, heartbeat_s=0.5), NETWORK)
    first.start()
    try:
        first.wait_online()
        with Client(first.url, token=first.admin_token) as client:
            job = client.submit(parse_job_spec(f"run: '{script}'\n"))
            wait_for(lambda: "started" in "".join(client.logs(job.id)))
    finally:
        first.stop()

    second = LocalNetwork(Settings(home=tmp_path, port=0, heartbeat_s=0.5), NETWORK)
    second.start()
    try:
        second.wait_online()
        with Client(second.url, token=second.admin_token) as client:
            after_stop = client.job(job.id)
            assert after_stop.attempts[0].state.value == "LOST"
            assert "shut down" in after_stop.attempts[0].message
            wait_for(lambda: client.job(job.id).state.value == "SUCCEEDED")
            assert "resumed attempt 2" in "".join(client.logs(job.id))
    finally:
        second.stop()
