"""Baselines: accepted current failures, so a gate fails only on new ones.

Entries are matched by policy id + resource id, never by name: a bucket with the same name in
another account has another id and is not hidden. Baselined findings stay `fail` in every report,
with `"baselined": true`; only the gate ignores them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.atomicfile import atomic_output
from auditor.document import BaselineUse, FindingsDocument
from auditor.findings import Status
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


def baseline_from_document(document: FindingsDocument) -> BaselineFile:
    """A baseline of every `fail` finding in a findings document (waived ones need no baseline)."""
    entries: dict[tuple[str, str], BaselineEntry] = {}
    for finding in document.findings:
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
        source_run=document.run.id,
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


def apply_baseline(document: FindingsDocument, baseline: BaselineFile, *, source: str) -> int:
    """Mark baselined failures in `document` and recompute its gate; returns how many were marked.

    The gate counts, per the foundation contract, failures and errors at or above `fail_on`;
    baselined failures no longer count. Errors are never baselined: unknown is not accepted.
    """
    keys = baseline.keys()
    run = document.run
    gate = run.gate
    threshold = gate.fail_on
    marked = failures = errors = 0
    for finding in document.findings:
        at_threshold = finding.severity.at_least(threshold)
        if finding.status is Status.FAIL:
            if finding.key in keys:
                finding.baselined = True
                marked += 1
            elif at_threshold:
                failures += 1
        elif finding.status is Status.ERROR and at_threshold:
            errors += 1
    gate.failures = failures
    gate.errors = errors
    gate.baseline = BaselineUse(file=source, entries=len(keys), baselined=marked)
    gate.exit_code = gate_code(failures, errors, len(run.coverage.gaps), gate.allow_incomplete)
    return marked


def gate_code(failures: int, errors: int, gaps: int, allow_incomplete: bool) -> int:
    """0 clean, 1 violations, 3 incomplete: the same rule as `auditor.evaluate.gate_exit_code`."""
    if failures:
        return 1
    if (errors or gaps) and not allow_incomplete:
        return 3
    return 0
