"""The HTML evidence report: one self-contained file for compliance officers (no scripts, no fetches).

Rendered with jinja2 with autoescape on for every template, so every value from the cloud (names, tags,
policy statements inside raw API answers) reaches the page as text. Every value printed also passes
`finalize_visible`, which writes control and bidi characters (ESC, U+202E right-to-left override, ...)
visibly as `<U+XXXX>`, so a tag value cannot reverse or hide the text around it; templates need no
per-field filter. A Content-Security-Policy that allows no script is a second fence. Charts are inline
SVG whose geometry is computed here.

The same template makes the PDF (auditor.report.pdf, `paged`): one stylesheet serves the screen (down to
phones: tables become stacked rows), browser print and paged media, whose `@page` margin boxes carry the
run id, zone, date and page number on every page (Chromium 131+ and WeasyPrint draw them).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template
from markupsafe import Markup, escape

from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.undecided import gap_action
from auditor.report.view import (
    PROVIDER_LABELS,
    STATUSES,
    ProviderResidency,
    ReportView,
    build_view,
    framework_labels,
    region_label,
    shown_path,
)

# Findings tables are split into tables of this many rows; past LARGE_ROWS listed rows the report lets
# Chromium skip layout of off-screen tables (CSS content-visibility), which keeps a 100,000-finding
# report opening in seconds instead of minutes.
CHUNK_ROWS = 100
LARGE_ROWS = 1500

STATUS_LABELS = {
    Status.PASS: "Pass",
    Status.FAIL: "Fail",
    Status.ERROR: "Error (undecided)",
    Status.WAIVED: "Waived",
}


# Chart colours, also written as SVG attributes: a PDF renderer may draw inline SVG without the page's
# CSS (WeasyPrint does), where the classes alone would leave every bar black.
FILLS = {
    "s-pass": "#1a7f37",
    "s-fail": "#c62828",
    "s-error": "#d4a017",
    "s-waived": "#0b5cad",
    "z-in": "#2e8b57",
    "z-out": "#c62828",
    "z-unknown": "#8c959f",
}
REPLICA_OPACITY = ".45"


@dataclass(frozen=True)
class Segment:
    """One coloured piece of a horizontal bar."""

    x: float
    width: float
    css: str
    label: str
    count: int

    @property
    def fill(self) -> str:
        """The colour of its first class."""
        return FILLS.get(self.css.split()[0], "#57606a")

    @property
    def opacity(self) -> str:
        """Its fill opacity: replicas are lighter."""
        return REPLICA_OPACITY if "r-replica" in self.css.split() else "1"

    @property
    def labelled(self) -> bool:
        """Wide enough to print its count inside."""
        return self.width > 7 * len(f"{self.count:,}") + 8


@dataclass(frozen=True)
class BarRow:
    """One labelled row of a bar chart."""

    y: float
    label: str
    segments: list[Segment]
    note: str


@dataclass(frozen=True)
class Chart:
    """Geometry of one horizontal bar chart."""

    width: int
    height: int
    label_width: int
    bar_height: int
    rows: list[BarRow]
    title: str


_ROW = 24
_BAR = 16
_TOP = 6


def family_chart(families: list[tuple[str, dict[Status, int]]], width: int = 960) -> Chart:
    """Status per policy family as 100% stacked bars (pass / fail / error / waived)."""
    label_width, right = 130, 380
    span = width - label_width - right
    rows = []
    for index, (family, counts) in enumerate(families):
        total = sum(counts.values())
        x = float(label_width)
        segments = []
        for status in STATUSES:
            n = counts.get(status, 0)
            if n == 0 or total == 0:
                continue
            w = span * n / total
            segments.append(Segment(x, w, f"s-{status}", STATUS_LABELS[status], n))
            x += w
        flagged = [f"{counts[s]:,} {s}" for s in (Status.FAIL, Status.ERROR, Status.WAIVED) if counts.get(s)]
        note = " · ".join([f"{total:,} findings", *flagged])
        rows.append(BarRow(_TOP + index * _ROW, family, segments, note))
    return Chart(width, _TOP * 2 + len(rows) * _ROW, label_width, _BAR, rows, "Status per policy family")


def residency_chart(view: ProviderResidency, scale: int, zone: str | None, width: int = 900) -> Chart:
    """Resources per region of one cloud, coloured by whether the region is inside the zone."""
    label_width, right = 190, 220
    span = width - label_width - right
    rows = []
    for index, bar in enumerate(view.regions):
        segments = []
        x = float(label_width)
        parts = (
            [("primary", bar.primary or 0), ("replica", bar.replica or 0)]
            if bar.primary is not None
            else [("primary", bar.resources)]
        )
        for part, n in parts:
            if n == 0:
                continue
            w = max(span * n / scale, 2.0)
            segments.append(Segment(x, w, f"z-{bar.state} r-{part}", part, n))
            x += w
        where = {"in": f"inside {zone}", "out": f"outside {zone}", "unknown": "zone unknown"}[bar.state]
        rows.append(
            BarRow(_TOP + index * _ROW, region_label(bar.region), segments, f"{bar.resources:,} · {where}")
        )
    title = f"{view.label}: resources per region"
    return Chart(width, _TOP * 2 + len(rows) * _ROW, label_width, _BAR, rows, title)


def finalize_visible(value: Any) -> Any:
    """Every `{{ value }}` of a template: markup we built passes, anything else is shown visibly.

    Jinja calls this before autoescaping, so the result is still escaped; Markup (our filters' and
    macros' output, whose parts went through here or through `visible` already) is left alone.
    """
    if isinstance(value, Markup):
        return value
    return visible(value if isinstance(value, str) else str(value))


def joined(items: Iterable[Any], separator: str = ", ") -> Markup:
    """Items joined for the page, each escaped and shown visibly (jinja's `join` would return Markup
    that `finalize_visible` no longer looks into)."""
    return Markup(escape(separator)).join(escape(visible(str(item))) for item in items)


def code_spans(text: str) -> Markup:
    """Policy text with `backtick` spans as <code>; every part is escaped first."""
    parts = visible(str(text)).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: show the text as it is
        return escape(visible(str(text)))
    return Markup("").join(
        escape(part) if index % 2 == 0 else Markup("<code>") + escape(part) + Markup("</code>")
        for index, part in enumerate(parts)
    )


def when(stamp: str) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC' (unchanged if it does not parse)."""
    try:
        parsed = datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if parsed.tzinfo is not None else "")


