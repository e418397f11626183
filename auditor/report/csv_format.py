"""CSV: one row per finding, most severe first, for spreadsheets and data tools.

Besides the finding, each row carries the resource's `owner` tag, its `group` (the value of the
`--group-by-tag` key, by default the owner), the policy's `remediation` for the resource's cloud, and for
an undecided finding `undecided_action`: what lets the next run decide it.

Cells that a spreadsheet would run as a formula (starting with = + - @ tab or carriage return) get a
leading apostrophe, as OWASP recommends for CSV injection: https://owasp.org/www-community/attacks/CSV_Injection
Control and bidi characters (ESC, U+202E, ...) are written visibly as `<U+XXXX>`; tab and newline stay.

Rows are ordered by spooling them per (severity, status, policy) group into temporary files while the
findings are read once, then writing the groups in order (auditor.report.spool.GroupSpool): memory
stays flat however many findings there are. A reference-form document rendered without its
inventory gets two more columns saying where each finding's evidence is (REFERENCE_COLUMNS).
"""

from __future__ import annotations

import csv
import io
from typing import IO, Any

import orjson

from auditor.document import FindingRecord
from auditor.errors import visible
from auditor.findings import Status
from auditor.report.base import Renderer, ReportInput
from auditor.report.spool import GroupSpool
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
        unresolved = report.stream.evidence_unresolved
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
