"""The job list's filters mean the same through the API and on the dashboard: one function
(``app/jobs.py:filter_jobs``) serves both, and a name filter is a prefix of the job's name."""

from __future__ import annotations

from suanli.core.spec import parse_job_spec
from suanli.sdk import Client
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


def test_each_job_records_its_submitter_and_lists_by_user(net: Net) -> None:
    """``JobOut.user`` is the authenticated submitter (arrays' tasks too); ``?user=`` and
    ``?tenant=`` narrow the list on the server, within what the caller may see."""
    alice = net.user("alice", tenant="bj-ai")
    net.user("bob", tenant="bj-ai")
    carol = net.user("carol", tenant="acme")
    spec = parse_job_spec("name: mine\nrun: x\n", "test")
    with Client(net.url, token=alice) as as_alice, Client(net.url, token=carol) as as_carol:
        one = as_alice.submit(spec)
        array = as_alice.submit(parse_job_spec("name: many\nrun: x\narray: 0-2\n", "test"))
        theirs = as_carol.submit(spec)
        assert one.user == "alice"
        assert as_alice.job(f"{array.id}_1").user == "alice"
        assert {j.id for j in as_alice.iter_jobs(user="alice", fold=True)} == {one.id, array.id}
        assert list(as_alice.iter_jobs(user="carol")) == []  # another tenant's user: nothing to see
        assert list(as_alice.iter_jobs(user="bob")) == []
    admin_ids = {j.id for j in net.client.iter_jobs(user="carol")}
    assert admin_ids == {theirs.id}
    assert {j.id for j in net.client.iter_jobs(tenant="acme")} == {theirs.id}
    assert net.client.job(theirs.id).user == "carol"
