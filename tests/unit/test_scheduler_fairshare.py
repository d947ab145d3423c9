"""Fair-share inputs: decayed usage, shares and the factor, and the network's policy section."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from suanli.app.fairshare import decayed_gpu_seconds, quotas_of
from suanli.core.errors import SpecError
from suanli.core.network import parse_network
from suanli.core.scheduler import Policy, TenantShare, decay, shares
from suanli.core.spec import parse_job_spec

NOW = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)


def test_decayed_usage_is_the_integral_of_the_decay() -> None:
    start, end = NOW - timedelta(hours=2), NOW - timedelta(hours=1)
    # With a very long half-life, usage is just GPU-seconds.
    assert decayed_gpu_seconds(8, start, end, NOW, 1e12) == pytest.approx(8 * 3600, rel=1e-6)
    # With a one-hour half-life: ∫ from 1 h to 2 h ago of 2^(-t/h) = h/ln2 · (1/2 - 1/4).
    assert decayed_gpu_seconds(1, start, end, NOW, 3600) == pytest.approx(3600 / math.log(2) * 0.25)
    assert decayed_gpu_seconds(4, end, start, NOW, 3600) == 0.0
    assert decay(100.0, 3600, 3600) == pytest.approx(50.0)


def test_shares_use_the_dominant_gpu_type() -> None:
    tenants = {
        "a": TenantShare(weight=1, usage={"H100": 900, "910B": 10}),
        "b": TenantShare(weight=3, usage={"H100": 100, "910B": 990}),
    }
    fair = shares(tenants)
    assert fair.share == {"a": 0.25, "b": 0.75}
    assert fair.used == {"a": pytest.approx(0.9), "b": pytest.approx(0.99)}
    assert fair.over_share("a")
    assert fair.over_share("b")
    assert fair.factor("a") == pytest.approx(2 ** (-0.9 / 0.25))
    assert shares({}, ["new"]).factor("new") == 1.0


def test_network_scheduling_section_and_quotas() -> None:
    net = parse_network(
        "scheduling: {aging_per_hour: 1, usage_half_life: 1d, preempt_after: 2m, preemption: false}\n"
        "tenants: [{name: a, weight: 2, max_gpus: 16, max_gpus_per_site: 8}]\n"
    )
    policy = Policy.from_decl(net.scheduling)
    assert (policy.aging_per_hour, policy.usage_half_life_s, policy.preempt_after_s) == (1, 86400, 120)
    assert policy.preemption is False
    assert quotas_of(net)["a"].max_gpus_per_site == 8
    with pytest.raises(SpecError):
        parse_network("scheduling: {preempt_aftr: 2m}\n")


def test_spec_placement_optimize() -> None:
    assert parse_job_spec("run: x\n").placement.optimize == "balanced"
    assert parse_job_spec("run: x\nplacement: {optimize: cost}\n").placement.optimize == "cost"
    with pytest.raises(SpecError):
        parse_job_spec("run: x\nplacement: {optimize: cheapest}\n")
