"""Names people read in a terminal hold no control characters (issue 16, item 9): the API
refuses them (422), and the CLI shows those stored earlier as escapes, never as raw bytes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from suanli.cli import app
from suanli.cli.render import printable
from suanli.store.models import ApiToken
from tests.integration.conftest import start_net

EVIL = "ci\x1b[2J\x1b]0;pwned\x07\u202egnp.exe"


def test_the_api_refuses_control_characters_in_token_names_and_drain_reasons(tmp_path: Path) -> None:
    with start_net(tmp_path) as net:
        refused = net.http.post("/api/v1/tokens", json={"name": EVIL})
        assert refused.status_code == 422
        assert "control characters" in refused.text
        for name in ("tab\there", "new\nline", "rtl\u202eoverride"):
            assert net.http.post("/api/v1/tokens", json={"name": name}).status_code == 422, name
        assert net.http.post("/api/v1/tokens", json={"name": "laptop 中文 é"}).status_code == 201
        drain = net.http.post("/api/v1/nodes/bj-01/drain", json={"reason": "fan\x1b[31m"})
        assert drain.status_code == 422


def test_the_cli_escapes_names_stored_before_the_check(tmp_path: Path) -> None:
    with start_net(tmp_path) as net:
        made = net.client.create_token(name="old")
        with net.control.db.session() as session:  # as a row written before the API refused them
            row = session.get(ApiToken, made.id)
            assert row is not None
            row.name = EVIL
        result = CliRunner().invoke(app, ["--server", net.url, "--token", net.admin_token, "token", "list"])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "\x07" not in result.output
        assert "\u202e" not in result.output
        assert "\\x1b[2J" in result.output


def test_printable_keeps_text_and_escapes_controls() -> None:
    assert printable("laptop 中文 é") == "laptop 中文 é"
    assert printable("a\x1b[31mb\x7f\x9b") == "a\\x1b[31mb\\x7f\\x9b"
    assert printable("x\u202ey") == "x\\u202ey"
    assert printable("two\nlines\tand tab", keep="\n\t") == "two\nlines\tand tab"
