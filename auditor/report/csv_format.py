"""CSV: one row per finding, most severe first, for spreadsheets and data tools.

Besides the finding, each row carries the resource's `owner` tag, its `group` (the value of the
`--group-by-tag` key, by default the owner), the policy's `remediation` for the resource's cloud, and for
an undecided finding `undecided_action`: what lets the next run decide it.

Cells that a spreadsheet would run as a formula (starting with = + - @ tab or carriage return) get a
leading apostrophe, as OWASP recommends for CSV injection: https://owasp.org/www-community/attacks/CSV_Injection
Control and bidi characters (ESC, U+202E, ...) are written visibly as `<U+XXXX>`; tab and newline stay.

Rows are ordered by spooling them per (severity, status, policy) group into temporary files while the
findings are read once, then writing the groups in order (GroupSpool): memory stays flat however many
findings there are. A reference-form document rendered without its inventory gets two more columns
saying where each finding's evidence is (REFERENCE_COLUMNS).
"""

from __future__ import annotations

import csv
import heapq
import io
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import orjson

from auditor.document import FindingRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.undecided import actions_text, undecided_actions
from auditor.report.view import (
    Grouping,
    display_value,
    finding_places,
    policy_details,
    report_frameworks,
    report_grouping,
    severity_sort_key,
    training_text,
)

