"""SARIF, JUnit, CSV, OCSF, Markdown and JSON written from a findings stream (issue 17).

Each format reads the findings one at a time from a generated document in auditor's layout (20,000
findings cycled from the demo estate's, in shuffled order, so grouping and sorting have work to do),
and is compared with what the in-memory document gives: the same rows, results, events and counts,
in the order the format promises. The spool that orders CSV rows and JUnit testcases is made small
here, so its sorted runs are spilled to disk and merged.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.document import FindingRecord, FindingsDocument, load_document
from auditor.findings import Status
from auditor.findings_stream import FindingsStream
from auditor.report import spool as spool_module
from auditor.report.base import ReportInput
from auditor.report.csv_format import columns, row
from auditor.report.ocsf import OcsfEvents
from auditor.report.sarif import finding_fingerprint, visible_json
from auditor.report.spool import GroupSpool
from auditor.report.view import (
    finding_sort_key,
    fix_plan,
    policy_details,
    report_frameworks,
    report_grouping,
    severity_sort_key,
)

from .conftest import DEMO_INVENTORY

SCHEMA = Path(__file__).with_name("sarif-schema-2.1.0.json")
MANY = 20_000


def write_layout(run: dict[str, Any], findings: list[dict[str, Any]], path: Path) -> Path:
    """A findings document in the layout `auditor check` writes: the run indented, a finding a line."""
    with path.open("wb") as out:
        out.write(b'{"run": ' + orjson.dumps(run, option=orjson.OPT_INDENT_2) + b',\n"findings": [\n')
        out.write(b",\n".join(orjson.dumps(finding) for finding in findings))
        out.write(b"\n]}\n")
    return path


def cycled(demo: dict[str, Any], size: int, seed: int = 17) -> list[dict[str, Any]]:
    """`size` findings cycled from the demo's, each resource renamed, in shuffled order."""
    rnd = random.Random(seed)
    findings = []
    for index in range(size):
        finding = copy.deepcopy(demo["findings"][index % len(demo["findings"])])
        suffix = f"-{rnd.randrange(size // 3)}"
        finding["resource"]["id"] += suffix
        finding["resource"]["name"] += suffix
        if finding["status"] == "fail" and rnd.random() < 0.1:
            finding["baselined"] = True
        findings.append(finding)
    rnd.shuffle(findings)
    return findings


