"""Managing identities from the CLI against a real server: tenants, users, login, tokens."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suanli.cli import app
from suanli.sdk import ApiError, Client
from tests.integration.conftest import Net


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's own home (where 'suanli login' saves credentials)."""
    home = tmp_path / "cli-home"
    monkeypatch.setenv("SUANLI_HOME", str(home))
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    return home


def test_admin_makes_a_tenant_and_a_member_who_manages_her_tokens(net: Net, home: Path) -> None:
    runner = CliRunner()

    def cli(*args: str, token: str | None = None) -> str:
        extra = ["--token", token] if token else []
        result = runner.invoke(app, ["--server", net.url, *extra, *args])
        assert result.exit_code == 0, result.output
        return result.output

    admin = net.admin_token
    out = cli("tenant", "create", "acme", "--home-region", "beijing", token=admin)
    assert "tenant acme (home region beijing" in out
    made = json.loads(cli("user", "create", "alice", "--tenant", "acme", "--json", token=admin))
    assert made[0]["role"] == "member"
    alice_token = made[1]["token"]
    assert alice_token.startswith("sl_")
    listed = json.loads(cli("user", "list", "--json", token=admin))
    assert {u["name"] for u in listed} >= {"admin", "alice"}

    # alice logs in once; later commands find the saved token for that server.
    out = cli("login", "--token", alice_token)
    assert "member 'alice' of tenant acme" in out
    saved = home / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    me = json.loads(cli("whoami", "--json"))
    assert me["user"] == "alice"
    assert me["tenant"] == "acme"
    assert "jobs:write" in me["scopes"]

    created = runner.invoke(app, ["--server", net.url, "token", "create", "--name", "laptop", "--expires", "7d"])
    assert created.exit_code == 0, created.output
    laptop = created.stdout.strip().splitlines()[-1]
    assert laptop.startswith("sl_")
    assert "shown only now" in created.stderr
    tokens = json.loads(cli("token", "list", "--json"))
    ids = {t["name"]: t["id"] for t in tokens}
    assert set(ids) == {"first", "laptop"}
    assert all("sl_" not in json.dumps(t) for t in tokens)  # ids and dates, never the tokens

    with Client(net.url, token=laptop) as c:
        assert c.whoami().user == "alice"
    cli("token", "revoke", ids["laptop"])
    with Client(net.url, token=laptop) as c, pytest.raises(ApiError) as gone:
        c.whoami()
    assert gone.value.status == 401

    # A member cannot manage users, nor revoke someone else's token.
    refused = runner.invoke(app, ["--server", net.url, "user", "list"])
    assert refused.exit_code == 1
    assert "identities" in refused.output
    admin_id = json.loads(cli("whoami", "--json", token=admin))["token_id"]
    missing = runner.invoke(app, ["--server", net.url, "token", "revoke", admin_id])
    assert missing.exit_code == 1
    assert "no token" in missing.output

    assert "logged out" in cli("logout")
    anonymous = runner.invoke(app, ["--server", net.url, "whoami"])
    assert anonymous.exit_code == 1
    assert "API token" in anonymous.output


def test_login_refuses_a_bad_token(net: Net, home: Path) -> None:
    result = CliRunner().invoke(app, ["--server", net.url, "login", "--token", "sl_nope000000_x"])
    assert result.exit_code == 1
    assert "not valid" in result.output
    assert not (home / "credentials.json").exists()
