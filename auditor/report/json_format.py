"""The findings document, unchanged: the contract of docs/findings-json.md, re-emitted as read.

The layout matches `auditor check --format json` (the run indented, one finding per line), so a
document written by auditor comes out byte for byte as it went in.
"""

from __future__ import annotations

from typing import IO

from auditor.document import write_document
from auditor.report.base import Renderer, ReportInput


class JsonRenderer(Renderer):
    """The findings document as it was read."""

    format = "json"
    extension = ".json"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write `{"run": ..., "findings": [...]}` in auditor's own layout."""
        write_document(report.document, out)
