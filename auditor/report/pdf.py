"""The PDF evidence report: the HTML report's template laid out on A4 pages by WeasyPrint.

An optional extra (`pip install '.[pdf]'`; WeasyPrint needs the Pango library, Debian's
libpango-1.0-0 and libpangoft2-1.0-0). The same template and stylesheet as the HTML report, in paged
mode: every passing resource listed by name instead of the screen's capped evidence tables; a running
header with the run id, zone and date and a page number on every page (`@page` margin boxes); and a
bookmark outline from the headings (sections, policies, frameworks; not the h4 sub-headings). Nothing
is fetched while rendering: the report is self-contained, and the URL fetcher refuses every scheme.
"""

from __future__ import annotations

import logging
from typing import IO

from auditor.report.base import Renderer, ReportInput
from auditor.report.html import report_template, template_context
from auditor.report.view import build_view

INSTALL_HINT = (
    "pip install '.[pdf]' from an auditor checkout "
    "(WeasyPrint; on Debian also libpango-1.0-0 libpangoft2-1.0-0)"
)


class PdfRenderer(Renderer):
    """PDF evidence report (needs the `pdf` extra)."""

    format = "pdf"
    extension = ".pdf"

    @classmethod
    def missing(cls) -> str | None:
        """Why this install cannot write PDF (WeasyPrint or its Pango library missing), else None."""
        try:
            import weasyprint  # noqa: F401
        except ImportError:
            return f"report format 'pdf' needs WeasyPrint: {INSTALL_HINT}"
        except OSError as exc:  # WeasyPrint installed, a native library it loads is not
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return f"report format 'pdf' needs WeasyPrint's libraries ({cause}): {INSTALL_HINT}"
        return None

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Lay the report out and write the PDF to `out`."""
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher

        elsewhere = report.stream.reference_form and report.stream.inventory is None
        context = template_context(build_view(report), paged=True, evidence_elsewhere=elsewhere)
        html = report_template().render(context)
        logger = logging.getLogger("weasyprint")
        level = logger.level
        logger.setLevel(logging.ERROR)  # CSS it does not use (content-visibility, ...) is not news
        try:
            document = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=frozenset()))
            document.write_pdf(out)
        finally:
            logger.setLevel(level)
