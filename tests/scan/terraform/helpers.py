"""Run `auditor scan terraform` and `auditor check` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import StorageResource

FIXTURES = Path(__file__).parents[3] / "fixtures" / "iac" / "terraform"


def scan(tmp_path: Path, *args: str) -> tuple[Result, Path]:
    """`auditor scan terraform ARGS -o tmp/i.jsonl` (the result, and the inventory path)."""
    inventory = tmp_path / "i.jsonl"
    result = CliRunner().invoke(cli, ["scan", "terraform", *args, "--no-progress", "-o", str(inventory)])
    assert "Traceback" not in result.output
    return result, inventory


def records(tmp_path: Path, *args: str) -> dict[str, StorageResource]:
    """The records of a successful scan, by address (the id after '#')."""
    result, inventory = scan(tmp_path, *args)
    assert result.exit_code == 0, (result.output, result.exception)
    found: dict[str, StorageResource] = {}
    for record in read_inventory(inventory):
        assert isinstance(record, StorageResource)
        found[record.id.split("#", 1)[1]] = record
    return found


def findings(inventory: Path, *params: str) -> list[dict[str, Any]]:
    """`auditor check --inventory I --format json` findings (shipped policies)."""
    args = ["check", "--inventory", str(inventory), "--format", "json"]
    for param in params:
        args += ["--param", param]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    found: list[dict[str, Any]] = document["findings"]
    return found


def verdicts(tmp_path: Path, case: str, *params: str) -> dict[tuple[str, str], str]:
    """Status by (policy, address) for one fixture, scanned then checked (zone eu unless given)."""
    result, inventory = scan(tmp_path, str(FIXTURES / case / "plan.json"))
    assert result.exit_code == 0, (result.output, result.exception)
    return {
        (f["policy_id"], f["resource"]["id"].split("#", 1)[1]): f["status"]
        for f in findings(inventory, *(params or ("zone=eu",)))
    }
