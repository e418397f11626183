"""The PDF report (WeasyPrint, the `pdf` extra) of the demo audit job, and what the HTML, PDF and the
other formats show an officer: what to do about undecided findings, absent settings that are not
errors, the deciding field of an answer, when the inventory was collected, and paths that say where a
file is without naming a virtual environment."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from html import unescape
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from pypdf import PdfReader

from auditor.audit.config import demo_config
from auditor.cli import cli
from auditor.document import load_document
from auditor.findings import OWNER_TAG
from auditor.model import UnknownCode
from auditor.permissions import permission_tables
from auditor.report.base import ReportInput, render_to_file, unavailable
from auditor.report.evidence import absent_codes, excerpt, is_absent
from auditor.report.html import when
from auditor.report.undecided import UNKNOWN_ACTIONS, action_for, denied_permissions
from auditor.report.view import build_view

from .conftest import DEMO_INVENTORY, REPO, typed
from .pdf_pages import heading_lines, page_lines, page_texts, squashed, stranded_headings

REPORTS = (
    "report.html",
    "report.pdf",
    "report.sarif",
    "junit.xml",
    "summary.md",
    "findings.csv",
    "findings.ocsf.jsonl",
)


@pytest.fixture(scope="module")
def demo_job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The output directory of one `auditor audit --demo` run (the pdf extra is installed for tests)."""
    out = tmp_path_factory.mktemp("demo-job")
    result = CliRunner().invoke(cli, ["audit", "--demo", "--output-dir", str(out)])
    assert result.exit_code == 1, result.output  # the demo has violations
    yield out


def demo_resources() -> list[dict[str, Any]]:
    """Every resource record of the demo estate."""
    records = (orjson.loads(line) for line in DEMO_INVENTORY.read_bytes().splitlines() if line.strip())
    return [r for r in records if r.get("record", "resource") == "resource"]


def test_the_demo_job_writes_every_format_and_bundles_the_pdf(demo_job: Path) -> None:
    for name in REPORTS:
        assert (demo_job / name).stat().st_size > 0, name
    assert (demo_job / "report.pdf").read_bytes().startswith(b"%PDF-")
    (bundle,) = (demo_job / "bundles").iterdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = {entry["path"] for entry in manifest["files"]}
    assert {f"reports/{name}" for name in REPORTS} <= listed
    assert (bundle / "reports" / "report.pdf").read_bytes() == (demo_job / "report.pdf").read_bytes()


