"""The findings document, unchanged: the contract of docs/findings-json.md, re-emitted as read.

The layout matches `auditor check --format json` (the run indented, one finding per line), so a
document written by auditor comes out byte for byte as it went in. Findings are written one at a
time as they are read, so memory does not grow with the run. A reference-form document (schema 2.0)
stays in the reference form: findings are written as the document holds them, without the evidence
an `--inventory` would put back or the `controls` a reader fills in from `run.policies`.
"""

from __future__ import annotations

from typing import IO

from auditor.document import write_document_parts
from auditor.report.base import Renderer, ReportInput


class JsonRenderer(Renderer):
    """The findings document as it was read."""

    format = "json"
    extension = ".json"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write `{"run": ..., "findings": [...]}` in auditor's own layout, a finding at a time."""
        stream = report.stream
        # `extra`: fields a later version adds at the top level (only a document read whole holds them).
        write_document_parts(stream.run, stream.findings(as_written=True), stream.extra, out)
