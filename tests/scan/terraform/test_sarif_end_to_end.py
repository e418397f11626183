"""A plan's findings reach SARIF pointing at the `.tf` file and line (what code scanning annotates)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import cli
from tests.scan.terraform.helpers import FIXTURES, scan


def test_sarif_results_point_at_the_declaring_tf_line(tmp_path: Path) -> None:
    plan = FIXTURES / "aws-v5" / "plan.json"
    result, inventory = scan(tmp_path, str(plan), "--source-root", str(FIXTURES / "aws-v5"))
    assert result.exit_code == 0, result.output
    findings = tmp_path / "findings.json"
    checked = CliRunner().invoke(
        cli, ["check", "--inventory", str(inventory), "--format", "json", "--output", str(findings)]
    )
    assert checked.exit_code in (1, 3), checked.output  # the fixture holds violations
    sarif = tmp_path / "r.sarif"
    reported = CliRunner().invoke(
        cli, ["report", "--findings", str(findings), "--format", "sarif", "-o", str(sarif)]
    )
    assert reported.exit_code == 0, reported.output
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    places = {
        (
            loc["physicalLocation"]["artifactLocation"]["uri"],
            loc["physicalLocation"]["region"]["startLine"],
        )
        for r in results
        for loc in r.get("locations", [])
        if "physicalLocation" in loc
    }
    # The KMS-keyed data buckets (for_each) are declared at main.tf:36, the nested module's bucket
    # at modules/logs/main.tf:11 (the same lines the evidence test asserts).
    assert ("main.tf", 36) in places
    assert ("modules/logs/main.tf", 11) in places
    assert all(not uri.startswith("/") for uri, _ in places)
