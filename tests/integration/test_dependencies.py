"""Job dependencies (``after:``, Slurm's ``--dependency``) on the ManualClock with a fake agent:
a job waits for the jobs it names, starts once they ended as it asked, and ends CANCELLED
when they ended otherwise; another tenant's job cannot be named."""

from __future__ import annotations

import pytest

from suanli.core.spec import parse_job_spec
from suanli.sdk import Client
from suanli.sdk.errors import ApiError
from tests.integration.conftest import Net


def _running_attempt(net: Net, job_id: str) -> int:
    net.pump(lambda: net.state(job_id) == "RUNNING", timeout=10)
    return net.client.job(job_id).attempts[-1].id


def test_a_job_waits_for_its_dependencies_and_starts_or_ends_as_they_did(net: Net) -> None:
    _, fake = net.fake_agent("beijing")
    a = net.client.submit(parse_job_spec("run: prepare\n"))
    first = _running_attempt(net, a.id)
    b = net.client.submit(parse_job_spec(f"run: train\nafter: [{a.id}]\n"))
    failing = net.client.submit(parse_job_spec("run: flaky\n"))
    c = net.client.submit(parse_job_spec(f"run: report\nafter: ['{failing.id}']\n"))
    d = net.client.submit(parse_job_spec(f"run: clean-up\nafter: [{{job: {failing.id}, when: notok}}]\n"))
    doomed = _running_attempt(net, failing.id)
    net.cycle()

    # B waits while A runs: never offered to the scheduler, and says for what.
    assert net.state(b.id) == "PENDING"
    assert net.client.job(b.id).reason == f"waiting for job {a.id} (afterok)"
    explained = net.client.explain(b.id)
    assert explained.reason == f"waiting for job {a.id} (afterok)"
    assert explained.after == [f"job {a.id} (afterok): RUNNING"]
    assert net.client.job(d.id).reason == f"waiting for job {failing.id} (afternotok)"

    fake.finish(first, 0)  # A succeeds: B starts
    net.cycle()
    assert net.state(a.id) == "SUCCEEDED"
    _running_attempt(net, b.id)
    assert net.client.explain(b.id).after == [f"job {a.id} (afterok): SUCCEEDED"]

    fake.finish(doomed, 3)  # the failing job fails: C can never start, D starts
    net.cycle()
    net.cycle()
    assert net.state(failing.id) == "FAILED"
    out = net.client.job(c.id)
    assert out.state.value == "CANCELLED"
    assert out.reason == f"dependency never satisfied: job {failing.id} ended FAILED (afterok)"
    assert out.attempts == []
    _running_attempt(net, d.id)


def test_an_incremental_pass_does_not_place_a_waiting_job(net: Net) -> None:
    net.fake_agent("beijing")
    a = net.client.submit(parse_job_spec("run: prepare\n"))
    b = net.client.submit(parse_job_spec(f"run: train\nafter: ['{a.id}:any']\n"))
    result = net.control.tick(full=False)
    assert result.placed == 1
    assert net.state(b.id) == "PENDING"
    assert net.client.job(b.id).reason == f"waiting for job {a.id} (afterany)"
    net.client.cancel(a.id)  # ended in any way: B may start
    net.control.tick(full=False)  # a cancel makes the next pass a full one
    assert net.state(b.id) == "SCHEDULED"


def test_a_dependency_on_another_tenants_job_is_refused_as_absent(net: Net) -> None:
    with (
        Client(net.url, token=net.user("alice", tenant="bj-ai")) as alice,
        Client(net.url, token=net.user("eve", tenant="rival")) as eve,
    ):
        theirs = alice.submit(parse_job_spec("run: secret-work\n"))
        with pytest.raises(ApiError) as refused:
            eve.submit(parse_job_spec(f"run: x\nafter: [{theirs.id}]\n"))
        with pytest.raises(ApiError) as missing:
            eve.submit(parse_job_spec("run: x\nafter: [zzzzzzzz]\n"))
        assert refused.value.status == missing.value.status == 422
        assert str(refused.value).replace(theirs.id, "ID") == str(missing.value).replace("zzzzzzzz", "ID")
        assert f"no job '{theirs.id}'" in str(refused.value)
        ok = alice.submit(parse_job_spec(f"run: x\nafter: [{theirs.id}]\n"))
        assert ok.state.value == "PENDING"
