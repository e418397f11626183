"""The findings JSON document (`{"run": {...}, "findings": [...]}`), written streaming.

This is a public contract (docs/findings-json.md): add fields, never rename or remove them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from auditor import __version__
from auditor.atomicfile import atomic_output
from auditor.evaluate import CompiledPolicy, RunTotals, WaiverBook
from auditor.findings import Finding

SCHEMA_VERSION = "1.1"


def run_info(
    *,
    run_id: str,
    started_at: datetime,
    inventory: str,
    policies: list[CompiledPolicy],
    parameters: dict[str, Any],
    totals: RunTotals,
    waivers: WaiverBook | None,
    waivers_file: str | None,
    fail_on: str,
    allow_incomplete: bool,
    exit_code: int,
) -> dict[str, Any]:
    """The `run` object: what ran, on what, with which result and coverage."""
    unknown = {path: dict(codes) for path, codes in sorted(totals.unknown_attributes.items())}
    return {
        "schema_version": SCHEMA_VERSION,
        "id": run_id,
        "tool": {"name": "auditor", "version": __version__},
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "inventory": inventory,
        "parameters": parameters,
        "policies": [
            {
                "id": p.policy.id,
                "title": p.policy.title,
                "severity": p.policy.severity.value,
                "family": p.policy.family,
                "source": p.loaded.where,
                "parameters": p.parameters,
                "controls": p.policy.controls,
                "counts": dict(totals.by_policy.get(p.policy.id, {})),
            }
            for p in policies
        ],
        "counts": {
            "findings": sum(totals.status.values()),
            "by_status": {s: totals.status.get(s, 0) for s in ("pass", "fail", "error", "waived")},
            "by_severity": {sev: dict(c) for sev, c in sorted(totals.by_severity.items())},
        },
        "coverage": {
            "resources": totals.resources,
            "resources_by_provider": dict(totals.resources_by_provider),
            "accounts": [{"provider": p, "account": a} for p, a in sorted(totals.accounts)],
            "regions": dict(sorted(totals.regions.items())),
            "unknown_attributes": unknown,
            "gaps": [g.model_dump(mode="json") for g in totals.gaps],
        },
        "waivers": {
            "file": waivers_file,
            "entries": [
                {
                    "id": use.waiver.key,
                    "policy": use.waiver.waiver.policy,
                    "expires": use.waiver.waiver.expires.isoformat(),
                    "expired": waivers is not None and use.waiver.waiver.expires < waivers.today,
                    "applied": use.applied,
                    "expired_matches": use.expired_matches,
                    "source": use.waiver.where,
                }
                for use in (waivers.uses if waivers else [])
            ],
        },
        "gate": {
            "fail_on": fail_on,
            "allow_incomplete": allow_incomplete,
            "failures": totals.gate_failures,
            "errors": totals.gate_errors,
            "exit_code": exit_code,
        },
    }


class FindingsSpool:
    """Findings streamed to a temporary file, so memory stays flat however many there are."""

    def __init__(self, directory: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix=".findings.", suffix=".spool", dir=directory)
        self.path = Path(name)
        self._handle: IO[bytes] = os.fdopen(fd, "w+b")
        self._first = True

    def add(self, finding: Finding) -> None:
        """Append one finding."""
        if not self._first:
            self._handle.write(b",\n")
        self._first = False
        self._handle.write(orjson.dumps(finding.to_json_dict()))

    def add_all(self, findings: Iterable[Finding]) -> None:
        """Append many findings."""
        for finding in findings:
            self.add(finding)

    def write_document(self, out: IO[bytes], run: dict[str, Any]) -> None:
        """Write `{"run": ..., "findings": [...]}` to `out`."""
        out.write(b'{"run": ')
        out.write(orjson.dumps(run, option=orjson.OPT_INDENT_2))
        out.write(b',\n"findings": [\n')
        self._handle.flush()
        self._handle.seek(0)
        while chunk := self._handle.read(1 << 20):
            out.write(chunk)
        out.write(b"\n]}\n")

    def close(self) -> None:
        """Remove the temporary file."""
        self._handle.close()
        self.path.unlink(missing_ok=True)


def write_findings_document(spool: FindingsSpool, run: dict[str, Any], output: Path | None) -> None:
    """Write the document atomically to `output`, or to stdout."""
    if output is None:
        spool.write_document(sys.stdout.buffer, run)
        sys.stdout.buffer.flush()
        return
    with atomic_output(output) as handle:
        spool.write_document(handle, run)
