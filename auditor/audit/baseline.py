"""Baselines: accepted current failures, so a gate fails only on new ones.

Entries are matched by policy id + resource id, never by name: a bucket with the same name in
another account has another id and is not hidden. Baselined findings stay `fail` in every report,
with `"baselined": true`; only the gate ignores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.atomicfile import atomic_output
from auditor.document import BaselineUse, FindingRecord, RunInfo
from auditor.findings import Severity, Status
from auditor.policy.yamlfile import load_yaml


class BaselineEntry(BaseModel):
    """One accepted failure. `name`, `account`, `severity` are for the reader; matching ignores them."""

    model_config = ConfigDict(extra="forbid")

    policy: str = Field(min_length=1)
    resource: str = Field(min_length=1, description="The resource id (ARN, gs:// URL, ARM id).")
    provider: str | None = None
    account: str | None = None
    name: str | None = None
    severity: str | None = None


class BaselineFile(BaseModel):
    """A baseline file (YAML), as `auditor baseline create` writes it."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    created_at: str | None = None
    source_run: str | None = None
    entries: list[BaselineEntry] = Field(default_factory=list)

    def keys(self) -> set[tuple[str, str]]:
        """(policy id, resource id) of every entry."""
        return {(e.policy, e.resource) for e in self.entries}


def load_baseline(path: Path) -> BaselineFile:
    """Read a baseline file; errors name file:line."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a baseline file is a mapping with an 'entries:' list")
    try:
        return BaselineFile.model_validate(doc.data)
    except ValidationError as exc:
        raise doc.validation_error(exc) from exc


def baseline_from_findings(run: RunInfo, findings: Iterable[FindingRecord]) -> BaselineFile:
    """A baseline of every `fail` finding of a run (waived ones need no baseline), the findings
    read one at a time."""
    entries: dict[tuple[str, str], BaselineEntry] = {}
    for finding in findings:
        if finding.status is not Status.FAIL:
            continue
        resource = finding.resource
        key = finding.key
        entries.setdefault(
            key,
            BaselineEntry(
                policy=key[0],
                resource=key[1],
                provider=resource.provider,
                account=resource.account,
                name=resource.name,
                severity=finding.severity.value,
            ),
        )
    return BaselineFile(
        created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
        source_run=run.id,
        entries=sorted(entries.values(), key=lambda e: (e.policy, e.resource)),
    )


def write_baseline(baseline: BaselineFile, path: Path) -> None:
    """Write the baseline as YAML (reviewable in a pull request), atomically."""
    header = (
        "# auditor baseline: accepted failures, matched by policy id + resource id.\n"
        "# Only failures not listed here fail the gate. Review removals and additions like code.\n"
    )
    body = yaml.safe_dump(
        baseline.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True, width=120
    )
    with atomic_output(path) as handle:
        handle.write((header + body).encode())


@dataclass
class BaselineMarks:
    """The failures of one run a baseline accepts: their positions among the run's findings, and
    how many of them are at or above the gate's threshold."""

    positions: set[int] = field(default_factory=set)
    at_threshold: int = 0


_FAILED = b'"status":"fail"'


def find_baselined(texts: Iterable[bytes], baseline: BaselineFile, run: RunInfo) -> BaselineMarks:
    """Which of the run's findings (each one's JSON, in document order) `baseline` accepts.

    Only findings whose text can hold a failure are parsed; errors are never baselined (unknown is
    not accepted), so memory holds only the positions marked, however many findings there are.
    """
    keys = baseline.keys()
    threshold = run.gate.fail_on
    marks = BaselineMarks()
    if not keys:
        return marks
    for position, text in enumerate(texts):
        if _FAILED not in text:
            continue
        finding = orjson.loads(text)
        if finding.get("status") != Status.FAIL.value:
            continue
        if (finding["policy_id"], finding["resource"]["id"]) in keys:
            marks.positions.add(position)
            if Severity(finding["severity"]).at_least(threshold):
                marks.at_threshold += 1
    return marks


def mark_baselined(texts: Iterable[bytes], marks: BaselineMarks) -> Iterator[bytes]:
    """The findings' JSON with `"baselined": true` added, last, to those `marks` holds (where the
    inline form's field order puts it); the others exactly as they are."""
    positions = marks.positions
    for position, text in enumerate(texts):
        if position in positions:
            finding = orjson.loads(text)
            finding["baselined"] = True
            text = orjson.dumps(finding)
        yield text


def apply_baseline_gate(run: RunInfo, marks: BaselineMarks, baseline: BaselineFile, *, source: str) -> None:
    """Recompute the gate of `run` without the baselined failures (`marks`), from its counts.

    The gate counts, per the foundation contract, failures and errors at or above `fail_on`;
    baselined failures no longer count.
    """
    gate = run.gate
    counted = [
        by_status for severity, by_status in run.counts.by_severity.items() if severity.at_least(gate.fail_on)
    ]
    failures = sum(by_status.get(Status.FAIL, 0) for by_status in counted) - marks.at_threshold
    errors = sum(by_status.get(Status.ERROR, 0) for by_status in counted)
    gate.failures = failures
    gate.errors = errors
    gate.baseline = BaselineUse(file=source, entries=len(baseline.keys()), baselined=len(marks.positions))
    gate.exit_code = gate_code(failures, errors, len(run.coverage.gaps), gate.allow_incomplete)


def gate_code(failures: int, errors: int, gaps: int, allow_incomplete: bool) -> int:
    """0 clean, 1 violations, 3 incomplete: the same rule as `auditor.evaluate.gate_exit_code`."""
    if failures:
        return 1
    if (errors or gaps) and not allow_incomplete:
        return 3
    return 0
