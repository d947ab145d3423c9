"""Hints the CLI prints are runnable as printed: ``suanli up``'s first command keeps the state
directory (where the saved token is) and the server; a missing token is hinted once."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from suanli.cli.errors import _api_message
from suanli.launch.commands import try_hint
from suanli.sdk import ApiError


def test_up_hint_names_a_non_default_home_and_server(tmp_path: Path) -> None:
    home = tmp_path / "my state"
    hint = try_hint("http://127.0.0.1:9100", home)
    assert hint == (
        f"export SUANLI_HOME={shlex.quote(str(home))}; export SUANLI_SERVER=http://127.0.0.1:9100; "
        "suanli submit examples/hello.yaml --follow"
    )
    assert shlex.split(hint)[1] == f"SUANLI_HOME={home};"  # a shell reads the path back whole


def test_up_hint_is_plain_for_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even when this shell exports other values: a new shell will not have them.
    monkeypatch.setenv("SUANLI_SERVER", "http://127.0.0.1:9999")
    monkeypatch.setenv("SUANLI_HOME", "/elsewhere")
    assert try_hint("http://127.0.0.1:8731", Path.home() / ".suanli") == "suanli submit examples/hello.yaml --follow"


def test_missing_token_is_hinted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANLI_TOKEN", raising=False)
    exc = ApiError(
        401, "Unauthorized", "this needs an API token: send 'Authorization: Bearer <token>' ('suanli login')"
    )
    message = _api_message(exc)
    assert message.count("suanli login") == 1
    assert message == (
        "this needs an API token: send 'Authorization: Bearer <token>' "
        "('suanli login', or pass --token / $SUANLI_TOKEN)"
    )
