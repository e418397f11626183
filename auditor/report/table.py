"""The terminal table of `auditor check`: every finding that is not a pass (most severe first), then the
totals.

Cloud values reach a terminal here, so none is interpreted: no rich markup (`[link=...]`), no emoji
codes, and control and bidi characters (ESC sequences, U+202E, ...) are written as `<U+XXXX>`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor.document import RunInfo
from auditor.errors import visible
from auditor.findings import Finding, Status

_STYLE = {Status.FAIL: "red", Status.ERROR: "yellow", Status.WAIVED: "cyan", Status.PASS: "green"}
_STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.WAIVED: 2, Status.PASS: 3}


def render_table(findings: Iterable[Finding], run: RunInfo, *, width: int = 160, color: bool = False) -> str:
    """Non-pass findings as a table and a summary of counts, coverage and waivers."""
    table = Table(title="auditor findings (non-pass)", show_lines=False, expand=False)
    for column in ("status", "severity", "policy", "provider", "resource", "message"):
        table.add_column(column, overflow="fold")
    shown = 0
    rows = sorted(
        (f for f in findings if f.status is not Status.PASS),
        key=lambda f: (-f.severity.rank, _STATUS_ORDER[f.status]),
    )
    for finding in rows:
        shown += 1
        status = finding.status.value
        if finding.status is Status.WAIVED:
            status = f"waived ({finding.underlying_status.value})"
        elif finding.waiver is not None and finding.waiver.expired:
            status = f"{status} (waiver expired)"
        table.add_row(
            Text(status, style=_STYLE[finding.status]),
            *(
                _text(value)
                for value in (
                    finding.severity.value,
                    finding.policy_id,
                    finding.resource.provider,
                    finding.resource.name,
                    finding.message + _attested(finding),
                )
            ),
        )
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        highlight=False,
        markup=False,  # every printed line below carries cloud values
        emoji=False,
    )
    if shown:
        console.print(table)
    counts = run.counts.by_status
    coverage = run.coverage
    console.print(
        f"{coverage.resources} resources, {run.counts.findings} findings: "
        f"{counts[Status.PASS]} pass, {counts[Status.FAIL]} fail, {counts[Status.ERROR]} error, "
        f"{counts[Status.WAIVED]} waived"
    )
    unknown = coverage.unknown_attributes
    if unknown:
        parts = [
            f"{path} ({', '.join(f'{c}: {n}' for c, n in codes.items())})" for path, codes in unknown.items()
        ]
        console.print(_text("coverage: unreadable attributes: " + "; ".join(parts)))
    for gap in coverage.gaps:
        console.print(_text(f"coverage gap: {gap.provider} {gap.account} {gap.scope}: {gap.reason}"))
    for entry in run.waivers.entries:
        if entry.expired:
            console.print(_text(f"waiver {entry.id} ({entry.policy}) expired on {entry.expires}"))
    gate = run.gate
    console.print(f"gate (fail-on {gate.fail_on}): exit {gate.exit_code}")
    return buffer.getvalue()


def _attested(finding: Finding) -> str:
    """` (attested)` when a value the finding read was attested, not observed."""
    attested = finding.resource.attested
    return " (attested)" if attested and any(o.attribute in attested for o in finding.observations) else ""


def _text(value: object) -> Text:
    """A value as plain terminal text: no markup, control and bidi characters visible."""
    return Text(visible(str(value)))
