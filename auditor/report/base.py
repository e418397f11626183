"""The one interface every report format implements, and the dispatch from format name to module.

Renderers read the typed findings document (auditor.document, docs/findings-json.md), optionally with
the inventory it came from and a previous run's document, and write one output file. They read no
policy file: what the run evaluated is in the document. One module per format.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from auditor.atomicfile import atomic_output
from auditor.document import FindingsDocument


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
}
RENDERERS: dict[str, str] = {name: spec.renderer for name, spec in FORMATS.items()}


@dataclass
class ReportInput:
    """What a renderer gets: the findings document, and optional context."""

    document: FindingsDocument
    inventory_path: Path | None = None
    previous: FindingsDocument | None = None
    frameworks: list[str] = field(default_factory=list)


class Renderer(ABC):
    """Writes one report format."""

    format: ClassVar[str]
    extension: ClassVar[str]

    @abstractmethod
    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the report for `report` to the binary stream `out`."""


def get_renderer(name: str) -> Renderer:
    """The renderer for a format name (see RENDERERS)."""
    module_name, _, class_name = RENDERERS[name].partition(":")
    renderer = getattr(importlib.import_module(module_name), class_name)()
    assert isinstance(renderer, Renderer)
    return renderer


def render_to_file(name: str, report: ReportInput, output: Path) -> None:
    """Render `report` in format `name` to `output`, atomically."""
    renderer = get_renderer(name)
    with atomic_output(output) as handle:
        renderer.render(report, handle)
