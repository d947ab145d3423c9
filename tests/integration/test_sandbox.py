"""The local backend's sandbox, end to end: tenant B's jobs try to reach what they must not
(bench/escape_tries.py: the server's home, the agent's /proc, tenant A's running job and its
secret, other attempts' folders, writes outside their own) and none gets through; a memory hog
ends FAILED saying it exceeded its memory; ``network: none`` has no way out.

Needs bubblewrap (``make sandbox`` installs it; CI runs it): without it the test fails under
CI=true and is skipped elsewhere, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from bench.escape_tries import VICTIM_RUN, VICTIM_SECRET, Where, escaped, pwned, tries

from suanli.agent.backends.local_limits import Cgroups
from suanli.core.spec import job_spec_from_data
from suanli.sdk import Client
from tests.integration.conftest import Net


def _need_bwrap() -> None:
    if shutil.which("bwrap"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI must install bubblewrap (make sandbox) for the sandbox tests")
    pytest.skip("bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap")


def _done(net: Net, ids: list[str]) -> bool:
    return all(net.state(i) in ("SUCCEEDED", "FAILED", "CANCELLED") for i in ids)


def test_no_escape_try_gets_through(net: Net) -> None:
    _need_bwrap()
    net.local_agent("beijing")
    victim = net.client.submit(
        job_spec_from_data({"name": "victim", "run": VICTIM_RUN, "secrets": {"VICTIM_KEY": VICTIM_SECRET}})
    )
    net.pump(lambda: "ready" in "".join(net.client.logs(victim.id)))
    rival = net.user("eve", tenant="rival")
    where = Where(server_home=net.tmp / "home", site_dir=net.tmp / "sites" / "beijing", agent_pid=os.getpid())
    forbidden = [VICTIM_SECRET, net.admin_token, net.control.site_token_path("beijing").read_text().strip()]
    with Client(net.url, token=rival) as eve:
        jobs = {
            name: eve.submit(job_spec_from_data({"name": "try", "run": run})).id for name, run in tries(where).items()
        }
        net.pump(lambda: _done(net, list(jobs.values())), timeout=45)
        got_through = {}
        for name, job_id in jobs.items():
            output = "".join(eve.logs(job_id))
            assert net.state(job_id) == "SUCCEEDED", f"{name}: {output}"
            found = escaped(output, forbidden)
            if found:
                got_through[name] = found
    assert got_through == {}
    assert pwned([net.tmp]) == []
    assert net.state(victim.id) == "RUNNING", "tenant A's job ran beside the tries all along"
    net.client.cancel(victim.id)


def test_a_memory_hog_fails_saying_it_exceeded_its_memory(net: Net) -> None:
    _need_bwrap()
    net.local_agent("beijing")
    hog = 'python -c "b = []\nwhile True: b.append(bytearray(16 * 2**20))"'
    job = net.client.submit(job_spec_from_data({"name": "hog", "run": hog, "resources": {"memory": 0.25}}))
    net.pump(lambda: _done(net, [job.id]), timeout=45)
    view = net.client.job(job.id)
    assert view.state.value == "FAILED"
    message = view.attempts[-1].message
    if Cgroups.probe("suanli-test-probe").memory is not None:
        assert message.startswith("killed: exceeded 0.25 GiB memory"), message
    else:  # RLIMIT_AS: the allocation fails inside the job (docs/operators.md)
        assert "MemoryError" in "".join(net.client.logs(job.id)), message


def test_network_none_reaches_nothing_but_loopback(net: Net, tmp_path: Path) -> None:
    _need_bwrap()
    net.local_agent("beijing")
    port = net.url.rsplit(":", 1)[1]
    probe = (
        f"python -c \"import socket\ntry:\n socket.create_connection(('127.0.0.1', {port}), 2)\n print('REACHED')\n"
        "except OSError as e:\n print('refused', e)\""
    )
    closed = net.client.submit(job_spec_from_data({"name": "closed", "run": probe, "network": "none"}))
    opened = net.client.submit(job_spec_from_data({"name": "open", "run": probe}))
    net.pump(lambda: _done(net, [closed.id, opened.id]), timeout=45)
    assert "REACHED" not in "".join(net.client.logs(closed.id))
    assert "REACHED" in "".join(net.client.logs(opened.id)), "network: any (the default) reaches the server"


PRELOAD_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {
    if (geteuid() != 0) return;
    int fd = open("%s", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) { write(fd, "root\n", 5); close(fd); }
}
"""


def test_a_jobs_environment_never_reaches_a_process_with_privileges(net: Net, tmp_path: Path) -> None:
    """A tenant's ``LD_PRELOAD`` (a library it left in its own folder) would run as root in the
    supervisor, bubblewrap or setpriv if the job's environment were theirs: it reaches the job
    alone, as the job's unprivileged user."""
    _need_bwrap()
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs a C compiler (gcc) for the LD_PRELOAD escape try")
        pytest.skip("no C compiler to build the LD_PRELOAD library")
    marker = tmp_path / "ran-as-root"
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    source = lib_dir / "evil.c"
    source.write_text(PRELOAD_C % marker)
    lib = lib_dir / "evil.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    lib_dir.chmod(0o755)
    tmp_path.chmod(0o777)  # the job's user may create the marker too: only root must not
    net.local_agent("beijing")
    rival = net.user("eve", tenant="rival")
    with Client(net.url, token=rival) as eve:
        job = eve.submit(
            job_spec_from_data(
                {"name": "preload", "run": 'echo "preload=$LD_PRELOAD uid=$(id -u)"', "envs": {"LD_PRELOAD": str(lib)}}
            )
        )
        net.pump(lambda: _done(net, [job.id]), timeout=45)
        output = "".join(eve.logs(job.id))
    assert net.state(job.id) == "SUCCEEDED", output
    assert f"preload={lib}" in output, "the job itself gets its environment"
    assert "uid=0" not in output
    assert not marker.exists(), "the job's LD_PRELOAD ran in a process as root"
