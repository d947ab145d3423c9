"""The job list's filters mean the same through the API and on the dashboard: one function
(``app/jobs.py:filter_jobs``) serves both, and a name filter is a prefix of the job's name."""

from __future__ import annotations

from suanli.core.spec import parse_job_spec
from tests.integration.conftest import Net, dashboard

NAMES = ["llama", "llama-ft-2", "llama_x", "llamaZx", "alpaca"]


def _submit(net: Net) -> dict[str, str]:
    return {n: net.client.submit(parse_job_spec(f"name: {n}\nrun: x\n", "test")).id for n in NAMES}


def test_a_name_filter_is_a_prefix_in_the_api_and_on_the_dashboard(net: Net) -> None:
    ids = _submit(net)
    cases = {
        "llama": {"llama", "llama-ft-2", "llama_x", "llamaZx"},
        "llama_": {"llama_x"},  # '_' is a character here, not a wildcard
        "llama-ft-2": {"llama-ft-2"},
        "alp": {"alpaca"},
        "nobody": set(),
    }
    with dashboard(net) as pages:
        for prefix, expected in cases.items():
            api = {j.name for j in net.client.jobs(name=prefix, limit=100).items}
            assert api == expected, prefix
            page = pages.get("/jobs", params={"name": prefix})
            assert page.status_code == 200
            shown = {n for n in NAMES if f"/jobs/{ids[n]}" in page.text}
            assert shown == expected, prefix


def test_the_api_and_the_dashboard_agree_on_state_and_site(net: Net) -> None:
    ids = _submit(net)
    net.client.cancel(ids["alpaca"])
    api = {j.id for j in net.client.jobs(state="CANCELLED").items}
    with dashboard(net) as pages:
        page = pages.get("/jobs", params={"state": "CANCELLED"})
    shown = {i for i in ids.values() if f"/jobs/{i}" in page.text}
    assert api == shown == {ids["alpaca"]}
