"""Rate limits that hold back the one who floods and no one else (issue 16, item 6): failed
sign-ins per address, a user's tokens together, each site agent token. Against the real server
on loopback; every client here comes from 127.0.0.1, as users behind one NAT would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from suanli.app.settings import Settings
from tests.integration.conftest import Net
from tests.integration.test_hostile_http import assert_problem

#: No refill during a test: a bucket holds exactly its burst.
FROZEN = 0.001


@pytest.fixture
def settings(net: Net) -> Iterator[Settings]:
    yield net.control.settings
    net.control.settings.rate_limit_per_s = 0


def test_an_invalid_token_flood_locks_out_only_the_invalid_tokens(net: Net, settings: Settings) -> None:
    """Before, once an address's failed sign-ins ran out, every request from it was refused:
    25 of 39 valid requests got 429 during a flood."""
    bob = net.user("bob", tenant="bj-ai")
    settings.rate_limit_per_s, settings.rate_limit_burst = FROZEN, 20
    settings.auth_failure_rate_per_s, settings.auth_failure_burst = FROZEN, 20
    answers = []
    for i in range(30):
        with net.http_as(f"sl_forged{i:05d}_x" if i % 2 else f"made-up-{i}") as forged:
            answers.append(forged.get("/api/v1/jobs").status_code)
    assert answers == [401] * 20 + [429] * 10
    with net.http_as("sl_forged99999_x") as forged:
        refused = forged.get("/api/v1/jobs")
    body = assert_problem(refused, 429)
    assert body["detail"].startswith("too many requests with invalid API tokens from this address; retry after")
    assert int(refused.headers["retry-after"]) >= 1
    # The same address, valid tokens: served, a known one and one never seen before alike.
    fresh = net.client.create_token(user="bob", name="fresh").token
    for token in (bob, fresh):
        with net.http_as(token) as valid:
            assert [valid.get("/api/v1/jobs").status_code for _ in range(5)] == [200] * 5
    # A revoked token is a failed sign-in like a made-up one.
    revoked = net.client.create_token(user="bob", name="gone")
    net.client.revoke_token(revoked.id)
    with net.http_as(revoked.token) as gone:
        assert_problem(gone.get("/api/v1/jobs"), 429)


def test_a_users_tokens_share_one_bucket(net: Net, settings: Settings) -> None:
    """Members mint tokens freely: a bucket per token alone would not bound them."""
    bob = net.user("bob", tenant="bj-ai")
    alice = net.user("alice", tenant="bj-ai")
    with net.http_as(bob) as as_bob:
        minted = [as_bob.post("/api/v1/tokens", json={"name": f"t{i}"}).json()["token"] for i in range(4)]
    settings.rate_limit_per_s, settings.rate_limit_burst = FROZEN, 100
    settings.user_rate_limit_per_s, settings.user_rate_limit_burst = FROZEN, 6
    for token in minted[:3]:
        with net.http_as(token) as client:
            assert [client.get("/api/v1/jobs").status_code for _ in range(2)] == [200, 200]
    with net.http_as(minted[3]) as client:
        refused = client.get("/api/v1/jobs")
    body = assert_problem(refused, 429)
    assert body["detail"].startswith("user 'bob' sent more than 0.001 requests per second with all its tokens together")
    assert int(refused.headers["retry-after"]) >= 1
    with net.http_as(alice) as as_alice:  # the same tenant, another user: a bucket of her own
        assert as_alice.get("/api/v1/jobs").status_code == 200


def test_agent_endpoints_are_limited_per_site_token(net: Net, settings: Settings) -> None:
    beijing = net.control.site_token_path("beijing").read_text().strip()
    ningxia = net.control.site_token_path("ningxia").read_text().strip()
    settings.rate_limit_per_s, settings.rate_limit_burst = FROZEN, 100
    settings.agent_rate_limit_per_s, settings.agent_rate_limit_burst = FROZEN, 5
    settings.auth_failure_rate_per_s, settings.auth_failure_burst = FROZEN, 3
    with net.http_as(beijing) as agent:
        # (an empty heartbeat is refused as invalid: enough to show it was let through)
        answers = [agent.post("/api/v1/agents/heartbeat", json={}).status_code for _ in range(6)]
        assert answers == [422] * 5 + [429]
        body = assert_problem(agent.post("/api/v1/agents/heartbeat", json={}), 429)
        assert body["detail"].startswith("this site agent token sent more than 0.001 agent requests per second")
    # Made-up site tokens are failed sign-ins; the real agents at the same address go on.
    answers = []
    for i in range(5):
        with net.http_as(f"forged-site-token-{i}") as forged:
            answers.append(forged.get(f"/api/v1/agents/workdirs/{'0' * 64}").status_code)
    assert answers == [401] * 3 + [429] * 2
    with net.http_as(ningxia) as agent:
        assert agent.post("/api/v1/agents/heartbeat", json={}).status_code == 422


def test_the_relay_has_a_bucket_of_its_own(net: Net, settings: Settings) -> None:
    """A copy through the relay sends hundreds of chunks a second: held to the agent protocol's
    200 requests a second it would crawl, and it would starve the site's heartbeat."""
    beijing = net.control.site_token_path("beijing").read_text().strip()
    settings.rate_limit_per_s, settings.rate_limit_burst = FROZEN, 100
    settings.agent_rate_limit_per_s, settings.agent_rate_limit_burst = FROZEN, 3
    settings.relay_rate_limit_per_s, settings.relay_rate_limit_burst = FROZEN, 6
    with net.http_as(beijing) as agent:
        # The agent bucket runs dry; the relay still answers (404: no such transfer running).
        assert [agent.post("/api/v1/agents/heartbeat", json={}).status_code for _ in range(4)] == [422] * 3 + [429]
        relay = [agent.get("/api/v1/agents/relay/t0000000001").status_code for _ in range(7)]
        assert relay == [404] * 6 + [429]
        body = assert_problem(agent.get("/api/v1/agents/relay/t0000000001"), 429)
        assert body["detail"].startswith("this site agent token sent more than 0.001 relay requests per second")
