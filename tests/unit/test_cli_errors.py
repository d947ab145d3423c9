"""Every failure a user can meet is a sentence on stderr with the right exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from suanli.cli.context import ServerOption, resolve_server
from suanli.cli.errors import SuanliGroup
from suanli.cli.testing import FakeApi, Harness, make_job, problem
from suanli.sdk import ApiError, ServerUnreachable


@pytest.fixture
def harness() -> Harness:
    return Harness(FakeApi(jobs=[make_job("j-1")]))


def assert_clean_failure(result: Result, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nmae: x\nrun: echo\n", ":1: nmae: unknown field 'nmae'; did you mean 'name'?"),
        ("run: x\nresources:\n  accelerators: H100:0\n", ":3: resources.accelerators[0]: 'H100:0' asks for 0 GPUs"),
        (
            "run: x\nresources:\n  gpus: 1\n  cpus: lots\n",
            ":4: resources.cpus: cpus must be a number like 16 or '16+', not 'lots'",
        ),
        ("run: x\nresources:\n  num_nodes: 0\n", ":3: resources.num_nodes: num_nodes must be at least 1, not 0"),
        ("name: x\n", ":1: run: this field is required"),
        ("run: [unclosed\n", ":2: not valid YAML"),
        ("just a sentence\n", ":1: expected a mapping of fields"),
    ],
)
def test_spec_errors_name_file_and_line(harness: Harness, tmp_path: Path, text: str, expected: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(text, encoding="utf-8")
    result = harness.run("submit", str(spec))
    assert_clean_failure(result)
    assert f"{spec}{expected}" in result.stderr
    assert harness.api.requests == []


def test_every_spec_problem_is_listed(harness: Harness, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("resources:\n  gpus: 1\n  cpus: lots\n", encoding="utf-8")
    result = harness.run("submit", str(spec))
    assert_clean_failure(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert any("unknown field 'gpus'" in line for line in lines)
    assert any(line.endswith("run: this field is required") for line in lines)


def test_missing_spec_file(harness: Harness, tmp_path: Path) -> None:
    result = harness.run("submit", str(tmp_path / "nope.yaml"))
    assert_clean_failure(result)
    assert result.stderr == f"error: no such file: {tmp_path / 'nope.yaml'}\n"


def test_spec_that_is_a_folder(harness: Harness, tmp_path: Path) -> None:
    result = harness.run("submit", str(tmp_path))
    assert_clean_failure(result)
    assert "is a folder" in result.stderr


def test_api_problem_document_is_printed(harness: Harness, tmp_path: Path) -> None:
    errors = [
        {"field": "resources.accelerators", "message": "no site offers X100", "line": None},
        {"loc": ["body", "spec", "run"], "msg": "field required"},
        {"code": 7},
    ]
    harness.api.override = lambda _: problem(422, "Unprocessable Content", "the job spec is invalid", errors)
    spec = tmp_path / "job.yaml"
    spec.write_text("run: x\n", encoding="utf-8")
    result = harness.run("submit", str(spec))
    assert_clean_failure(result)
    assert result.stderr.splitlines() == [
        "error: the job spec is invalid",
        "  resources.accelerators: no site offers X100",
        "  spec.run: field required",
        '  {"code": 7}',
    ]


def test_api_error_without_detail_uses_title(harness: Harness) -> None:
    harness.api.override = lambda _: httpx.Response(409, json={"title": "Conflict", "status": 409})
    result = harness.run("cancel", "j-1")
    assert result.exit_code == 1
    assert result.stderr == "error: Conflict\n"


@pytest.mark.parametrize("command", ["status", "logs", "cancel"])
def test_unknown_job(harness: Harness, command: str) -> None:
    result = harness.run(command, "j-404", "--json" if command != "logs" else "-f")
    assert_clean_failure(result)
    assert result.stderr == "error: no job 'j-404'\n"


def test_unauthorized_hints_at_the_token(harness: Harness) -> None:
    harness.api.override = lambda _: problem(401, "Unauthorized", "a token is required")
    result = harness.run("jobs", env={"SUANLI_TOKEN": None})
    assert_clean_failure(result)
    assert "'suanli login', or pass --token / $SUANLI_TOKEN" in result.stderr


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize("args", [["jobs"], ["status", "j-1"], ["sites"], ["nodes"], ["cancel", "j-1"]])
def test_server_unreachable(harness: Harness, args: list[str]) -> None:
    harness.api.override = refuse
    result = harness.run(*args, "--server", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "error: cannot reach the suanli server at http://127.0.0.1:9" in result.stderr
    assert "suanli up" in result.stderr


def test_workdir_too_large(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUANLI_MAX_WORKDIR_MB", "0.001")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 4096)
    spec = tmp_path / "job.yaml"
    spec.write_text("workdir: .\nrun: x\n", encoding="utf-8")
    result = harness.run("submit", str(spec))
    assert_clean_failure(result)
    assert "error: workdir" in result.stderr
    assert "over the" in result.stderr
    assert "weights.bin" in result.stderr
    assert ".suanliignore" in result.stderr
    assert harness.api.requests == []


def test_workdir_missing(harness: Harness, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("workdir: nowhere\nrun: x\n", encoding="utf-8")
    result = harness.run("submit", str(spec))
    assert_clean_failure(result)
    assert "is not a directory" in result.stderr


def test_ctrl_c_exits_130_quietly(harness: Harness) -> None:
    def interrupted(_: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    harness.api.override = interrupted
    result = harness.run("jobs")
    assert result.exit_code == 130
    assert result.output == ""


def test_unexpected_error_is_one_line(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.api.override = lambda _: httpx.Response(200, json={"not": "a job"})
    monkeypatch.delenv("SUANLI_DEBUG", raising=False)
    result = harness.run("status", "j-1")
    assert_clean_failure(result)
    assert result.stderr.startswith("error: unexpected ValidationError")
    assert "SUANLI_DEBUG=1" in result.stderr
    debug = harness.run("status", "j-1", env={"SUANLI_DEBUG": "1"})
    assert debug.exit_code == 1
    assert type(debug.exception).__name__ == "ValidationError"


@pytest.mark.parametrize("args", [["submit"], ["frobnicate"], ["jobs", "--state", "sleepy"], ["logs"]])
def test_usage_errors_exit_2(harness: Harness, args: list[str]) -> None:
    result = harness.run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Usage" in result.stderr


def test_commands_added_later_share_the_error_boundary() -> None:
    """What the lead's composition module does: app.command() and app.add_typer()."""
    app = typer.Typer(cls=SuanliGroup)
    sub = typer.Typer()
    app.add_typer(sub, name="tokens")

    @app.command()
    def up(ctx: typer.Context, server: ServerOption = None) -> None:
        raise ServerUnreachable(f"nothing at {resolve_server(ctx, server)}")

    @sub.command("create")
    def create() -> None:
        raise ApiError(403, "Forbidden", "only admins may create tokens")

    runner = CliRunner()
    result = runner.invoke(app, ["up", "--server", "http://x:1"])
    assert (result.exit_code, result.stderr) == (1, "error: nothing at http://x:1\n")
    result = runner.invoke(app, ["tokens", "create"])
    assert (result.exit_code, result.stderr) == (1, "error: only admins may create tokens\n")
