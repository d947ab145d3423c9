"""Issue 16 items 2, 5 and 7 (months) through the real server: bounds answered 422 in words,
and stored rows from before the bounds (written straight into the database here) break no
scheduling pass, listing, heartbeat or bill."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DataError

from suanli.core.metering import month_of
from suanli.store.models import Job, TariffVersion
from tests.db_support import backend
from tests.integration.conftest import Net, dashboard
from tests.integration.test_metering import report, running

H100_JOB = {"run": "train", "resources": {"accelerators": "H100:8"}}


def submit(net: Net, spec: dict[str, object]) -> str:
    response = net.http.post("/api/v1/jobs", json={"spec": spec})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def store_time_limit(net: Net, job_id: str, seconds: float) -> None:
    """What a job submitted before limits were checked holds (bypassing validation)."""
    with net.control.db.session() as session:
        job = session.scalars(select(Job).where(Job.id == job_id)).one()
        job.spec = {**job.spec, "time_limit": seconds}


def test_a_time_limit_over_a_year_is_refused_with_the_limit(net: Net) -> None:
    for limit, shown in (("3000000d", "3000000d"), (1e308, "1e+308")):
        response = net.http.post("/api/v1/jobs", json={"spec": {**H100_JOB, "time_limit": limit}})
        assert response.status_code == 422, response.text
        assert f"time_limit {shown} is over the limit of 365d" in response.json()["detail"]
    response = net.http.post(
        "/api/v1/jobs",
        content='{"spec": {"run": "x", "time_limit": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text


def test_stored_huge_time_limits_break_no_pass_and_no_listing(net: Net) -> None:
    net.fake_agent("tianjin-gaocun")
    old_running = submit(net, H100_JOB)
    net.cycle()
    net.cycle()
    assert net.state(old_running) == "RUNNING"
    store_time_limit(net, old_running, 3_000_000 * 86400.0)  # running since before the bound
    old_pending = submit(net, H100_JOB)
    store_time_limit(net, old_pending, 1e308)
    fresh = submit(net, H100_JOB)

    net.cycle()

    assert net.state(fresh) in ("SCHEDULED", "STARTING", "RUNNING")
    waiting = net.client.job(old_pending)
    assert waiting.state.value == "PENDING"
    assert waiting.reason.startswith("cannot be scheduled: time_limit 1e+308 is over the limit of 365d")
    for path in ("/api/v1/sites", "/api/v1/nodes", "/metrics", f"/api/v1/jobs/{old_running}/explain"):
        assert net.http.get(path).status_code == 200, path
    explained = net.http.get(f"/api/v1/jobs/{old_pending}/explain")
    assert explained.status_code == 200
    assert explained.json()["reason"].startswith("cannot be scheduled")
    with dashboard(net) as pages:
        for path in ("/", "/nodes", f"/jobs/{old_running}", f"/jobs/{old_pending}"):
            assert pages.get(path).status_code == 200, path


def test_a_nan_or_unbounded_tariff_is_refused_at_the_api(net: Net) -> None:
    for body in ('{"gpu_hour": {"H100": NaN}}', '{"cpu_hour": Infinity}'):
        response = net.http.post(
            "/api/v1/tariffs",
            content=f'{{"site": "tianjin-gaocun", "tariff": {body}}}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
    assert (
        "gpu_hour of H100 must be a price in CNY per hour, like 28, not NaN"
        in net.http.post(
            "/api/v1/tariffs",
            content='{"site": "tianjin-gaocun", "tariff": {"gpu_hour": {"H100": NaN}}}',
            headers={"content-type": "application/json"},
        ).json()["detail"]
    )
    for tariff in (
        {"gpu_hour": {"H100": -1}},
        {"gpu_hour": {"H100": 2e6}},
        {"periods": [{"hours": "08-11", "factor": 1e9}]},
    ):
        response = net.http.post("/api/v1/tariffs", json={"site": "tianjin-gaocun", "tariff": tariff})
        assert response.status_code == 422, (tariff, response.text)
    response = net.http.post("/api/v1/jobs", json={"spec": {**H100_JOB, "placement": {"max_price_per_gpu_hour": -5}}})
    assert response.status_code == 422


def test_a_stored_nan_tariff_never_breaks_a_heartbeat_and_a_valid_one_takes_effect(net: Net) -> None:
    agent, _ = net.fake_agent("tianjin-gaocun")
    job_id, attempt_id = running(net, "run: train\nresources: {accelerators: H100:1}\n")
    report(agent, "tianjin-gaocun", attempt_id, 3600)  # an hour at 28 CNY
    nan = TariffVersion(
        site="tianjin-gaocun",
        effective_from=net.clock.now(),
        tariff={"gpu_hour": {"H100": float("nan")}},
        created_at=net.clock.now(),
        created_by="admin",
    )
    stored = backend() == "sqlite"
    if stored:
        with net.control.db.session() as session:  # posted before prices were checked
            session.add(nan)
    else:  # PostgreSQL's json type refuses NaN itself: such a row cannot exist there
        with pytest.raises(DataError), net.control.db.session() as session:
            session.add(nan)
    net.clock.advance(1800)
    report(agent, "tianjin-gaocun", attempt_id, 3600 + 1800)  # raised 500 before the fix
    net.cycle()
    assert net.state(job_id) == "RUNNING"
    assert net.client.job(job_id).cost_cny == "42.000000"  # the version before the bad one holds
    versions = net.http.get("/api/v1/tariffs", params={"site": "tianjin-gaocun"})
    assert versions.status_code == 200
    if stored:
        assert "not used for pricing" in versions.json()["items"][-1]["problem"]

    net.client.set_tariff("tianjin-gaocun", {"gpu_hour": {"H100": 40}}, net.clock.now())
    net.clock.advance(1800)
    report(agent, "tianjin-gaocun", attempt_id, 3600 + 3600)
    assert net.client.job(job_id).cost_cny == str(Decimal("42") + Decimal("20")) + ".000000"
    assert net.client.invoice("bj-ai", month_of(net.clock.now())).total_cny == "62.000000"


def test_months_outside_the_billing_range_are_422_everywhere(net: Net) -> None:
    for path in (
        "/api/v1/usage?month=0001-01",
        "/api/v1/usage/sites?month=0001-01",
        "/api/v1/invoices/bj-ai/0001-01",
        "/api/v1/invoices/bj-ai/0001-01?format=csv",
        "/api/v1/invoices/bj-ai/9999-12?format=html",
        "/api/v1/usage?from=0001-01-01T00:00:00%2B14:00",
        "/api/v1/usage?to=9999-12-31T23:59:59-14:00",
    ):
        response = net.http.get(path)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json") or "detail" in response.json()
    assert "from 2000-01 to 2999-12" in net.http.get("/api/v1/usage?month=0001-01").json()["detail"]
    with dashboard(net) as pages:
        page = pages.get("/usage", params={"month": "0001-01", "tenant": "bj-ai"})
        assert page.status_code == 422
        assert "2000-01 to 2999-12" in page.text
    future = (net.clock.now() + timedelta(days=400)).isoformat()
    assert (
        net.http.post(
            "/api/v1/tariffs",
            json={"site": "tianjin-gaocun", "tariff": {"gpu_hour": {"H100": 1}}, "effective_from": future},
        ).status_code
        == 201
    )
    assert (
        net.http.post(
            "/api/v1/tariffs",
            json={"site": "tianjin-gaocun", "tariff": {}, "effective_from": "9999-12-31T23:59:59-14:00"},
        ).status_code
        == 422
    )