def css_string(text: str) -> Markup:
    """`text` as a quoted CSS string for a `<style>` element: every character but letters, digits,
    space and `.:-_` written as a CSS escape, so no value can end the string or the element."""
    kept = (
        ch if ch.isascii() and (ch.isalnum() or ch in " .:-_") else f"\\{ord(ch):x} " for ch in visible(text)
    )
    return Markup('"' + "".join(kept) + '"')


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("auditor.report", "templates"),
        autoescape=True,  # every template, whatever its name: all cloud data is untrusted
        undefined=StrictUndefined,
        finalize=finalize_visible,  # control and bidi characters in any value are shown, not obeyed
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        code_spans=code_spans,
        when=when,
        n="{:,}".format,
        region_label=region_label,
        path=shown_path,
        join=joined,  # replaces jinja's: every joined value is shown visibly too
    )
    env.globals.update(
        STATUSES=STATUSES, STATUS_LABELS=STATUS_LABELS, PROVIDER_LABELS=PROVIDER_LABELS, gap_action=gap_action
    )
    return env


def running_header(view: ReportView) -> dict[str, Markup]:
    """The texts of the printed pages' margin boxes, as CSS strings: run id; zone and run date."""
    zone = f"zone {view.zone} · " if view.zone else ""
    return {
        "run": css_string(f"Run {view.run.id}"),
        "meta": css_string(f"{zone}{view.summary.started_at[:10]}"),
    }


def template_context(view: ReportView, *, paged: bool = False) -> dict[str, Any]:
    """The variables the template sees (`paged`: for the PDF, without the screen-only parts)."""
    scale = max((bar.resources for p in view.residency for bar in p.regions), default=1) or 1
    listed = sum(len(p.non_pass) + len(p.passing) for p in view.policies)
    return {
        "view": view,
        "paged": paged,
        "running": running_header(view),
        "large": listed > LARGE_ROWS,
        "CHUNK_ROWS": CHUNK_ROWS,
        "s": view.summary,
        "framework_labels": framework_labels(view.run),
        "family_chart": family_chart(view.families),
        "residency_charts": [(p, residency_chart(p, scale, view.zone)) for p in view.residency],
    }


def report_template() -> Template:
    """The report's template (shared by the HTML and PDF formats)."""
    return _environment().get_template("report.html.j2")


class HtmlRenderer(Renderer):
    """Self-contained HTML evidence report (readable without JavaScript, printable to PDF)."""

    format = "html"
    extension = ".html"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Stream the report to `out` as UTF-8."""
        template = report_template()
        encoder = codecs.getincrementalencoder("utf-8")()
        buffer: list[str] = []
        size = 0
        for chunk in template.generate(template_context(build_view(report))):
            buffer.append(chunk)
            size += len(chunk)
            if size > 1 << 16:
                out.write(encoder.encode("".join(buffer)))
                buffer, size = [], 0
        out.write(encoder.encode("".join(buffer), final=True))
