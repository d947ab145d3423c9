"""A filing's package: one set of facts, rendered as HTML and as PDF (checked on the raw bytes,
built uncompressed, so nothing here depends on a PDF reader)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import escape

from suanli.core.policy import Route
from suanli.datachain.package import (
    ASSESSMENT_CHECKLIST,
    PIA_OUTLINE,
    PackageFacts,
    SiteLine,
    _markup,
    render_html,
    render_pdf,
)

AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)


def facts(**changes: object) -> PackageFacts:
    base = PackageFacts(
        filing_id="f-0123456789",
        route=Route.SECURITY_ASSESSMENT,
        dataset="clinic",
        exporter="bj-ai",
        exporter_ciio=False,
        exporter_ftz=None,
        source=SiteLine(name="beijing", zone="mainland", region="beijing"),
        destination=SiteLine(name="singapore", zone="overseas", region="singapore"),
        level="important",
        sub_grade=2,
        pi_count=1_200_000,
        spi_count=20,
        categories=("public_health",),
        counters_pi=1_200_000,
        counters_spi=20,
        rule_ids=("X3",),
        ruleset_version="2026.1",
        reasons=("重要数据出境须申报数据出境安全评估。", "cumulative PI ≥ 1,000,000 <needs> an assessment & more"),
        outline=PIA_OUTLINE,
        checklist=ASSESSMENT_CHECKLIST,
        generated_at=AT,
    )
    return base.model_copy(update=changes)


def pdf_literal(raw: bytes) -> bytes:
    """``raw`` as it appears inside a PDF literal string: printable ASCII as is, the rest octal."""
    out = bytearray()
    for b in raw:
        if b in b"()\\":
            out += b"\\" + bytes([b])
        elif 0x20 <= b < 0x7F:
            out.append(b)
        else:
            out += b"\\%03o" % b
    return bytes(out)


def page_count(pdf: bytes) -> int:
    counts = re.findall(rb"/Type /Pages\b[^>]*?/Count (\d+)|/Count (\d+)[^>]*?/Type /Pages\b", pdf)
    assert counts, "no page tree"
    return max(int(a or b) for a, b in counts)


def test_filing_package_pdf_holds_the_facts() -> None:
    f = facts()
    pdf = render_pdf(f, compress=False)
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert page_count(pdf) >= 1
    assert len(re.findall(rb"/Type /Page\b(?!s)", pdf)) == page_count(pdf)
    for text in (
        "f-0123456789",
        "security_assessment",
        "Facts of the transfer",
        "1,200,000 / 20",
        "X3 (rule set 2026.1)",
    ):
        assert pdf_literal(text.encode("cp1252")) in pdf, text
    # Every outline item and checklist item is there (the renderer may wrap long lines: first words).
    for item in (*PIA_OUTLINE, *ASSESSMENT_CHECKLIST):
        assert pdf_literal(" ".join(item.split()[:3]).encode("cp1252")) in pdf, item
    # Markup characters in the facts are text, not markup.
    assert b"&lt;" not in pdf
    assert b"&amp;" not in pdf
    assert b"> an assessment & more" in pdf
    # The creation date is the package's, not the clock's.
    assert b"/CreationDate (D:20261127103000+00'00')" in pdf


def test_filing_package_pdf_sets_chinese_in_the_builtin_cid_font() -> None:
    pdf = render_pdf(facts(), compress=False)
    assert b"/BaseFont /STSong-Light" in pdf
    assert b"/Encoding /UniGB-UCS2-H" in pdf
    assert b"/FontFile" not in pdf  # referenced, never embedded: no font file needed
    assert pdf_literal("重要数据出境".encode("utf-16-be")) in pdf
    # Arrows and the ≥ sign (outside WinAnsi) go to the CJK font too, never as '?'.
    assert pdf_literal("≥".encode("utf-16-be")) in pdf


def test_filing_package_pdf_is_deterministic() -> None:
    one, two = render_pdf(facts()), render_pdf(facts())
    assert one == two
    assert one.startswith(b"%PDF-")
    assert render_pdf(facts(generated_at=AT + timedelta(seconds=1))) != one
    assert render_pdf(facts(filing_id="f-9999999999")) != one
    # Through JSON (how the facts are stored) the bytes stay the same.
    assert render_pdf(PackageFacts.model_validate_json(facts().model_dump_json())) == one


def test_filing_package_pdf_runs_onto_more_pages() -> None:
    many = facts(reasons=tuple(f"reason {i}: " + "words " * 60 for i in range(40)))
    pdf = render_pdf(many, compress=False)
    assert page_count(pdf) >= 2
    assert b"(page 2) Tj" in pdf


def test_filing_package_html_and_pdf_share_the_facts() -> None:
    f = facts(route=Route.STANDARD_CONTRACT, checklist=())
    html = render_html(f)
    pdf = render_pdf(f, compress=False)
    for label, value in f.rows():
        assert f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>" in html
        assert pdf_literal(label.encode("cp1252")) in pdf or label.startswith("Exporter's counters"), label
    assert "standard contract" in html
    assert "Declaration checklist" not in html
    assert b"Declaration checklist" not in pdf
    assert "&lt;needs&gt; an assessment &amp; more" in html


def test_filing_package_facts_round_trip_through_json() -> None:
    f = facts()
    again = PackageFacts.model_validate_json(f.model_dump_json())
    assert again == f
    assert again.rows() == f.rows()
    assert render_html(again) == render_html(f)


def test_filing_package_markup_escapes_and_switches_fonts() -> None:
    assert _markup("a < b & c") == "a &lt; b &amp; c"
    assert _markup("PI 数据 ok") == 'PI <font name="STSong-Light">数据</font> ok'
    assert _markup("— é") == "— é"  # WinAnsi has them: the standard font shows them
