"""The HTML report streamed: findings read once, rows spooled, compact rows at scale, both evidence forms.

Memory is proven by benchmarks/report_html.py, not here: these tests check what the streamed page holds
(every non-passing finding, in order, with the right counts; compact rows; well-formed markup) against
the findings and against the in-memory rendering of the same view.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from auditor.check import CheckOptions, run_check
from auditor.cli import cli
from auditor.document import write_findings_document
from auditor.findings_stream import FindingsStream
from auditor.report import html as html_report
from auditor.report.base import ReportInput, render_to_file
from auditor.report.html import report_template, template_context
from auditor.report.view import ai_residency, build_view

from .conftest import DEMO_INVENTORY, DEMO_WAIVERS, HOSTILE_NAME

NON_PASS = ("fail", "error", "waived")
ROW = re.compile(r'<tr class="r-(fail|error|waived)">(.*?)</tr>', re.S)
RID = re.compile(r'<div class="rid">(.*?)</div>')


def copies_document(
    source: Path, target: Path, copies: int, *, broken_at: int | None = None
) -> list[dict[str, Any]]:
    """Write `copies` renamed copies of `source`'s findings in auditor's streamed layout (run counts
    scaled to match); finding number `broken_at` gets an invalid status. Returns the findings."""
    data = orjson.loads(source.read_bytes())
    run = data["run"]
    counts = run["counts"]
    counts["findings"] *= copies
    counts["by_status"] = {k: v * copies for k, v in counts["by_status"].items()}
    counts["by_severity"] = {
        s: {k: v * copies for k, v in c.items()} for s, c in counts["by_severity"].items()
    }
    for policy in run["policies"]:
        policy["counts"] = {k: v * copies for k, v in policy["counts"].items()}
    findings = []
    for copy in range(copies):
        for finding in data["findings"]:
            made = orjson.loads(orjson.dumps(finding))
            made["resource"]["id"] += f"-c{copy}"
            made["resource"]["name"] += f"-c{copy}"
            findings.append(made)
    lines = [orjson.dumps(f) for f in findings]
    if broken_at is not None:
        lines[broken_at] = lines[broken_at].replace(b'"status":"', b'"status":"maybe-', 1)
    target.write_bytes(
        b'{"run": ' + orjson.dumps(run) + b',\n"findings": [\n' + b",\n".join(lines) + b"\n]}\n"
    )
    return findings


@pytest.fixture(scope="module")
def many(
    demo_findings_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    """About 21,000 findings (70 copies of the demo's), some 4,500 not passing."""
    path = tmp_path_factory.mktemp("many") / "findings.json"
    return path, copies_document(demo_findings_path, path, 70)


class Nesting(HTMLParser):
    """Fails on an end tag that closes anything but the innermost open element (void elements aside)."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
        else:
            self.open.pop()


def assert_well_formed(text: str) -> None:
    parser = Nesting()
    parser.feed(text)
    parser.close()
    assert parser.problems[:5] == [] and parser.open == []


def policy_sections(text: str) -> dict[str, str]:
    """Each policy's article, by policy id."""
    parts = re.split(r'<article class="policy" id="policy-', text)[1:]
    return {part.split('"', 1)[0]: part.split("</article>", 1)[0] for part in parts}


def test_streamed_page_is_the_in_memory_page(many: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    path, _ = many
    out = tmp_path / "report.html"
    render_to_file("html", ReportInput(stream=FindingsStream.open(path)), out)
    in_memory = "".join(
        report_template().generate(
            template_context(build_view(ReportInput(stream=FindingsStream.open(path))))
        )
    )
    assert out.read_text() == in_memory
    assert 'class="large"' in in_memory and "compact-rows" not in in_memory  # full rows below COMPACT_ROWS


def test_compact_rows_list_every_non_passing_finding_in_order(
    many: tuple[Path, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, findings = many
    full = tmp_path / "full.html"
    render_to_file("html", ReportInput(stream=FindingsStream.open(path)), full)
    monkeypatch.setattr(html_report, "COMPACT_ROWS", 1000)
    monkeypatch.setattr(html_report, "COMPACT_POLICY_ROWS", 40)
    out = tmp_path / "compact.html"
    render_to_file("html", ReportInput(stream=FindingsStream.open(path)), out)
    text = out.read_text()
    assert_well_formed(text)
    assert "Evidence (API call: the field that decided)" in text
    assert out.stat().st_size < 0.5 * full.stat().st_size

    expected: dict[str, Counter[str]] = {}
    passing: Counter[str] = Counter()
    for finding in findings:
        if finding["status"] == "pass":
            passing[finding["policy_id"]] += 1
        else:
            expected.setdefault(finding["policy_id"], Counter())[finding["resource"]["name"]] += 1
    sections = policy_sections(text)
    assert set(expected) <= set(sections)
    order = {status: i for i, status in enumerate(NON_PASS)}
    tails = 0
    for policy_id, section in sections.items():
        wanted = expected.get(policy_id, Counter())
        rows = ROW.findall(section)
        assert len(rows) == min(40, sum(wanted.values()))
        listed = Counter(re.search(r"<td><b>(.*?)</b>", row).group(1) for _, row in rows)  # type: ignore[union-attr]
        statuses = [order[status] for status, _ in rows]
        named = re.findall(
            r'<p><span class="st st-(\w+)">\w+</span> <b>[^<]+</b> <code>[^<]+</code> \(([\d,]+)\): (.*?)</p>',
            section,
        )
        for status, count, names in named:
            listed.update(names.split(", "))
            assert int(count.replace(",", "")) == len(names.split(", "))
            statuses.append(order[status])
        tails += len(named)
        assert listed == wanted  # every failing, undecided and waived resource, once per finding
        assert statuses == sorted(statuses)  # fail, then error, then waived
        if wanted:
            assert f"Failing, undecided and waived resources ({sum(wanted.values()):,})" in section
        assert not re.search(r'<span class="small">\d{4}-\d\d-\d\dT', section)  # no per-call times
        counted = sum(int(n.replace(",", "")) for n in re.findall(r"</code> \(([\d,]+)\)</p>", section))
        assert counted == passing[policy_id]  # passing resources counted, not named
    assert tails > 0
    marked = [row for _, row in ROW.findall(text) if "<mark>" in row]
    assert marked and all(re.search(r"<code><mark>[^<]+</mark></code>", row) for row in marked)


def test_a_bad_finding_midway_is_exit_2_and_nothing_written(demo_findings_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "findings.json"
    copies_document(demo_findings_path, path, 20, broken_at=4321)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli, ["report", "--findings", str(path), "--format", "html", "--output", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert f"{path}: findings[4321].status:" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


@pytest.fixture(scope="module")
def reference_findings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo estate's findings in the reference form (schema 2.0)."""
    path = tmp_path_factory.mktemp("reference") / "findings.json"
    options = CheckOptions(
        inventory=DEMO_INVENTORY, params={"zone": "eu"}, waivers=DEMO_WAIVERS, evidence="reference"
    )
    result = run_check(options)
    try:
        write_findings_document(result.spool, result.run, path)
    finally:
        result.spool.close()
    return path


def test_reference_form_without_inventory_says_where_the_evidence_is(
    reference_findings: Path, tmp_path: Path
) -> None:
    stream = FindingsStream.open(reference_findings)
    digest = stream.run.inventory_digest
    assert digest is not None and stream.reference_form
    out = tmp_path / "report.html"
    render_to_file("html", ReportInput(stream=stream), out)
    text = out.read_text()
    assert_well_formed(text)
    assert f"<code>{digest}</code>" in text
    rows = [row for section in policy_sections(text).values() for row in ROW.findall(section)]
    non_pass = [f for f in stream.findings() if f.status.value in NON_PASS]
    assert len(rows) == len(non_pass) > 0
    pointing = [
        row
        for _, row in rows
        if re.search(r"evidence: items? [\d, ]+ of the resource's inventory record", row)
    ]
    assert len(pointing) == sum(1 for f in non_pass if f.evidence_refs) > 0
    assert all('<div class="ev"><b>' not in row for _, row in rows)


def test_reference_form_with_inventory_shows_the_api_answers(
    reference_findings: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    render_to_file("html", ReportInput(stream=FindingsStream.open(reference_findings, DEMO_INVENTORY)), out)
    text = out.read_text()
    assert "inventory record" not in text
    rows = [row for section in policy_sections(text).values() for row in ROW.findall(section)]
    assert rows and all('<div class="ev"><b>' in row or "none recorded" in row for _, row in rows)


def test_compact_rows_keep_cloud_values_escaped(
    hostile_paths: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(html_report, "COMPACT_ROWS", 0)
    inventory, findings = hostile_paths
    out = tmp_path / "report.html"
    render_to_file("html", ReportInput(stream=FindingsStream.open(findings, inventory)), out)
    text = out.read_text()
    assert "compact-rows" in text
    assert HOSTILE_NAME not in text and "evil&lt;svg onload=alert(1)&gt;bucket" in text
    assert "<script" not in text and "\x07" not in text


def test_the_ai_table_keeps_the_worst_rows_whatever_the_order(demo_findings_path: Path) -> None:
    findings = list(FindingsStream.open(demo_findings_path).findings())
    every = ai_residency(findings, None, limit=1000)
    assert every.total == len(every.rows) > 6
    for seed in range(5):
        shuffled = findings[:]
        random.Random(seed).shuffle(shuffled)
        head = ai_residency(shuffled, None, limit=6)
        assert head.total == every.total
        assert [(r.resource_id, r.status) for r in head.rows] == [
            (r.resource_id, r.status) for r in ai_residency(shuffled, None, limit=1000).rows
        ][:6]
    assert [r.status for r in every.rows] == sorted(
        (r.status for r in every.rows), key=("fail", "error", "waived", "pass").index
    )
