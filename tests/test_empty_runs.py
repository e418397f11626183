"""Nothing checked is not a pass: empty inventories, gaps-only inventories and scans that reached nothing.

`auditor check` with zero resources evaluated exits 3 (incomplete) and says so last on stdout unless
`--allow-empty`; `--allow-incomplete` alone does not make an empty run green. `auditor scan <cloud>`
exits 3 when it wrote no resource and at least one coverage gap.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.scan.base import ScanSummary
from tests.conftest import SHIPPED_POLICIES

Cli = Callable[..., Result]

BUCKET: dict[str, Any] = {
    "provider": "aws",
    "kind": "bucket",
    "account": "1",
    "name": "b",
    "id": "arn:aws:s3:::b",
    "tags": {"ai-training": "opt-out"},
}
GAP: dict[str, Any] = {
    "record": "gap",
    "provider": "azure",
    "account": "sub-1",
    "scope": "subscription",
    "code": "error",
    "reason": "SSLError: certificate verify failed",
}


def _inventory(tmp_path: Path, *records: dict[str, Any]) -> Path:
    path = tmp_path / "inv.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _check_json(run_cli: Cli, inventory: Path, out: Path, *args: str | Path) -> tuple[Result, dict[str, Any]]:
    result = run_cli("check", "--inventory", inventory, "--format", "json", "-o", out, *args)
    document: dict[str, Any] = json.loads(out.read_text())
    return result, document


# --- auditor check --------------------------------------------------------------------------------


def test_zero_byte_inventory_is_incomplete_and_still_writes_findings(run_cli: Cli, tmp_path: Path) -> None:
    inventory = tmp_path / "empty.jsonl"
    inventory.write_bytes(b"")
    result, document = _check_json(run_cli, inventory, tmp_path / "f.json")
    assert result.exit_code == 3, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("incomplete: 0 resources evaluated") and "--allow-empty" in last
    run = document["run"]
    assert document["findings"] == []
    assert run["gate"]["exit_code"] == 3
    assert run["gate"]["nothing_evaluated"] is True and run["gate"]["allow_empty"] is False


def test_allow_empty_accepts_an_empty_inventory(run_cli: Cli, tmp_path: Path) -> None:
    inventory = tmp_path / "empty.jsonl"
    inventory.write_bytes(b"")
    result, document = _check_json(run_cli, inventory, tmp_path / "f.json", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "incomplete" not in result.output  # stdout and stderr
    gate = document["run"]["gate"]
    assert gate == {**gate, "exit_code": 0, "allow_empty": True, "nothing_evaluated": True}


def test_allow_incomplete_alone_does_not_make_an_empty_run_green(run_cli: Cli, tmp_path: Path) -> None:
    inventory = tmp_path / "empty.jsonl"
    inventory.write_bytes(b"")
    result = run_cli("check", "--inventory", inventory, "--allow-incomplete")
    assert result.exit_code == 3, result.output
    assert "0 resources evaluated" in result.stdout


def test_gaps_only_inventory_is_incomplete(run_cli: Cli, tmp_path: Path) -> None:
    inventory = _inventory(tmp_path, GAP)
    result, document = _check_json(run_cli, inventory, tmp_path / "f.json")
    assert result.exit_code == 3, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(
        "incomplete: 0 resources evaluated; 1 coverage gap: azure sub-1 subscription: error:"
    )
    assert "certificate verify failed" in last
    assert document["run"]["coverage"]["gaps"][0]["reason"] == GAP["reason"]


def test_gaps_only_needs_both_switches(run_cli: Cli, tmp_path: Path) -> None:
    """--allow-empty accepts the emptiness, not the gap: that still needs --allow-incomplete."""
    inventory = _inventory(tmp_path, GAP)
    empty_allowed = run_cli("check", "--inventory", inventory, "--allow-empty")
    assert empty_allowed.exit_code == 3
    assert "1 coverage gap" in empty_allowed.stdout and "0 resources evaluated" not in empty_allowed.output
    both = run_cli("check", "--inventory", inventory, "--allow-empty", "--allow-incomplete")
    assert both.exit_code == 0, both.output


def test_resources_no_policy_applies_to_are_nothing_evaluated(run_cli: Cli, tmp_path: Path) -> None:
    policies = tmp_path / "gcp-only.yaml"
    policies.write_text(
        "policies:\n"
        "  - id: custom.gcp-only\n"
        "    title: GCS buckets carry an owner label\n"
        "    description: Every GCS bucket names its owner.\n"
        "    severity: low\n"
        "    scope: {providers: [gcp]}\n"
        "    condition: {attribute: tags.owner, op: exists}\n"
        "    expected: an owner label\n"
    )
    inventory = _inventory(tmp_path, BUCKET)
    result = run_cli("check", "--inventory", inventory, "--policies", policies)
    assert result.exit_code == 3, result.output
    assert "no policy applies to any of the 1 resources" in result.stdout
    allowed = run_cli("check", "--inventory", inventory, "--policies", policies, "--allow-empty")
    assert allowed.exit_code == 0, allowed.output


def test_an_evaluated_inventory_records_something_evaluated(run_cli: Cli, tmp_path: Path) -> None:
    training = SHIPPED_POLICIES / "training.yaml"
    result, document = _check_json(
        run_cli, _inventory(tmp_path, BUCKET), tmp_path / "f.json", "--policies", training
    )
    assert result.exit_code == 0, result.output
    assert document["run"]["gate"]["nothing_evaluated"] is False
    assert "incomplete" not in result.output  # stdout and stderr


# --- auditor scan ---------------------------------------------------------------------------------


def _gap(account: str, reason: str) -> CoverageGap:
    return CoverageGap(
        provider="azure",
        account=account,
        scope="subscription",
        code=UnknownCode.ERROR,
        reason=reason,
        at=datetime.now(UTC),
    )


def test_scan_summary_every_scope_failed() -> None:
    summary = ScanSummary(
        provider="azure", gaps=[_gap("sub-1", "certificate verify failed"), _gap("s2", "x")]
    )
    assert summary.nothing_scanned and summary.exit_code == 3
    assert summary.render().splitlines()[-1] == (
        "nothing scanned: every scope failed: sub-1 subscription: error: certificate verify failed"
    )


@pytest.mark.parametrize(
    ("resources", "gaps"),
    [
        pytest.param(0, 0, id="empty-estate"),
        pytest.param(2, 1, id="partly-scanned"),
        pytest.param(1, 0, id="ok"),
    ],
)
def test_scan_summary_that_reached_something_exits_0(resources: int, gaps: int) -> None:
    summary = ScanSummary(provider="azure", resources=resources, gaps=[_gap("s", "r")] * gaps)
    assert not summary.nothing_scanned and summary.exit_code == 0
    assert summary.incomplete_reason is None
    assert "nothing scanned" not in summary.render()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere, and every endpoint an unreachable loopback port."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")


def test_aws_scan_without_credentials_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    inventory = tmp_path / "inv.jsonl"
    result = CliRunner().invoke(
        cli,
        ["scan", "aws", "--output", str(inventory), "--no-progress", "--max-attempts", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 3, (result.output, result.stderr)
    records = list(read_inventory(inventory))  # the gaps are written: they are the record of why
    assert records and all(isinstance(r, CoverageGap) for r in records)
    assert not any(isinstance(r, StorageResource) for r in records)
    assert "0 resources, " in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("nothing scanned: every scope failed: ")
