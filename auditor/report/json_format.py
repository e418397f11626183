"""The findings JSON document, unchanged: the contract of docs/findings-json.md, re-emitted as read.

The layout matches `auditor check --format json` (the run indented, one finding per line), so a
document written by auditor comes out byte for byte as it went in.
"""

from __future__ import annotations

from typing import IO

import orjson

from auditor.report.base import Renderer, ReportInput


class JsonRenderer(Renderer):
    """The findings document as it was read."""

    format = "json"
    extension = ".json"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write `{"run": ..., "findings": [...]}` in auditor's own layout."""
        document = report.findings
        extra = {k: v for k, v in document.items() if k not in ("run", "findings")}
        out.write(b'{"run": ')
        out.write(orjson.dumps(document["run"], option=orjson.OPT_INDENT_2))
        out.write(b',\n"findings": [\n')
        for index, finding in enumerate(document["findings"]):
            if index:
                out.write(b",\n")
            out.write(orjson.dumps(finding))
        out.write(b"\n]")
        for key, value in extra.items():  # fields a later contract version may add at the top level
            out.write(b",\n" + orjson.dumps(key) + b": " + orjson.dumps(value))
        out.write(b"}\n")
