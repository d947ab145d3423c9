"""A filing's package: its facts, gathered once when the filing is created, and the two
renderings built from them (HTML and PDF).

The facts are stored with the filing (``filings.package_facts``, JSON), so the PDF of a filing
shows exactly what its HTML showed on the day it was made, whatever the counters or the rule
set say later. Both renderings read :meth:`PackageFacts.rows`, so they cannot drift apart.
"""

from __future__ import annotations

import html
import io
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from suanli.core.policy import Decision, Movement, Route

PIA_OUTLINE = (
    "Legality, legitimacy and necessity of the purpose, scope and method of processing by exporter and recipient",
    "Scale, scope, kinds and sensitivity of the personal information exported, and the risks to individuals' rights",
    "Obligations the recipient undertakes, and its management and technical measures and capability to honour them",
    "Risk of leakage, damage, tampering or abuse after export, and channels for individuals to exercise their rights",
    "Impact of the destination's personal-information protection policies and regulations",
)
ASSESSMENT_CHECKLIST = (
    "Declaration form",
    "Data export risk self-assessment report",
    "Legal documents with the recipient",
)

#: reportlab's built-in Chinese font (Adobe-GB1): referenced by name, never embedded, so no
#: font file is needed. Readers substitute a local Song/Ming face.
CJK_FONT = "STSong-Light"


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteLine(_Facts):
    name: str
    zone: str
    region: str

    def __str__(self) -> str:
        return f"{self.name} ({self.zone}, {self.region})"


class PackageFacts(_Facts):
    """Everything a package says, as data. ``version`` moves when the shape does."""

    version: Literal[1] = 1
    filing_id: str
    route: Route
    dataset: str
    exporter: str
    exporter_ciio: bool
    exporter_ftz: str | None
    source: SiteLine
    destination: SiteLine
    level: str
    sub_grade: int | None
    pi_count: int
    spi_count: int
    categories: tuple[str, ...]
    #: The exporter's counters this year after this transfer (X6).
    counters_pi: int
    counters_spi: int
    rule_ids: tuple[str, ...]
    ruleset_version: str
    reasons: tuple[str, ...]
    outline: tuple[str, ...]
    #: The security assessment's declaration checklist; empty for the other routes.
    checklist: tuple[str, ...]
    generated_at: datetime

    @classmethod
    def gather(cls, m: Movement, d: Decision, route: Route, filing_id: str, now: datetime) -> PackageFacts:
        c = m.classification
        counters = d.counters_after or m.counters
        return cls(
            filing_id=filing_id,
            route=route,
            dataset=m.dataset,
            exporter=m.exporter.name,
            exporter_ciio=m.exporter.ciio,
            exporter_ftz=m.exporter.ftz,
            source=SiteLine(name=m.source.name, zone=m.source.zone.value, region=m.source.region),
            destination=SiteLine(name=m.destination.name, zone=m.destination.zone.value, region=m.destination.region),
            level=c.level.value,
            sub_grade=c.sub_grade,
            pi_count=c.pi_count,
            spi_count=c.spi_count,
            categories=tuple(c.categories),
            counters_pi=counters.pi,
            counters_spi=counters.spi,
            rule_ids=d.rule_ids,
            ruleset_version=d.ruleset_version,
            reasons=d.reasons,
            outline=PIA_OUTLINE,
            checklist=ASSESSMENT_CHECKLIST if route == Route.SECURITY_ASSESSMENT else (),
            generated_at=now,
        )

    @property
    def title(self) -> str:
        return f"Cross-border data filing — {self.route.value.replace('_', ' ')}"

    def rows(self) -> list[tuple[str, str]]:
        """The facts of the transfer, labelled, in the order both renderings show them."""
        yes_no = "yes" if self.exporter_ciio else "no"
        return [
            ("Filing", self.filing_id),
            ("Route", self.route.value),
            ("Dataset", self.dataset),
            ("Exporter", f"{self.exporter} (CIIO: {yes_no}, FTZ: {self.exporter_ftz or '—'})"),
            ("From", str(self.source)),
            ("To", str(self.destination)),
            ("Level", self.level + (f" / sub-grade {self.sub_grade}" if self.sub_grade else "")),
            ("Individuals (PI / sensitive PI)", f"{self.pi_count:,} / {self.spi_count:,}"),
            ("Categories", ", ".join(self.categories) or "—"),
            (
                "Exporter's counters this year after this transfer",
                f"PI {self.counters_pi:,} / SPI {self.counters_spi:,}",
            ),
            ("Rules applied", f"{', '.join(self.rule_ids)} (rule set {self.ruleset_version})"),
            ("Generated", self.generated_at.isoformat()),
        ]


