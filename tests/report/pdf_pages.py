"""Reading a printed report back: each page's text lines with their height on the page and font size,
to check what a reader of the paper sees (the running header and footer, where headings fall)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from pypdf import PageObject, PdfReader

# The page area between the running header and footer (PDF points from the bottom of an A4 page,
# 842 pt high; the @page margins are 16 mm at the top and 14 mm at the bottom).
BODY_BOTTOM, BODY_TOP = 40.0, 795.0
# Headings print at 12 px (h4) and larger: 9 pt. Body text, tables and code print smaller.
HEADING_POINTS = 8.8


@dataclass(frozen=True)
class Line:
    """One run of text on a page: its height above the bottom edge, its font size (pt), its text."""

    y: float
    size: float
    text: str


def _runs(page: PageObject) -> list[Line]:
    lines: list[Line] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        words = " ".join(text.split())
        if words:
            lines.append(Line(cm[5] + tm[5] * cm[3], size * tm[3] * cm[3], words))

    page.extract_text(visitor_text=visit)
    return lines


def page_lines(path: Path) -> list[list[Line]]:
    """The text runs of every page of the PDF at `path`."""
    return [_runs(page) for page in PdfReader(path).pages]


def page_texts(path: Path) -> list[str]:
    """The text of every page, as pypdf extracts it, with typographic ligatures (a run id's "ff"
    drawn as U+FB00) spelled out as their letters."""
    return [unicodedata.normalize("NFKC", page.extract_text()) for page in PdfReader(path).pages]


def last_lines(lines: list[Line]) -> list[Line]:
    """The runs of the lowest line of the page body (above the running footer)."""
    body = [line for line in lines if BODY_BOTTOM < line.y < BODY_TOP]
    if not body:
        return []
    lowest = min(line.y for line in body)
    return [line for line in body if line.y - lowest < 2]


def is_heading(line: Line, headings: list[str]) -> bool:
    """Whether a text run is (a line of) one of the report's headings, at a heading's size."""
    return line.size >= HEADING_POINTS and any(line.text in heading for heading in headings)


def stranded_headings(pages: list[list[Line]], headings: list[str]) -> list[tuple[int, str]]:
    """(page number, text) of every page (`page_lines`) whose last line is a heading: a heading cut
    off from what it introduces."""
    found = []
    for number, lines in enumerate(pages, 1):
        last = last_lines(lines)
        if last and any(is_heading(line, headings) for line in last):
            found.append((number, " ".join(line.text for line in last)))
    return found


def heading_lines(pages: list[list[Line]], headings: list[str]) -> int:
    """How many heading runs the pages hold (the check above is not vacuous when this is large)."""
    return sum(is_heading(line, headings) for lines in pages for line in lines)


def squashed(text: str) -> str:
    """Text with lines broken after a hyphen or a slash (inside a name or path) joined again, and runs
    of white space made one space."""
    return " ".join(re.sub(r"([-/])[ \t]*\n\s*", r"\1", text).split())
