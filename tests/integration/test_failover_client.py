"""A client given several front-desk URLs (``SUANLI_SERVER=a,b``) moves to the next when one
cannot be reached, stays with the one that answers, and says which it tried when none can."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from suanli.core.spec import JobSpec
from suanli.sdk import Client
from suanli.sdk.errors import ServerUnreachable
from suanli.sdk.failover import FailoverTransport, parse_servers
from tests.integration.conftest import start_net


def dead_url() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_client_fails_over_to_a_replica_that_answers(tmp_path: Path) -> None:
    with start_net(tmp_path) as net:
        down = dead_url()
        with Client(f"{down}, {net.url}", token=net.admin_token) as client:
            assert client.servers == [down, net.url]
            assert {s.name for s in client.sites()} == {"beijing", "tianjin-gaocun", "ningxia"}
            transport = client._http._transport
            assert isinstance(transport, FailoverTransport)
            assert transport.current == net.url  # it stays with the replica that answered
            job = client.submit(JobSpec.model_validate({"run": "true", "resources": {"cpus": 1}}))
            assert client.job(job.id).id == job.id
            assert len(list(client.iter_jobs())) == 1  # one job: nothing was sent to the dead one


def test_no_replica_answering_names_them_all() -> None:
    first, second = dead_url(), dead_url()
    with Client(f"{first},{second}", token="x", submit_retries=0) as client, pytest.raises(ServerUnreachable) as caught:
        client.sites()
    assert f"any of {first}, {second}" in str(caught.value)


def test_server_lists_are_checked() -> None:
    assert parse_servers("http://a:1/, https://b") == ["http://a:1", "https://b"]
    for bad in ("", " , ", "ftp://a", "a:8731"):
        with pytest.raises(ValueError, match="server"):
            parse_servers(bad)
