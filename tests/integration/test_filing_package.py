"""A filing's package over HTTP and the CLI: HTML by default, PDF with ``format=pdf``; read by
the owning tenant's members, auditors and the admin, and nobody else."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from suanli.cli import app
from suanli.sdk import ApiError, Client
from suanli.store.models import Filing
from tests.integration.conftest import Net, start_net

NETWORK = """\
regions: [beijing, singapore]
sites:
  - {name: beijing, region: beijing, zone: mainland, nodes: [{name: bj-01, cpus: 4, memory: 8}]}
  - {name: singapore, region: singapore, zone: overseas, nodes: [{name: sg-01, cpus: 4, memory: 8}]}
tenants:
  - {name: bj-ai, home_region: beijing}
"""

GENERAL = {"level": "general", "sub_grade": 2, "pi_count": 200_000, "categories": ["marketing"]}


@dataclass
class World:
    net: Net
    tokens: dict[str, str]
    filing: str

    def client(self, who: str) -> Client:
        return Client(self.net.url, token=self.tokens[who])


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_net(tmp_path, NETWORK) as net:
        tokens = {
            "alice": net.user("alice", tenant="bj-ai"),
            "eve": net.user("eve", tenant="rival"),
            "regulator": net.user("regulator", role="auditor"),
            "admin": net.admin_token,
        }
        src = tmp_path / "notes.bin"
        src.write_bytes(os.urandom(4096))
        net.client.register_dataset(
            name="notes", owner="bj-ai", home_site="beijing", path=str(src), chunk_mib=4, classification=GENERAL
        )
        with Client(net.url, token=tokens["alice"]) as alice:
            filing = alice.create_filing("notes", "singapore")["id"]
        yield World(net, tokens, filing)


def test_filing_package_pdf_over_http_for_those_who_may_read_it(world: World) -> None:
    f = world.filing
    with world.net.http_as(world.tokens["alice"]) as alice:
        r = alice.get(f"/api/v1/filings/{f}/package", params={"format": "pdf"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/pdf"
        assert r.headers["content-disposition"] == f'inline; filename="{f}.pdf"'
        pdf = r.content
        assert pdf.startswith(b"%PDF-")
        # The same filing gives the same bytes, every time.
        assert alice.get(f"/api/v1/filings/{f}/package", params={"format": "pdf"}).content == pdf
        # HTML stays the default, and can be asked for by name.
        html = alice.get(f"/api/v1/filings/{f}/package")
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert "impact assessment" in html.text
        assert "200,000" in html.text
        assert alice.get(f"/api/v1/filings/{f}/package", params={"format": "html"}).text == html.text

    for reader in ("regulator", "admin"):
        with world.net.http_as(world.tokens[reader]) as c:
            r = c.get(f"/api/v1/filings/{f}/package", params={"format": "pdf"})
            assert r.status_code == 200, (reader, r.text)
            assert r.content == pdf, reader

    # Another tenant's member: the same 404 as a filing that does not exist, in both formats.
    with world.net.http_as(world.tokens["eve"]) as eve:
        for fmt in ("pdf", "html"):
            r = eve.get(f"/api/v1/filings/{f}/package", params={"format": fmt})
            assert r.status_code == 404, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == f"no filing '{f}'; see `suanli filing ls`"
            missing = eve.get("/api/v1/filings/f-0000000000/package", params={"format": fmt})
            assert missing.json()["detail"] == "no filing 'f-0000000000'; see `suanli filing ls`"
    with world.net.http_as(None) as anonymous:
        assert anonymous.get(f"/api/v1/filings/{f}/package", params={"format": "pdf"}).status_code == 401


def test_filing_package_unknown_format_is_a_problem(world: World) -> None:
    with world.net.http_as(world.tokens["alice"]) as alice:
        r = alice.get(f"/api/v1/filings/{world.filing}/package", params={"format": "docx"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert "format" in json.dumps(body)
    assert "pdf" in json.dumps(body)


def test_filing_package_openapi_declares_both_content_types(world: World) -> None:
    with world.net.http_as(None) as anonymous:
        doc = anonymous.get("/openapi.json").json()
    op = doc["paths"]["/api/v1/filings/{filing_id}/package"]["get"]
    assert set(op["responses"]["200"]["content"]) == {"text/html", "application/pdf"}
    assert {"404", "422"} <= set(op["responses"])
    (param,) = [p for p in op["parameters"] if p["name"] == "format"]
    assert param["in"] == "query"
    assert not param.get("required", False)


def test_filing_package_pdf_of_an_older_filing_says_why_not(world: World) -> None:
    """Filings made before the facts were kept have their HTML only: a 409 that says so."""
    with world.net.control.db.session() as s:
        row = s.get(Filing, world.filing)
        assert row is not None
        assert row.package_facts
        row.package_facts = None
    with world.client("alice") as alice:
        assert "impact assessment" in alice.filing_package(world.filing)
        with pytest.raises(ApiError) as refused:
            alice.filing_package_pdf(world.filing)
    assert refused.value.status == 409
    assert "HTML only" in str(refused.value)


def test_filing_package_sdk_returns_text_or_bytes(world: World) -> None:
    with world.client("alice") as alice:
        html = alice.filing_package(world.filing)
        pdf = alice.filing_package(world.filing, "pdf")
        assert isinstance(html, str)
        assert "impact assessment" in html
        assert isinstance(pdf, bytes)
        assert pdf.startswith(b"%PDF-")
        assert alice.filing_package_pdf(world.filing) == pdf


def test_filing_package_cli_writes_the_file(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    f = world.filing

    def cli(*args: str, who: str = "alice") -> Result:
        return runner.invoke(
            app, ["--server", world.net.url, "--token", world.tokens[who], *args], env={"COLUMNS": "200"}
        )

    out = tmp_path / "out"
    out.mkdir()
    r = cli("filing", "package", f, "--pdf", str(out / "pkg.pdf"))
    assert r.exit_code == 0, r.output
    assert (out / "pkg.pdf").read_bytes().startswith(b"%PDF-")
    assert f"written to {out / 'pkg.pdf'}" in r.output
    assert "PDF" in r.output

    # A folder takes ID.pdf; --json says where, how big, and the digest.
    r = cli("filing", "package", f, "--pdf", str(out), "--json", who="regulator")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["path"] == str(out / f"{f}.pdf")
    assert summary["format"] == "pdf"
    assert summary["bytes"] == (out / f"{f}.pdf").stat().st_size
    assert (out / f"{f}.pdf").read_bytes() == (out / "pkg.pdf").read_bytes()
    assert len(summary["sha256"]) == 64

    r = cli("filing", "package", f, "--html", str(out / "pkg.html"))
    assert r.exit_code == 0, r.output
    assert "impact assessment" in (out / "pkg.html").read_text(encoding="utf-8")

    # No option: ID.html in the current folder, like `filing create`.
    monkeypatch.chdir(out)
    r = cli("filing", "package", f)
    assert r.exit_code == 0, r.output
    assert (out / f"{f}.html").read_text(encoding="utf-8") == (out / "pkg.html").read_text(encoding="utf-8")

    # '-' writes the bytes to stdout.
    r = cli("filing", "package", f, "--pdf", "-")
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == (out / "pkg.pdf").read_bytes()

    # Errors: both formats, another tenant's filing, --json with stdout.
    r = cli("filing", "package", f, "--pdf", "a.pdf", "--html", "a.html")
    assert r.exit_code == 2
    assert "not both" in r.output
    r = cli("filing", "package", f, "--pdf", str(out / "eve.pdf"), who="eve")
    assert r.exit_code == 1
    assert f"no filing '{f}'" in r.output
    assert not (out / "eve.pdf").exists()
    r = cli("filing", "package", f, "--pdf", "-", "--json")
    assert r.exit_code == 2
    r = cli("filing", "package", f, "--pdf", str(out / "nowhere" / "a.pdf"))
    assert r.exit_code == 2
    assert f"no folder {out / 'nowhere'}" in r.output


def test_filing_create_writes_a_pdf_package_when_asked(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "new.pdf"
    connection = ["--server", world.net.url, "--token", world.tokens["alice"]]
    r = runner.invoke(app, [*connection, "filing", "create", "notes", "--to", "singapore", "--package", str(target)])
    assert r.exit_code == 0, r.output
    assert target.read_bytes().startswith(b"%PDF-")
    assert f"package written to {target}" in r.output
