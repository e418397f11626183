"""`auditor check` end to end on the demo estate: statuses, waivers, the JSON contract, exit codes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import DEMO_INVENTORY, DEMO_WAIVERS

Cli = Callable[..., Result]


@pytest.fixture
def demo_findings(run_cli: Cli, tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "findings.json"
    result = run_cli(
        "check",
        "--inventory",
        DEMO_INVENTORY,
        "--param",
        "zone=eu",
        "--waivers",
        DEMO_WAIVERS,
        "--format",
        "json",
        "--output",
        out,
        "--today",
        "2026-11-24",
    )
    assert result.exit_code == 1, result.output
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_demo_shows_every_status_and_an_expired_waiver(demo_findings: dict[str, Any]) -> None:
    statuses = Counter(f["status"] for f in demo_findings["findings"])
    assert {"pass", "fail", "error", "waived"} <= set(statuses)
    expired = [f for f in demo_findings["findings"] if f.get("waiver", {}).get("expired")]
    assert expired and all(f["status"] == "fail" for f in expired)
    waived = [f for f in demo_findings["findings"] if f["status"] == "waived"]
    assert all(f["underlying_status"] in ("fail", "error") and not f["waiver"]["expired"] for f in waived)
    entries = {e["id"]: e for e in demo_findings["run"]["waivers"]["entries"]}
    assert entries["W-2026-002"]["expired"] and entries["W-2026-002"]["applied"] == 0


def test_every_shipped_policy_passes_fails_and_errors_somewhere(demo_findings: dict[str, Any]) -> None:
    seen: dict[str, set[str]] = {}
    for finding in demo_findings["findings"]:
        seen.setdefault(finding["policy_id"], set()).add(finding["underlying_status"])
    assert len(seen) == 9  # the 7 storage policies and the AI ones (processing-in-zone, provider-opt-out)
    for policy_id, statuses in seen.items():
        assert {"pass", "fail", "error"} <= statuses, policy_id


def test_findings_follow_the_contract(demo_findings: dict[str, Any]) -> None:
    run = demo_findings["run"]
    assert run["schema_version"] and run["tool"]["name"] == "auditor"
    assert run["parameters"]["zone"] == "eu"
    assert run["gate"]["exit_code"] == 1
    assert run["coverage"]["gaps"][0]["account"] == "777788889999"
    assert sum(run["counts"]["by_status"].values()) == len(demo_findings["findings"])
    for finding in demo_findings["findings"]:
        assert {"policy_id", "status", "severity", "resource", "message", "controls", "evidence"} <= set(
            finding
        )
        assert {"provider", "account", "id", "name", "regions"} <= set(finding["resource"])
        assert finding["controls"]["gdpr"] and finding["controls"]["soc2"] and finding["controls"]["iso27001"]


def test_error_findings_carry_the_reason_and_evidence(demo_findings: dict[str, Any]) -> None:
    errors = [
        f
        for f in demo_findings["findings"]
        if f["status"] == "error"
        and f["resource"]["name"] == "acme-audit-trail"
        and f["policy_id"] == "encryption.at-rest-aes256"
    ]
    assert len(errors) == 1
    finding = errors[0]
    assert "AccessDenied" in finding["message"]
    assert finding["observed"]["encryption.enabled"]["unknown"]["code"] == "access_denied"
    assert [e["call"] for e in finding["evidence"]] == ["s3:GetBucketEncryption"]
    assert finding["evidence"][0]["error"].startswith("AccessDenied")


def test_zone_parameter_changes_the_verdict(run_cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "us.json"
    run_cli("check", "--inventory", DEMO_INVENTORY, "--param", "zone=us", "--format", "json", "-o", out)
    findings = json.loads(out.read_text())["findings"]
    by_name = {
        f["resource"]["name"]: f["status"] for f in findings if f["policy_id"] == "residency.data-in-zone"
    }
    assert by_name["acme-legacy-uploads"] == "pass"
    assert by_name["acme-customer-data-eu"] == "fail"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["--fail-on", "critical"], 1, id="critical-failures-exist"),
        pytest.param(
            ["--policies", "POLICIES/transport.yaml", "--fail-on", "critical"], 3, id="gap-still-incomplete"
        ),
        pytest.param(
            ["--policies", "POLICIES/transport.yaml", "--fail-on", "critical", "--allow-incomplete"],
            0,
            id="nothing-critical",
        ),
    ],
)
def test_fail_on_threshold(run_cli: Cli, args: list[str], expected: int, policy_dir: Path) -> None:
    args = [a.replace("POLICIES", str(policy_dir)) for a in args]
    result = run_cli("check", "--inventory", DEMO_INVENTORY, *args)
    assert result.exit_code == expected, result.output


def _inventory(tmp_path: Path, *records: dict[str, Any]) -> Path:
    path = tmp_path / "inv.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


BUCKET: dict[str, Any] = {
    "provider": "aws",
    "kind": "bucket",
    "account": "1",
    "name": "b",
    "id": "arn:aws:s3:::b",
    "tags": {"ai-training": "opt-out"},
}


def test_errors_alone_exit_3_unless_allowed(run_cli: Cli, tmp_path: Path, policy_dir: Path) -> None:
    denied = {
        **BUCKET,
        "tags": None,
        "unknown": {"tags": {"code": "access_denied", "reason": "AccessDenied"}},
    }
    inventory = _inventory(tmp_path, denied)
    training = policy_dir / "training.yaml"
    assert run_cli("check", "--inventory", inventory, "--policies", training).exit_code == 3
    assert (
        run_cli("check", "--inventory", inventory, "--policies", training, "--allow-incomplete").exit_code
        == 0
    )


def test_coverage_gap_alone_is_incomplete(run_cli: Cli, tmp_path: Path, policy_dir: Path) -> None:
    gap = {
        "record": "gap",
        "provider": "aws",
        "account": "2",
        "scope": "account",
        "code": "access_denied",
        "reason": "AssumeRole denied",
    }
    inventory = _inventory(tmp_path, BUCKET, gap)
    result = run_cli("check", "--inventory", inventory, "--policies", policy_dir / "training.yaml")
    assert result.exit_code == 3
    assert "AssumeRole denied" in result.output


def test_clean_estate_exits_0(run_cli: Cli, tmp_path: Path, policy_dir: Path) -> None:
    result = run_cli(
        "check", "--inventory", _inventory(tmp_path, BUCKET), "--policies", policy_dir / "training.yaml"
    )
    assert result.exit_code == 0, result.output
    assert "1 pass" in result.output


def _finding(document: dict[str, Any], policy_id: str, name: str) -> dict[str, Any]:
    (found,) = [
        f for f in document["findings"] if f["policy_id"] == policy_id and f["resource"]["name"] == name
    ]
    return found


def test_demo_partial_knowledge_is_shown_and_decides_what_it_proves(demo_findings: dict[str, Any]) -> None:
    # acme-vendor-sync: eu-west-1 is known, a replication destination's region is not: undecided in eu.
    vendor = _finding(demo_findings, "residency.data-in-zone", "acme-vendor-sync")
    assert vendor["status"] == "error"
    unknown = vendor["observed"]["location.regions"]["unknown"]
    assert unknown["code"] == "access_denied" and unknown["partial"] == "members"
    assert unknown["value"] == ["eu-west-1"]
    assert vendor["message"].startswith(
        'location.regions includes ["eu-west-1"] (others unknown: access_denied:'
    )
    assert vendor["reasons"] and vendor["reasons"][0].startswith("location.regions: access_denied:")
    # acme-partner-drop: the bucket policy is unreadable, the AWS floor 1.2 is a proven lower bound.
    tls = _finding(demo_findings, "transport.tls-minimum", "acme-partner-drop")
    assert tls["status"] == "pass" and "reasons" not in tls
    bound = tls["observed"]["transport.min_tls_version"]["unknown"]
    assert (bound["partial"], bound["value"]) == ("at_least", "1.2")
    assert tls["message"].startswith(
        'transport.min_tls_version >= "1.2" (exact value unknown: access_denied:'
    )
    unknown_attributes = demo_findings["run"]["coverage"]["unknown_attributes"]
    assert unknown_attributes["transport.min_tls_version"]["access_denied"] == 1


@pytest.mark.parametrize(
    ("param", "policy_id", "name", "expected"),
    [
        pytest.param(
            "min_tls=1.3", "transport.tls-minimum", "acme-partner-drop", "error", id="bound-below-1.3"
        ),
        pytest.param("min_tls=1.3", "transport.tls-minimum", "acme-logs-eu", "fail", id="known-floor-1.3"),
        pytest.param(
            "zone=us", "residency.data-in-zone", "acme-vendor-sync", "fail", id="known-member-outside"
        ),
    ],
)
def test_demo_partial_knowledge_under_other_parameters(
    run_cli: Cli, tmp_path: Path, param: str, policy_id: str, name: str, expected: str
) -> None:
    out = tmp_path / "f.json"
    run_cli("check", "--inventory", DEMO_INVENTORY, "--param", param, "--format", "json", "-o", out)
    assert _finding(json.loads(out.read_text()), policy_id, name)["status"] == expected
