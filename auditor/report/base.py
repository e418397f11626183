"""The one interface every report format implements, and the dispatch from format name to module.

Renderers read the typed findings document (auditor.document, docs/findings-json.md), optionally with
the inventory it came from and a previous run's document, and write one output file. They read no
policy file: what the run evaluated is in the document. One module per format.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

from auditor.atomicfile import atomic_output
from auditor.document import FindingRecord, FindingsDocument, RunInfo
from auditor.errors import InputError
from auditor.findings_stream import FindingsStream
from auditor.report.previous import PreviousRun


@dataclass(frozen=True)
class OutputFormat:
    """A registered report format: its renderer ("module:Class", imported when used) and the file
    name `auditor audit` gives it in the output directory (stable, so CI steps can find it)."""

    renderer: str
    file_name: str


# A new format is one new module and one line here; `auditor report --format`, the audit config's
# `outputs.formats` and the report file names are derived from this table.
FORMATS: dict[str, OutputFormat] = {
    "json": OutputFormat("auditor.report.json_format:JsonRenderer", "report.json"),
    "html": OutputFormat("auditor.report.html:HtmlRenderer", "report.html"),
    "sarif": OutputFormat("auditor.report.sarif:SarifRenderer", "report.sarif"),
    "junit": OutputFormat("auditor.report.junit:JunitRenderer", "junit.xml"),
    "markdown": OutputFormat("auditor.report.markdown:MarkdownRenderer", "summary.md"),
    "csv": OutputFormat("auditor.report.csv_format:CsvRenderer", "findings.csv"),
    "ocsf": OutputFormat("auditor.report.ocsf:OcsfRenderer", "findings.ocsf.jsonl"),
    "pdf": OutputFormat("auditor.report.pdf:PdfRenderer", "report.pdf"),
}
RENDERERS: dict[str, str] = {name: spec.renderer for name, spec in FORMATS.items()}


class ReportInput:
    """What a renderer gets: the findings (a stream, or a document in memory), and optional context.

    Renderers that can stream read `run` and iterate `findings()` (each call reads the findings
    again, so memory stays flat however many there are); `document` holds every finding at once.
    """

    def __init__(
        self,
        document: FindingsDocument | None = None,
        inventory_path: Path | None = None,
        previous: PreviousRun | FindingsDocument | None = None,
        frameworks: list[str] | None = None,
        group_by_tag: str | None = None,
        *,
        stream: FindingsStream | None = None,
    ) -> None:
        if stream is None:
            if document is None:
                raise TypeError("ReportInput needs a document or a stream")
            stream = FindingsStream.of_document(document, inventory_path)
        self.stream = stream
        self.inventory_path = inventory_path
        self.previous = previous
        self.frameworks = list(frameworks or [])
        self.group_by_tag = group_by_tag  # group resources into teams by this tag (default: owner)
        self._document = document if stream.inventory is None or not stream.reference_form else None

    @property
    def run(self) -> RunInfo:
        """The document's `run`."""
        return self.stream.run

    def findings(self) -> Iterator[FindingRecord]:
        """Every finding, read again from the start on each call."""
        return self.stream.findings()

    @property
    def document(self) -> FindingsDocument:
        """The whole document in memory, read once (renderers that need every finding at once)."""
        if self._document is None:
            self._document = self.stream.document()
        return self._document


class Renderer(ABC):
    """Writes one report format."""

    format: ClassVar[str]
    extension: ClassVar[str]

    @abstractmethod
    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the report for `report` to the binary stream `out`."""

    @classmethod
    def missing(cls) -> str | None:
        """What this install lacks to write the format (an optional extra), else None."""
        return None


def unavailable(name: str) -> str | None:
    """Why this install cannot write format `name` (its module, or an optional extra it needs, is
    missing: one line naming what to install), else None."""
    module_name, _, class_name = RENDERERS[name].partition(":")
    if importlib.util.find_spec(module_name) is None:
        return f"report format '{name}' is not available in this install"
    renderer = getattr(importlib.import_module(module_name), class_name)
    return renderer.missing() if issubclass(renderer, Renderer) else None


def get_renderer(name: str) -> Renderer:
    """The renderer for a format name (see RENDERERS)."""
    module_name, _, class_name = RENDERERS[name].partition(":")
    renderer = getattr(importlib.import_module(module_name), class_name)()
    assert isinstance(renderer, Renderer)
    return renderer


def render_to_file(name: str, report: ReportInput, output: Path) -> None:
    """Render `report` in format `name` to `output`, atomically; a format this install cannot write
    is an InputError before anything is written."""
    problem = unavailable(name)
    if problem is not None:
        raise InputError(f"--format {name}", problem)
    renderer = get_renderer(name)
    with atomic_output(output) as handle:
        renderer.render(report, handle)