def render_html(facts: PackageFacts) -> str:
    e = html.escape
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts.rows())
    reasons = "\n".join(f"<li>{e(r)}</li>" for r in facts.reasons)
    outline = "\n".join(f"<li>{e(x)}</li>" for x in facts.outline)
    checklist = ""
    if facts.checklist:
        checklist = (
            "<h2>Declaration checklist</h2><ul>" + "".join(f"<li>{e(i)}</li>" for i in facts.checklist) + "</ul>"
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Filing {e(facts.filing_id)}</title></head><body>"
        f"<h1>{e(facts.title)}</h1>"
        f"<h2>Facts of the transfer</h2><table>{table}</table>"
        f"<h2>Why this route</h2><ul>{reasons}</ul>"
        f"<h2>Personal information impact assessment (outline)</h2><ol>{outline}</ol>{checklist}"
        "</body></html>"
    )


def _latin(ch: str) -> bool:
    """Whether the standard PDF fonts (WinAnsi encoding) can show ``ch``."""
    try:
        ch.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _markup(text: str) -> str:
    """``text`` as reportlab paragraph markup: escaped, and every run the standard fonts
    cannot show (Chinese, arrows, …) set in the CJK font."""
    out: list[str] = []
    run: list[str] = []
    run_latin = True
    for ch in text:
        latin = _latin(ch)
        if run and latin != run_latin:
            out.append(_run("".join(run), run_latin))
            run = []
        run.append(ch)
        run_latin = latin
    if run:
        out.append(_run("".join(run), run_latin))
    return "".join(out)


def _run(text: str, latin: bool) -> str:
    escaped = html.escape(text, quote=False)
    return escaped if latin else f'<font name="{CJK_FONT}">{escaped}</font>'


def _pdf_date(at: datetime) -> str:
    at = at.astimezone(UTC) if at.tzinfo else at
    return at.strftime("D:%Y%m%d%H%M%S+00'00'")


def render_pdf(facts: PackageFacts, *, compress: bool = True) -> bytes:
    """The package as a PDF (A4). The same facts give the same bytes: reportlab's invariant
    mode, and the creation date is the package's ``generated_at``. ``compress=False`` leaves the
    page streams readable (for tests)."""
    if CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))

    body = ParagraphStyle("body", fontName="Helvetica", fontSize=9.5, leading=12.5)
    label = ParagraphStyle("label", parent=body, fontName="Helvetica-Bold")
    h1 = ParagraphStyle("h1", parent=body, fontName="Helvetica-Bold", fontSize=16, leading=20, spaceAfter=4)
    h2 = ParagraphStyle("h2", parent=body, fontName="Helvetica-Bold", fontSize=12, leading=15, spaceBefore=10)
    small = ParagraphStyle("small", parent=body, fontSize=8, leading=10, textColor=colors.grey)

    def bullets(items: tuple[str, ...], numbered: bool) -> Any:
        return ListFlowable(
            [ListItem(Paragraph(_markup(x), body)) for x in items],
            bulletType="1" if numbered else "bullet",
            bulletFontName="Helvetica",
            bulletFontSize=9,
            leftIndent=14,
            start=None if numbered else "•",
            bulletFormat="%s." if numbered else None,
            spaceBefore=3,
        )

    width = A4[0] - 36 * mm
    table = Table(
        [[Paragraph(_markup(k), label), Paragraph(_markup(v), body)] for k, v in facts.rows()],
        colWidths=[58 * mm, width - 58 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.lightgrey),
                ("BACKGROUND", (0, 0), (0, -1), colors.whitesmoke),
            ]
        )
    )
    story: list[Any] = [
        Paragraph(_markup(facts.title), h1),
        Paragraph(_markup(f"Filing {facts.filing_id} · generated {facts.generated_at.isoformat()}"), small),
        Paragraph("Facts of the transfer", h2),
        Spacer(1, 4),
        table,
        Paragraph("Why this route", h2),
        bullets(facts.reasons, numbered=False),
        Paragraph("Personal information impact assessment (outline)", h2),
        bullets(facts.outline, numbered=True),
    ]
    if facts.checklist:
        story += [Paragraph("Declaration checklist", h2), bullets(facts.checklist, numbered=False)]

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setDateFormatter(lambda *_: _pdf_date(facts.generated_at))
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(18 * mm, 10 * mm, f"Filing {facts.filing_id} — {facts.route.value}")
        canvas.drawRightString(A4[0] - 18 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        title=f"Filing {facts.filing_id}",
        subject=facts.title,
        author=facts.exporter,
        creator="suanli",
        invariant=1,
        pageCompression=1 if compress else 0,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()
