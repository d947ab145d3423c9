"""``suanli config``: the CLI's default server and token in $SUANLI_HOME/config.json, with the
documented precedence (flags > environment > config file > built-in), and ``suanli login``
remembering the server it logged in to."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from suanli.cli.testing import FakeApi, Harness
from suanli.core.api import WhoAmIOut


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SUANLI_HOME", str(tmp_path))
    monkeypatch.delenv("SUANLI_SERVER", raising=False)
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    return tmp_path


def test_flags_beat_the_environment_which_beats_the_config_file(home: Path) -> None:
    h = Harness(FakeApi())
    assert h.run("config", "set", "server", "http://desk.example:9000/").exit_code == 0
    assert h.run("config", "set", "token", "sl_fromconfig_secret").exit_code == 0
    path = home / "config.json"
    assert json.loads(path.read_text()) == {"server": "http://desk.example:9000", "token": "sl_fromconfig_secret"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    h.run("jobs")
    assert h.seen[-1] == ("http://desk.example:9000", "sl_fromconfig_secret")
    h.run("jobs", env={"SUANLI_SERVER": "http://env.example:1", "SUANLI_TOKEN": "sl_env"})
    assert h.seen[-1] == ("http://env.example:1", "sl_env")
    h.run("--server", "http://flag.example:2", "jobs", "--token", "sl_flag", env={"SUANLI_SERVER": "http://e:1"})
    assert h.seen[-1] == ("http://flag.example:2", "sl_flag")

    shown = h.run("config", "--json", env={"SUANLI_TOKEN": "sl_env_token_long_secret"})
    assert shown.exit_code == 0, shown.output
    settings = {s["key"]: s for s in json.loads(shown.stdout)["settings"]}
    assert settings["server"] == {"key": "server", "value": "http://desk.example:9000", "source": str(path)}
    assert settings["token"]["source"] == "$SUANLI_TOKEN"
    assert settings["token"]["value"] == "sl_env_token…"  # not the whole secret unless --reveal
    table = h.run("config")
    assert table.stdout.splitlines()[0].split() == ["KEY", "VALUE", "FROM"]

    assert h.run("config", "unset", "server").exit_code == 0
    h.run("jobs")
    assert h.seen[-1][0] == "http://127.0.0.1:8731"
    bad = h.run("config", "set", "colour", "blue")
    assert bad.exit_code == 2
    assert "unknown setting 'colour'; settings are server, token" in bad.output


def test_login_remembers_the_server_unless_one_is_configured(home: Path) -> None:
    me = WhoAmIOut(user="alice", role="member", tenant="bj-ai", token_id="abc", scopes=[])

    def whoami(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/api/v1/whoami":
            return httpx.Response(200, json=me.model_dump(mode="json"))
        return None

    h = Harness(FakeApi(override=whoami))
    result = h.run("login", "--server", "http://desk.example:9000", "--token", "sl_x")
    assert result.exit_code == 0, result.output
    assert "http://desk.example:9000 is now the default server" in result.stdout
    h.run("jobs")
    assert h.seen[-1] == ("http://desk.example:9000", None)  # the SDK finds the saved token
    h.run("login", "--server", "http://other.example:1", "--token", "sl_y")
    assert json.loads((home / "config.json").read_text())["server"] == "http://desk.example:9000"