def test_the_pdf_has_the_run_id_on_every_page_and_every_resource(demo_job: Path) -> None:
    pdf = demo_job / "report.pdf"
    run_id = json.loads((demo_job / "findings.json").read_text())["run"]["id"]
    texts = page_texts(pdf)
    assert len(texts) > 10
    for number, text in enumerate(texts, 1):
        assert f"Run {run_id}" in text, f"page {number} has no run id"
        assert f"page {number} of {len(texts)}" in text
    body = squashed("\n".join(texts))
    names = [r["name"] for r in demo_resources()]
    assert len(names) > 60
    missing = [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", body)]
    assert missing == []


def test_the_pdf_has_a_bookmark_outline_and_keeps_headings_with_their_content(demo_job: Path) -> None:
    reader = PdfReader(demo_job / "report.pdf")
    titles: list[str] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
            else:
                titles.append(" ".join(item.title.split()))

    walk(reader.outline)
    findings = json.loads((demo_job / "findings.json").read_text())
    for section in ("1 Fix first", "2 Executive summary", "3 Data residency", "4 Framework controls"):
        assert section in titles
    for policy in findings["run"]["policies"]:
        assert policy["title"] in titles
    html = (demo_job / "report.html").read_text()
    headings = [
        " ".join(unescape(re.sub(r"<[^>]+>", "", h)).split())
        for h in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", html)
    ]
    pages = page_lines(demo_job / "report.pdf")
    assert heading_lines(pages, headings) > 30
    assert stranded_headings(pages, headings) == []


def test_without_the_extra_pdf_is_a_clear_input_error(
    monkeypatch: pytest.MonkeyPatch, demo_findings_path: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # `import weasyprint` raises ImportError
    out = tmp_path / "report.pdf"
    result = CliRunner().invoke(
        cli, ["report", "--findings", str(demo_findings_path), "--format", "pdf", "-o", str(out)]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install '.[pdf]'" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # the demo leaves it out (and says so); a job that asks for it is refused before writing anything
    assert "pdf" not in demo_config(tmp_path / "demo", environ={}).outputs.formats
    assert "pip install '.[pdf]'" in (unavailable("pdf") or "")
    (tmp_path / "auditor.yaml").write_text(
        f"inventories: [{DEMO_INVENTORY}]\noutputs:\n  directory: {tmp_path / 'out'}\n  formats: [html, pdf]\n"
    )
    job = CliRunner().invoke(cli, ["audit", "--config", str(tmp_path / "auditor.yaml")])
    assert job.exit_code == 2 and "pip install '.[pdf]'" in job.stderr
    assert not (tmp_path / "out").exists()


def test_the_demo_writes_the_pdf_when_the_extra_is_installed(tmp_path: Path) -> None:
    assert unavailable("pdf") is None
    assert "pdf" in demo_config(tmp_path, environ={}).outputs.formats


# --- undecided findings: what to do -------------------------------------------------------------------


def test_every_unknown_reason_maps_to_what_to_do() -> None:
    assert set(UNKNOWN_ACTIONS) == set(UnknownCode)
    for code, action in UNKNOWN_ACTIONS.items():
        assert action.label and len(action.action) > 30, code


def test_access_denied_names_the_permission_from_each_sources_call_table() -> None:
    """For every call of every source that feeds an attribute, a denied answer of that call names
    exactly the permissions its row of the call table lists: derived, not a second list."""
    checked = 0
    for source, table in permission_tables().items():
        for call in table.calls:
            if not call.feeds or not call.permissions:
                continue
            kind = call.kinds[0] if call.kinds else "bucket"
            attribute = call.feeds[0]
            failed = {"call": call.operation, "attributes": list(call.feeds), "error": "AccessDenied: no"}
            assert denied_permissions(source, kind, attribute, [failed]) == call.permissions
            action = action_for("access_denied", attribute, source, kind, [failed])
            assert all(p in action.action for p in call.permissions)
            checked += 1
    assert checked >= 15


def test_a_not_found_answer_is_absent_not_the_denied_call(demo_doc: dict[str, Any]) -> None:
    """acme-vendor-sync: no replication configuration (absent), then the replica's region denied."""
    finding = next(
        f
        for f in typed(demo_doc).findings
        if f.resource.name == "acme-vendor-sync" and f.policy_id == "residency.data-in-zone"
    )
    assert finding.status == "error"
    calls = {e["call"]: e.get("error") for e in finding.evidence}
    assert is_absent("aws", "s3:GetBucketReplication", calls["s3:GetBucketReplication"])
    assert not is_absent("aws", "s3:GetBucketLocation", calls["s3:GetBucketLocation"])
    # the replication call failed too, with "there is none": its permission is not the one missing
    assert denied_permissions("aws", "bucket", "location.regions", finding.evidence) == (
        "s3:GetBucketLocation",
    )


def test_absent_codes_come_from_the_sources_own_table() -> None:
    from auditor.scan.aws_absent import ABSENT_CODES

    assert absent_codes()["aws"] == ABSENT_CODES
    assert is_absent("aws", "s3:GetBucketReplication", "ReplicationConfigurationNotFoundError")
    assert is_absent("aws", "s3:GetBucketPolicy", "NoSuchBucketPolicy: The bucket policy does not exist")
    assert not is_absent("aws", "s3:GetBucketPolicy", "AccessDenied: Access Denied")
    assert not is_absent("gcp", "s3:GetBucketPolicy", "NoSuchBucketPolicy")


def test_every_format_says_what_to_do_about_undecided_findings(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    report = ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY)
    grant = "grant s3:GetBucketTagging to the identity that scans AWS"
    outputs = {}
    for fmt in ("html", "markdown", "csv", "junit"):
        out = tmp_path / f"report.{fmt}"
        render_to_file(fmt, report, out)
        outputs[fmt] = out.read_text()
    assert grant in unescape(outputs["html"]) and grant in outputs["markdown"].replace("\\", "")
    rows = list(csv.DictReader(io.StringIO(outputs["csv"])))
    archive = [r for r in rows if r["resource_name"] == "acme-finance-archive" and r["status"] == "error"]
    assert archive and all(grant in r["undecided_action"] for r in archive)
    assert all(r["undecided_action"] == "" for r in rows if r["status"] != "error")
    failing = next(r for r in rows if r["status"] == "fail" and r["provider"] == "aws")
    recorded = {p["id"]: p for p in demo_doc["run"]["policies"]}
    assert failing["remediation"] == recorded[failing["policy_id"]]["remediation"]["aws"]
    root = ET.fromstring(outputs["junit"])
    errors = [e.text or "" for e in root.iter("error")]
    assert any(grant in text for text in errors)
    assert any("renew the attestation" in text for text in errors)


# --- evidence that shows what decided --------------------------------------------------------------


def test_absent_settings_are_styled_as_absent_not_as_errors(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    render_to_file("html", ReportInput(document=typed(demo_doc)), html)
    text = html.read_text()
    assert "error: ReplicationConfigurationNotFoundError" not in text
    assert '<div class="absent">(ReplicationConfigurationNotFoundError)</div>' in text
    assert '.absent::before { content: "absent: none configured "; }' in text
    assert '<div class="c-error">error: AccessDenied: Access Denied</div>' in text  # a real error stays one


def test_the_excerpt_centres_on_the_deciding_field(demo_doc: dict[str, Any]) -> None:
    view = build_view(ReportInput(document=typed(demo_doc)))
    policy = next(p for p in view.policies if p.details.id == "transport.tls-minimum")
    row = next(r for r in policy.non_pass if r.name == "exports")
    (evidence,) = row.evidence
    before, marked, _ = evidence.answer.parts
    assert marked == '"minimumTlsVersion":"TLS1_0"'
    assert len(evidence.answer.text) <= 240 and before.startswith("…")
    # a long answer: the field is kept whichever end it is at
    answer = {"padding": "x" * 600, "properties": {"minimumTlsVersion": "TLS1_1"}, "tail": "y" * 600}
    cut = excerpt(answer, {"transport.min_tls_version": "TLS1_1"})
    assert cut.parts[1] == '"minimumTlsVersion":"TLS1_1"' and len(cut.text) <= 240
    assert cut.text.startswith("…") and cut.text.endswith("…")


def test_the_header_says_when_the_inventory_was_collected(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    stamps = [datetime.fromisoformat(r["scanned_at"]) for r in demo_resources() if r.get("scanned_at")]
    earliest, latest = when(min(stamps).isoformat()), when(max(stamps).isoformat())
    for inventory in (DEMO_INVENTORY, None):  # from the inventory, or else from the evidence times
        html = tmp_path / "report.html"
        render_to_file("html", ReportInput(document=typed(demo_doc), inventory_path=inventory), html)
        header = re.search(r'<p class="meta" id="collected">(.*?)</p>', html.read_text(), re.S)
        assert header is not None
        words = " ".join(unescape(re.sub(r"<[^>]+>", "", header.group(1))).split())
        assert f"collected {earliest}" in words
        assert demo_doc["run"]["started_at"][:10] != earliest[:10]  # collected on another day than the run
        if inventory is not None:  # the demo's records were all collected at one time
            assert earliest == latest and " to " not in words
        else:  # its evidence over a few seconds
            assert re.search(rf"collected {earliest} to {earliest[:10]} 06:00:0[1-9] UTC", words)


def test_paths_are_relative_never_absolute(
    demo_doc: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert demo_doc["run"]["waivers"]["file"].startswith(str(REPO))  # the document keeps what ran
    for cwd, shown in (
        (REPO, "fixtures/demo-waivers.yaml"),
        (tmp_path, "shipped: fixtures/demo-waivers.yaml"),
    ):
        monkeypatch.chdir(cwd)
        html = tmp_path / "report.html"
        render_to_file("html", ReportInput(document=typed(demo_doc), inventory_path=DEMO_INVENTORY), html)
        text = html.read_text()
        assert f"<code>{shown}</code>" in text
        assert str(REPO) not in text


# --- teams ------------------------------------------------------------------------------------------


def test_group_by_tag_gives_each_team_its_section(demo_findings_path: Path, tmp_path: Path) -> None:
    def report(fmt: str, *extra: str) -> Any:
        out = tmp_path / f"out.{fmt}"
        args = ["report", "--findings", str(demo_findings_path), "--format", fmt, "-o", str(out), *extra]
        return CliRunner().invoke(cli, args), out

    by_class = ("--inventory", str(DEMO_INVENTORY), "--group-by-tag", "data-class")
    result, html = report("html", *by_class)
    assert result.exit_code == 0, result.output
    teams = re.findall(
        r'<article class="team" id="team-\d+">\s*<h3>data-class: ([^<]+)</h3>', html.read_text()
    )
    assert {"restricted", "internal", "(no data-class tag)"} <= set(teams)
    assert teams[-1] == "(no data-class tag)"
    result, md = report("markdown", *by_class)
    assert "### By data-class" in md.read_text() and "**restricted**" in md.read_text()
    result, table = report("csv", *by_class)
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert {r["group"] for r in rows} >= {"restricted", "internal"}
    assert next(r["group"] for r in rows if r["resource_name"] == "acme-customer-data-eu") == "restricted"
    # the owner tag is in the findings themselves: no inventory needed, and it is the default
    owned = [r for r in rows if r["owner"]]
    assert owned and {r["resource_name"] for r in owned} >= {"acme-customer-data-eu"}
    document = load_document(demo_findings_path)
    assert {f.resource.owner for f in document.findings} >= {"platform", None}
    result, _ = report("csv", "--group-by-tag", OWNER_TAG)
    assert result.exit_code == 0
    # a tag only the inventory holds, without the inventory: exit 2, nothing written
    result, out = report("json", "--group-by-tag", "team")
    assert result.exit_code == 2 and "--inventory" in result.stderr and not out.exists()


def test_owners_route_fixes_and_get_their_sections(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    """Failing resources tagged with an owner: the fix names its owners, and each owner gets a section
    (the default grouping, from `resource.owner` in the findings)."""
    owners = {"acme-dr-copy": "data-eng", "acme-legacy-uploads": "web", "apac-orders": "data-eng"}
    for finding in demo_doc["findings"]:
        if finding["resource"]["name"] in owners:
            finding["resource"]["owner"] = owners[finding["resource"]["name"]]
    html = tmp_path / "report.html"
    render_to_file("html", ReportInput(document=typed(demo_doc)), html)
    text = html.read_text()
    fixes = text[
        text.index('<section id="fix-first">') : text.index("</section>", text.index('id="fix-first"'))
    ]
    first = fixes[fixes.index("<tbody>") : fixes.index("</tr>", fixes.index("<tbody>"))]
    assert "acme-dr-copy" in first and '<span class="owner">data-eng (1)</span>' in first
    assert '<span class="owner">web (1)</span>' in first
    teams = re.findall(r"<h3>owner: ([^<]+)</h3>", text)
    assert set(teams) == {"data-eng", "web", "(no owner tag)"} and teams[-1] == "(no owner tag)"
