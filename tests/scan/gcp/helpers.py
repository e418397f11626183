"""Run `auditor scan gcp` / `auditor check` through click's CliRunner and read what they wrote."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource


@dataclass
class ScanRun:
    """What one scan wrote: resources by name (and every record), coverage gaps, the CLI result and
    its call counts."""

    result: Result
    resources: dict[str, StorageResource]
    gaps: list[CoverageGap]
    inventory: Path
    server_requests: dict[str, int] = field(default_factory=dict)
    records: list[StorageResource] = field(default_factory=list)

    def by_id(self, resource_id: str) -> StorageResource:
        """The one record with `resource_id`."""
        (found,) = [r for r in self.records if r.id == resource_id]
        return found

    def of_kind(self, kind: str) -> list[StorageResource]:
        """Every record of `kind`."""
        return [r for r in self.records if r.kind == kind]

    def operations(self) -> dict[str, int]:
        """Every operation count the scan summary printed."""
        found = re.findall(r"^  ([a-z]+:[A-Za-z.]+): (\d+) ", self.result.stdout, re.MULTILINE)
        return {op: int(n) for op, n in found}

    def calls(self, operation: str) -> int:
        """The count the scan summary printed for `operation` (0 when absent)."""
        return self.operations().get(operation, 0)


def scan_gcp(tmp_path: Path, endpoint: str, *args: str, env: dict[str, str] | None = None) -> ScanRun:
    """`STORAGE_EMULATOR_HOST=endpoint auditor scan gcp ARGS --output tmp/inv.jsonl` (with `env`)."""
    inventory = tmp_path / "inv.jsonl"
    runner = CliRunner(env={"STORAGE_EMULATOR_HOST": endpoint, **(env or {})})
    result = runner.invoke(cli, ["scan", "gcp", *args, "--no-progress", "--output", str(inventory)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output,
        result.exception,
    )
    assert "Traceback" not in result.output
    resources: dict[str, StorageResource] = {}
    records: list[StorageResource] = []
    gaps: list[CoverageGap] = []
    for record in read_inventory(inventory):
        if isinstance(record, StorageResource):
            assert record.id not in {r.id for r in records}, f"{record.id} listed twice"
            records.append(record)
            resources.setdefault(record.name, record)
        else:
            gaps.append(record)
    # Exit 3 (incomplete) exactly when nothing was scanned and a scope failed; otherwise 0.
    expected = 3 if gaps and not resources else 0
    assert result.exit_code == expected, (result.output, result.stderr, result.exception)
    return ScanRun(result, resources, gaps, inventory, records=records)


def check_statuses(inventory: Path, policies: Path | None, *params: str) -> dict[tuple[str, str], str]:
    """`auditor check --format json` (shipped policies when `policies` is None): status by (policy, id)."""
    args = ["check", "--inventory", str(inventory), "--format", "json"]
    if policies is not None:
        args += ["--policies", str(policies)]
    for param in params:
        args += ["--param", param]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 3), (result.output, result.stderr, result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    return {(f["policy_id"], f["resource"]["id"]): f["status"] for f in document["findings"]}
