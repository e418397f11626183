"""`auditor report` on the command line: options, output, and bad input (exit 2 with where and why)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.document import load_document
from auditor.frameworks import available_frameworks, control_verdict
from auditor.report.view import framework_views, policy_details

from .conftest import DEMO_INVENTORY


def report(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["report", *(str(a) for a in args)])


def test_report_writes_html_with_only_the_chosen_framework(demo_findings_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "audit.html"
    result = report(
        "--findings",
        demo_findings_path,
        "--inventory",
        DEMO_INVENTORY,
        "--format",
        "html",
        "--framework",
        "soc2",
        "--output",
        out,
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'id="fw-soc2"' in html and 'id="fw-gdpr"' not in html and 'id="fw-iso27001"' not in html
    assert "Customer-managed keys per region" in html  # from the inventory


def test_missing_findings_file_is_bad_input(tmp_path: Path) -> None:
    result = report("--findings", tmp_path / "nope.json", "--format", "csv", "--output", tmp_path / "x.csv")
    assert result.exit_code == 2
    assert "nope.json: cannot read findings" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_invalid_json_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"run": {')
    result = report("--findings", bad, "--format", "json", "--output", tmp_path / "x.json")
    assert result.exit_code == 2 and "bad.json: not valid JSON" in result.output


def test_wrong_schema_names_the_field(demo_findings_path: Path, tmp_path: Path) -> None:
    doc = json.loads(demo_findings_path.read_text())
    doc["findings"][3]["status"] = "maybe"
    bad = tmp_path / "wrong.json"
    bad.write_text(json.dumps(doc))
    result = report("--findings", bad, "--format", "sarif", "--output", tmp_path / "x.sarif")
    assert result.exit_code == 2
    assert "wrong.json: findings[3].status: 'maybe' is not one of" in result.output

    del doc["findings"][3]["resource"]["id"]
    bad.write_text(json.dumps(doc))
    assert (
        "findings[3].resource.id: field required"
        in report("--findings", bad, "--format", "sarif", "--output", tmp_path / "x.sarif").output
    )


def test_other_documents_and_versions_are_refused(demo_findings_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"findings": []}')
    assert (
        "not a findings document"
        in report("--findings", other, "--format", "csv", "-o", tmp_path / "o").output
    )
    doc = json.loads(demo_findings_path.read_text())
    doc["run"]["schema_version"] = "3.0"
    other.write_text(json.dumps(doc))
    result = report("--findings", other, "--format", "csv", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "unsupported findings schema version '3.0'" in result.output
    del doc["run"]["coverage"]
    doc["run"]["schema_version"] = "1.0"
    other.write_text(json.dumps(doc))
    assert (
        "run.coverage: Field required"
        in report("--findings", other, "--format", "csv", "-o", tmp_path / "o").output
    )


def test_bad_previous_is_bad_input_too(demo_findings_path: Path, tmp_path: Path) -> None:
    result = report(
        "--findings",
        demo_findings_path,
        "--previous",
        tmp_path / "gone.json",
        "--format",
        "markdown",
        "--output",
        tmp_path / "m.md",
    )
    assert result.exit_code == 2 and "gone.json" in result.output


def test_control_verdicts() -> None:
    assert control_verdict({"pass": 3, "fail": 1, "error": 2}, 1)[0] == "not effective"
    assert control_verdict({"pass": 3, "error": 2}, 1) == (
        "not assessed",
        "2 finding(s) could not be decided (errors)",
    )
    assert control_verdict({"pass": 3, "waived": 1}, 2)[0] == "effective"
    assert control_verdict({}, 1) == ("not assessed", "no resource in scope of its policies")
    assert control_verdict({}, 0) == ("not assessed", "no policy evidences this control")


def test_control_matrix_of_the_demo(demo_findings_path: Path) -> None:
    run = load_document(demo_findings_path).run
    views = {v.name: v for v in framework_views(policy_details(run), available_frameworks())}
    gdpr = {c.id: c for c in views["gdpr"].controls}
    assert gdpr["Art.30"].verdict == "not assessed" and gdpr["Art.30"].policies == []
    assert gdpr["Art.44"].verdict == "not effective"
    assert set(gdpr["Art.44"].policies) == {
        "residency.data-in-zone",
        "residency.key-in-zone",
        "residency.processing-in-zone",
    }
    assert len(views["iso27001"].controls) >= 12


def test_templates_never_mark_values_safe() -> None:
    templates = Path(__file__).resolve().parents[2] / "auditor" / "report" / "templates"
    for template in templates.glob("*.j2"):
        text = template.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, template