BASE_COLUMNS = [
    "policy_id",
    "status",
    "underlying_status",
    "severity",
    "provider",
    "account",
    "resource_id",
    "resource_name",
    "kind",
    "regions",
    "message",
    "observed",
    "expected",
]
WAIVER_COLUMNS = ["waiver_id", "waiver_expired", "waiver_approver", "waiver_expires", "waiver_justification"]
# `evidence_locations` (file:line of the declarations, infrastructure as code) came last, then the AI
# columns (findings JSON 1.5), then owner, group and what to do: the columns before them keep their
# positions.
TAIL_COLUMNS = [
    "reasons",
    "evidence_calls",
    "evidence_at",
    "baselined",
    "evidence_locations",
    "processing_regions",
    "training",
    "attested",
    "owner",
    "group",
    "remediation",
    "undecided_action",
]
# Only for a reference-form document (findings JSON 2.0) rendered without its inventory, whose findings
# carry no evidence: where each finding's evidence is (indexes into the `evidence` of the resource's
# inventory record, and that inventory with its digest), after every other column.
REFERENCE_COLUMNS = ["evidence_refs", "evidence_inventory"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """A value as a CSV cell that no spreadsheet evaluates."""
    text = visible(value if isinstance(value, str) else "" if value is None else str(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def columns(frameworks: list[str]) -> list[str]:
    """The header row."""
    return [*BASE_COLUMNS, *frameworks, *WAIVER_COLUMNS, *TAIL_COLUMNS]


def row(
    finding: FindingRecord,
    frameworks: list[str],
    grouping: Grouping | None = None,
    remediation: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """One finding as a row of cells (`remediation`: per policy id, the policy's text per cloud)."""
    resource = finding.resource
    waiver = finding.waiver
    values: list[Any] = [
        finding.policy_id,
        finding.status,
        finding.underlying_status,
        finding.severity,
        resource.provider,
        resource.account,
        resource.id,
        resource.name,
        resource.kind,
        " ".join(resource.regions),
        finding.message,
        orjson.dumps(finding.observed).decode(),
        finding.expected,
        *(" ".join(finding.controls.get(f, [])) for f in frameworks),
        waiver.id if waiver else None,
        ("true" if waiver.expired else "false") if waiver else "",
        waiver.approver if waiver else None,
        waiver.expires if waiver else None,
        waiver.justification if waiver else None,
        " | ".join(finding.reasons),
        " ".join(str(e.get("call")) for e in finding.evidence),
        " ".join(str(e.get("at")) for e in finding.evidence),
        "true" if finding.baselined else "false",
        " ".join(place.file_line for place in finding_places(finding)),
        _processing(resource.processing_regions),
        training_text(resource.training) if resource.training is not None else None,
        " ".join(resource.attested),
        resource.owner,
        grouping.of(resource) if grouping is not None else None,
        (remediation or {}).get(finding.policy_id, {}).get(resource.provider),
        actions_text(undecided_actions(finding)) if finding.status is Status.ERROR else None,
    ]
    return [cell(v) for v in values]


def _processing(regions: list[str] | dict[str, Any] | None) -> str | None:
    """Processing regions space-separated (`*`: any region), or `unknown (code: reason)`."""
    if regions is None:
        return None
    return " ".join(regions) if isinstance(regions, list) else display_value(regions)


_RECORD_HEAD = struct.Struct(">II")  # a spooled record: its sort key's length, its data's length
SPOOL_BUFFER_BYTES = 16 << 20


G = TypeVar("G", bound=tuple[Any, ...])


class GroupSpool(Generic[G]):
    """Records (bytes) filed by group in temporary files, read back one group at a time, so a report
    can be written in an order other than the findings' without holding them all.

    Within a group, records come back in the order of their `sort_key` (bytes; records with equal
    keys in the order they were added): each group's buffer is sorted when it is spilled to the
    group's file (one sorted run per spill), and the runs are merged on reading. At most
    `buffer_bytes` (default SPOOL_BUFFER_BYTES) are held in memory, plus one record per run while
    merging.
    """

    def __init__(self, buffer_bytes: int | None = None) -> None:
        self.buffer_bytes = SPOOL_BUFFER_BYTES if buffer_bytes is None else buffer_bytes
        self._directory = tempfile.TemporaryDirectory(prefix="auditor-report-")
        self._buffers: dict[G, list[tuple[bytes, bytes]]] = {}
        self._buffered = 0
        self._files: dict[G, Path] = {}
        self._runs: dict[G, list[tuple[int, int]]] = {}  # (start, end) offsets of each run

    def add(self, group: G, data: bytes, sort_key: bytes = b"") -> None:
        """File one record under `group`."""
        self._buffers.setdefault(group, []).append((sort_key, data))
        self._buffered += len(data) + len(sort_key) + 64
        if self._buffered > self.buffer_bytes:
            self._spill()

    def groups(self) -> list[G]:
        """Every group with a record, in the order each first got one."""
        return list(self._buffers)

    def read(self, group: G) -> Iterator[bytes]:
        """The records of `group`, in sort-key order (stable)."""
        records = sorted(self._buffers.get(group, ()), key=lambda record: record[0])
        runs = self._runs.get(group, [])
        if not runs:
            yield from (data for _, data in records)
            return
        sources = [self._read_run(self._files[group], start, end) for start, end in runs]
        for _, data in heapq.merge(*sources, iter(records), key=lambda record: record[0]):
            yield data

    def close(self) -> None:
        """Remove the temporary files."""
        self._directory.cleanup()

    def __enter__(self) -> GroupSpool[G]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _spill(self) -> None:
        for group, records in self._buffers.items():
            if not records:
                continue
            records.sort(key=lambda record: record[0])
            path = self._files.get(group)
            if path is None:
                path = self._files[group] = Path(self._directory.name) / f"{len(self._files)}.spool"
            with path.open("ab") as handle:
                start = handle.tell()
                for key, data in records:
                    handle.write(_RECORD_HEAD.pack(len(key), len(data)) + key + data)
                self._runs.setdefault(group, []).append((start, handle.tell()))
            records.clear()
        self._buffered = 0

    @staticmethod
    def _read_run(path: Path, start: int, end: int) -> Iterator[tuple[bytes, bytes]]:
        with path.open("rb") as handle:
            handle.seek(start)
            position = start
            while position < end:
                key_length, data_length = _RECORD_HEAD.unpack(handle.read(_RECORD_HEAD.size))
                key = handle.read(key_length)
                yield key, handle.read(data_length)
                position += _RECORD_HEAD.size + key_length + data_length


def _row_bytes(cells: list[str]) -> bytes:
    """One CSV row (RFC 4180, CRLF) as UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue().encode()


class CsvRenderer(Renderer):
    """One row per finding (RFC 4180, UTF-8, header row)."""

    format = "csv"
    extension = ".csv"

    def render(self, report: ReportInput, out: IO[bytes]) -> None:
        """Write the header and one row per finding, most severe first (then status, policy; in
        findings order within those): rows are spooled by that order's group as the findings are
        read, then the groups written in order."""
        frameworks = [f.name for f in report_frameworks(report)]
        grouping = report_grouping(report)
        run = report.run
        remediation = {p.id: p.remediation for p in policy_details(run)}
        unresolved = report.stream.reference_form and report.stream.inventory is None
        inventory = cell(f"{run.inventory} {run.inventory_digest}")
        out.write(_row_bytes(columns(frameworks) + (REFERENCE_COLUMNS if unresolved else [])))
        with GroupSpool[tuple[int, int, str]]() as spool:
            for finding in report.findings():
                cells = row(finding, frameworks, grouping, remediation)
                if unresolved:
                    refs = finding.evidence_refs
                    cells += [" ".join(map(str, refs)), inventory] if refs is not None else ["", ""]
                spool.add(severity_sort_key(finding), _row_bytes(cells))
            for group in sorted(spool.groups()):
                for data in spool.read(group):
                    out.write(data)