@pytest.fixture(scope="module")
def demo_data(demo_findings_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(demo_findings_path.read_bytes())
    return data


@pytest.fixture(scope="module")
def many_path(demo_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 findings in auditor's layout."""
    path = tmp_path_factory.mktemp("many") / "findings.json"
    return write_layout(demo_data["run"], cycled(demo_data, MANY), path)


@pytest.fixture(scope="module")
def many_doc(many_path: Path) -> FindingsDocument:
    return load_document(many_path)


@pytest.fixture(autouse=True)
def small_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spill the ordering spool every 256 KiB, so sorted runs are written to disk and merged."""
    monkeypatch.setattr(spool_module, "SPOOL_BUFFER_BYTES", 256 * 1024)


def render(name: str, findings: Path, tmp_path: Path, *extra: str) -> bytes:
    output = tmp_path / f"out.{name}"
    result = CliRunner().invoke(
        cli, ["report", "--findings", str(findings), "--format", name, "-o", str(output), *extra]
    )
    assert result.exit_code == 0, result.output
    return output.read_bytes()


def in_memory(doc: FindingsDocument) -> ReportInput:
    return ReportInput(document=doc)


# --- each format against the in-memory document --------------------------------------------------


def test_json_streams_the_document_back_byte_for_byte(many_path: Path, tmp_path: Path) -> None:
    assert render("json", many_path, tmp_path) == many_path.read_bytes()


def test_csv_rows_are_the_sorted_findings(
    many_path: Path, many_doc: FindingsDocument, tmp_path: Path
) -> None:
    report = in_memory(many_doc)
    frameworks = [f.name for f in report_frameworks(report)]
    grouping = report_grouping(report)
    remediation = {p.id: p.remediation for p in policy_details(many_doc.run)}
    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\r\n")
    writer.writerow(columns(frameworks))
    for finding in sorted(many_doc.findings, key=severity_sort_key):
        writer.writerow(row(finding, frameworks, grouping, remediation))

    streamed = render("csv", many_path, tmp_path)

    assert streamed == expected.getvalue().encode()
    assert len(list(csv.reader(io.StringIO(streamed.decode())))) == MANY + 1


def test_group_spool_merges_spilled_runs_in_key_order_and_stably() -> None:
    rnd = random.Random(3)
    records = [(rnd.choice("abc"), rnd.randrange(50), index) for index in range(5000)]
    with GroupSpool[tuple[str]](buffer_bytes=4096) as spool:
        for group, key, index in records:
            spool.add((group,), b"%d" % index, b"%03d" % key)
        assert spool._runs, "the buffer was spilled"
        for group in "abc":
            expected = [index for g, key, index in sorted(records, key=lambda r: r[1]) if g == group]
            assert [int(data) for data in spool.read((group,))] == expected


def test_junit_suites_cases_and_counts(many_path: Path, many_doc: FindingsDocument, tmp_path: Path) -> None:
    streamed = render("junit", many_path, tmp_path)
    root = ET.fromstring(streamed)

    # what ElementTree writes of the tree it reads back: the same bytes (escaping, indentation)
    again = io.BytesIO()
    ET.ElementTree(root).write(again, encoding="utf-8", xml_declaration=True)
    assert again.getvalue() + b"\n" == streamed

    policies = [p.id for p in policy_details(many_doc.run)]
    suites = [s for s in root.findall("testsuite") if s.get("name") != "auditor.coverage"]
    assert [s.get("name") for s in suites] == policies
    assert len(root.findall("testsuite")) == len(policies) + bool(many_doc.run.coverage.gaps)
    by_policy: dict[str, list[FindingRecord]] = {}
    for finding in many_doc.findings:
        by_policy.setdefault(finding.policy_id, []).append(finding)
    for suite in suites:
        findings = by_policy.get(suite.get("name") or "", [])
        ordered = sorted(findings, key=lambda f: (f.resource.provider, f.resource.id))
        assert [c.get("name") for c in suite.findall("testcase")] == [f.resource.id for f in ordered]
        statuses = [f.status for f in findings]
        assert suite.get("tests") == str(len(findings))
        assert suite.get("failures") == str(statuses.count(Status.FAIL))
        assert suite.get("errors") == str(statuses.count(Status.ERROR))
        assert suite.get("skipped") == str(statuses.count(Status.WAIVED))
        assert len(suite.findall("testcase/failure")) == statuses.count(Status.FAIL)
    assert root.get("tests") == str(MANY + len(many_doc.run.coverage.gaps))


def test_sarif_results_in_document_order_and_valid(
    many_path: Path, many_doc: FindingsDocument, tmp_path: Path
) -> None:
    streamed = render("sarif", many_path, tmp_path)
    log = orjson.loads(streamed)
    # the log is laid out exactly as orjson indents it whole
    assert visible_json(log, orjson.OPT_INDENT_2) + b"\n" == streamed
    results = log["runs"][0]["results"]
    decided = [f for f in many_doc.findings if f.status is not Status.PASS]
    assert len(results) == len(decided)
    assert [r["partialFingerprints"]["auditorFinding/v1"] for r in results] == [
        finding_fingerprint(f) for f in decided
    ]
    assert [r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]] == [
        p.id for p in policy_details(many_doc.run)
    ]


def test_sarif_validates_against_the_schema(demo_data: dict[str, Any], tmp_path: Path) -> None:
    path = write_layout(demo_data["run"], cycled(demo_data, 1500), tmp_path / "findings.json")
    log = json.loads(render("sarif", path, tmp_path))
    validator = jsonschema.Draft4Validator(json.loads(SCHEMA.read_text()))
    validator.validate(log)
    assert log["runs"][0]["results"]


def test_sarif_without_results_is_valid(demo_data: dict[str, Any], tmp_path: Path) -> None:
    passing = [f for f in demo_data["findings"] if f["status"] == "pass"]
    path = write_layout(demo_data["run"], passing, tmp_path / "findings.json")
    streamed = render("sarif", path, tmp_path)
    log = orjson.loads(streamed)
    assert log["runs"][0]["results"] == []
    assert b'"results": [],' in streamed
    assert visible_json(log, orjson.OPT_INDENT_2) + b"\n" == streamed


def test_ocsf_one_event_a_line_in_order(many_path: Path, many_doc: FindingsDocument, tmp_path: Path) -> None:
    streamed = render("ocsf", many_path, tmp_path).splitlines()
    assert len(streamed) == MANY
    events = OcsfEvents(in_memory(many_doc))
    for index in (0, 1, MANY // 2, MANY - 1):
        assert streamed[index] == visible_json(events.event(many_doc.findings[index]))


def test_markdown_counts_and_top_failures(
    many_path: Path, many_doc: FindingsDocument, tmp_path: Path
) -> None:
    text = render("markdown", many_path, tmp_path).decode()
    failures = sorted((f for f in many_doc.findings if f.status is Status.FAIL), key=finding_sort_key)
    assert f"### Top failures (15 of {len(failures)})" in text
    top = text.split("### Top failures", 1)[1].splitlines()[4:19]
    assert [line.split(" | ")[0] for line in top] == [f"| {f.severity}" for f in failures[:15]]
    plan = fix_plan(many_doc.findings, policy_details(many_doc.run), report_grouping(in_memory(many_doc)))
    assert f"{len(plan.fixes)} fixes, {plan.failing} failing findings)" in text


def test_markdown_changes_since_a_previous_run(
    many_path: Path, demo_findings_path: Path, many_doc: FindingsDocument, tmp_path: Path
) -> None:
    text = render("markdown", many_path, tmp_path, "--previous", str(demo_findings_path))
    from auditor.report.view import compare_runs

    changes = compare_runs(many_doc, load_document(demo_findings_path))
    assert (
        f"{len(changes.new_failures)} new failure(s), {len(changes.fixed)} fixed, "
        f"{len(changes.still_failing)} still failing, {len(changes.newly_unknown)} newly undecided"
    ) in text.decode()
    names = [line for line in text.decode().splitlines() if line.startswith("- new: ")]
    assert len(names) == min(15, len(changes.new_failures))


# --- the reference form ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_path(demo_data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo findings in the reference form (2.0) against the demo inventory."""
    evidence: dict[tuple[str, str, str], list[Any]] = {}
    for line in DEMO_INVENTORY.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("record", "resource") == "resource":
            evidence[(record["provider"], record["account"], record["id"])] = record.get("evidence") or []
    run = copy.deepcopy(demo_data["run"])
    run.update(
        schema_version="2.0",
        evidence="reference",
        inventory_digest="sha256:" + hashlib.sha256(DEMO_INVENTORY.read_bytes()).hexdigest(),
    )
    findings = []
    for finding in copy.deepcopy(demo_data["findings"]):
        items = evidence[
            (finding["resource"]["provider"], finding["resource"]["account"], finding["resource"]["id"])
        ]
        finding["evidence_refs"] = [items.index(item) for item in finding.pop("evidence")]
        del finding["controls"]
        findings.append(finding)
    return write_layout(run, findings, tmp_path_factory.mktemp("reference") / "findings.json")


@pytest.mark.parametrize("name", ["sarif", "junit", "csv", "ocsf", "markdown"])
def test_reference_form_with_the_inventory_renders_as_inline(
    name: str, reference_path: Path, demo_findings_path: Path, tmp_path: Path
) -> None:
    inline = render(name, demo_findings_path, tmp_path)
    assert render(name, reference_path, tmp_path, "--inventory", str(DEMO_INVENTORY)) == inline


def test_json_keeps_the_reference_form(reference_path: Path, tmp_path: Path) -> None:
    assert render("json", reference_path, tmp_path) == reference_path.read_bytes()
    assert render("json", reference_path, tmp_path, "--inventory", str(DEMO_INVENTORY)) == (
        reference_path.read_bytes()
    )


def test_reference_form_without_the_inventory_says_where_the_evidence_is(
    reference_path: Path, tmp_path: Path
) -> None:
    stream = FindingsStream.open(reference_path)
    digest = stream.run.inventory_digest
    assert digest is not None
    findings = list(stream.findings())
    refs = [f.evidence_refs for f in findings]

    sarif = orjson.loads(render("sarif", reference_path, tmp_path))["runs"][0]
    assert sarif["properties"]["evidence"]["inventoryDigest"] == digest
    decided = [r for f, r in zip(findings, refs, strict=True) if f.status is not Status.PASS]
    assert [r["properties"]["evidenceRefs"] for r in sarif["results"]] == decided
    assert all("evidenceCalls" not in r["properties"] for r in sarif["results"])

    rows = list(csv.DictReader(io.StringIO(render("csv", reference_path, tmp_path).decode())))
    assert sorted(r["evidence_refs"] for r in rows) == sorted(" ".join(map(str, r or [])) for r in refs)
    assert all(r["evidence_inventory"].endswith(digest) for r in rows)

    events = [orjson.loads(line) for line in render("ocsf", reference_path, tmp_path).splitlines()]
    assert [e["unmapped"]["evidence_refs"]["indexes"] for e in events] == refs
    assert all(e["unmapped"]["evidence_refs"]["inventory_digest"] == digest for e in events)

    junit = ET.fromstring(render("junit", reference_path, tmp_path))
    texts = [node.text or "" for node in junit.iter() if node.tag in ("failure", "error") and node.text]
    undecided_or_failing = [t for t in texts if "resource: " in t]
    assert undecided_or_failing
    assert all(f"({digest})" in t for t in undecided_or_failing)


# --- bad input mid-stream ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "sarif", "junit", "csv", "ocsf", "markdown"])
def test_a_bad_finding_mid_stream_is_exit_2_and_no_output(
    name: str, demo_data: dict[str, Any], tmp_path: Path
) -> None:
    findings = cycled(demo_data, 3000)
    findings[1234]["status"] = "maybe"
    path = write_layout(demo_data["run"], findings, tmp_path / "findings.json")
    output = tmp_path / f"out.{name}"
    result = CliRunner().invoke(cli, ["report", "--findings", str(path), "--format", name, "-o", str(output)])
    assert result.exit_code == 2, result.output
    assert f"{path}: findings[1234].status: 'maybe' is not one of pass, fail, error, waived" in result.output
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["findings.json"]
