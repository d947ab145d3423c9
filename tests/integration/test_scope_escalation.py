"""A narrowed token never makes a wider identity (issue 16, item 4): creating a user with a
role, restoring one, or minting a token for someone else needs every scope that identity
would hold, and only a full admin token makes (or restores) an admin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import Net, start_net


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with start_net(tmp_path_factory.mktemp("escalation")) as network:
        yield network


def _narrow(net: Net, *scopes: str) -> str:
    return net.client.create_token(name="narrow", scopes=list(scopes)).token


def test_a_narrowed_admin_token_cannot_make_an_admin_nor_mint_it_a_full_token(net: Net) -> None:
    narrow = _narrow(net, "identities", "tokens")
    with net.http_as(narrow) as c:
        made = c.post("/api/v1/users", json={"name": "mallory", "role": "admin"})
        assert made.status_code == 403, made.text
        assert "every admin scope" in made.json()["detail"]
        # Nor a member (whose role holds jobs:write, data:write ... that this token does not).
        member = c.post("/api/v1/users", json={"name": "mallet", "tenant": "bj-ai"})
        assert member.status_code == 403
        assert "jobs:write" in member.json()["detail"]
        # Nor an auditor (filings:decide: no admin token may hold it, only a full one hands it out).
        assert c.post("/api/v1/users", json={"name": "aud2", "role": "auditor"}).status_code == 403
    assert "mallory" not in {u.name for u in net.client.users()}
    # An admin made by the full admin: the narrowed token still cannot mint it a token.
    net.client.create_user("root2", role="admin")
    with net.http_as(narrow) as c:
        minted = c.post("/api/v1/tokens", json={"user": "root2"})
        assert minted.status_code == 403, minted.text
        assert "network:write" in minted.json()["detail"]
        # What it holds itself it may hand on: a token of {tokens} for root2.
        small = c.post("/api/v1/tokens", json={"user": "root2", "scopes": ["tokens"]})
        assert small.status_code == 201, small.text
        assert small.json()["scopes"] == ["tokens"]


def test_a_token_holding_a_roles_scopes_may_make_that_role(net: Net) -> None:
    member_scopes = ["jobs:read", "jobs:write", "usage:read", "network:read", "data:read", "data:write", "tokens"]
    member_scopes.append("serve:invoke")
    enough = _narrow(net, "identities", *member_scopes)
    with net.http_as(enough) as c:
        assert c.post("/api/v1/users", json={"name": "bob", "tenant": "bj-ai"}).status_code == 201
        assert c.post("/api/v1/tokens", json={"user": "bob"}).status_code == 201
        # An operator's role holds network:write, which this token does not.
        ops = c.post("/api/v1/users", json={"name": "ops2", "role": "operator", "sites": ["beijing"]})
        assert ops.status_code == 403
    # The full admin makes any role, an auditor's filings:decide included.
    assert net.client.create_user("aud3", role="auditor").role == "auditor"
    assert "filings:decide" in net.client.create_token(user="aud3").scopes


def test_enabling_or_disabling_a_user_needs_the_scopes_of_its_role(net: Net) -> None:
    net.client.create_user("root3", role="admin")
    net.client.create_user("root4", role="admin")
    net.client.set_user_disabled("root3", True)
    narrow = _narrow(net, "identities", "tokens")
    with net.http_as(narrow) as c:
        # Enabling brings back every token root3 holds: as wide as making an admin.
        assert c.post("/api/v1/users/root3/enable").status_code == 403
        # Nor lock a full admin out of the network.
        assert c.post("/api/v1/users/root4/disable").status_code == 403
    assert net.client.set_user_disabled("root3", False).disabled is False


def test_a_tenant_holds_no_scopes_so_making_one_grants_nothing(net: Net) -> None:
    narrow = _narrow(net, "identities", "tokens")
    with net.http_as(narrow) as c:
        assert c.post("/api/v1/tenants", json={"name": "side"}).status_code == 201
        # ... and a member in it still needs the member's scopes.
        assert c.post("/api/v1/users", json={"name": "sider", "tenant": "side"}).status_code == 403
