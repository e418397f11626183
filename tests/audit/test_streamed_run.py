"""The audit job streams a run's findings: the baseline is applied, the history written and drift
worked out one finding at a time. Each streamed step must give what the whole-document step gave:
the same bytes, the same gate, the same changes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import Result

from auditor.audit.baseline import (
    BaselineEntry,
    BaselineFile,
    BaselineMarks,
    apply_baseline_gate,
    find_baselined,
    mark_baselined,
)
from auditor.audit.history import FindingRow, History, diff_rows
from auditor.check import CheckOptions, CheckResult, run_check
from auditor.document import FindingsDocument, check_document, check_run, plain, write_document
from auditor.drift import SECTIONS, LaterCoverage, RecordedGap, key_digest
from auditor.findings import Severity, Status
from auditor.report.previous import PreviousRun

from .conftest import read_records, write_records


@pytest.fixture(params=["inline", "reference"])
def checked(request: pytest.FixtureRequest, demo_inventory: Path, tmp_path: Path) -> Iterator[CheckResult]:
    """A real run of the demo estate, in both evidence forms, its findings still spooled. One
    passing finding's evidence holds the text a failure's status is spelled with."""
    records = read_records(demo_inventory)
    decoy = next(r for r in records if r["provider"] == "aws" and r["evidence"])
    decoy["evidence"][0]["response"] = {"status": "fail", "note": '"status":"fail"'}
    inventory = write_records(tmp_path / "estate.jsonl", records)
    result = run_check(
        CheckOptions(inventory=inventory, params={"zone": "eu"}, evidence=request.param), spool_dir=tmp_path
    )
    try:
        yield result
    finally:
        result.spool.close()


def _whole(result: CheckResult) -> FindingsDocument:
    buffer = io.BytesIO()
    result.spool.write_document(buffer, result.run)
    return check_document(orjson.loads(buffer.getvalue()), "findings.json")


def _old_baseline(document: FindingsDocument, keys: set[tuple[str, str]]) -> tuple[int, int, int]:
    """What the job did before it streamed: mark every finding in memory and recount the gate from
    all of them. Returns (marked, failures, errors)."""
    threshold = document.run.gate.fail_on
    marked = failures = errors = 0
    for finding in document.findings:
        at_threshold = finding.severity.at_least(threshold)
        if finding.status is Status.FAIL:
            if finding.key in keys:
                finding.baselined = True
                marked += 1
            elif at_threshold:
                failures += 1
        elif finding.status is Status.ERROR and at_threshold:
            errors += 1
    return marked, failures, errors


def _baseline_of(document: FindingsDocument, every: int) -> BaselineFile:
    failing = [f for f in document.findings if f.status is Status.FAIL][::every]
    assert failing
    errors = [f for f in document.findings if f.status is Status.ERROR]
    assert errors
    entries = [BaselineEntry(policy=f.policy_id, resource=f.resource.id) for f in failing + errors[:3]]
    entries.append(BaselineEntry(policy="no.such-policy", resource="arn:aws:s3:::nowhere"))
    return BaselineFile(entries=entries)


@pytest.mark.parametrize("fail_on", [Severity.INFO, Severity.HIGH])
def test_a_streamed_baseline_writes_what_the_whole_document_did(
    checked: CheckResult, fail_on: Severity
) -> None:
    checked.run.gate.fail_on = fail_on
    document = _whole(checked)
    baseline = _baseline_of(document, every=2)
    run = checked.run

    marks = find_baselined(checked.spool.texts(), baseline, run)
    apply_baseline_gate(run, marks, baseline, source="baseline.yaml")
    marked, failures, errors = _old_baseline(document, baseline.keys())

    assert len(marks.positions) == marked > 0  # errors in the baseline are never marked
    assert (run.gate.failures, run.gate.errors) == (failures, errors)
    assert run.gate.baseline is not None and run.gate.baseline.baselined == marked
    assert run.gate.exit_code == (1 if failures else 3 if errors else 0)
    streamed = list(mark_baselined(checked.spool.texts(), marks))
    assert [orjson.loads(t) for t in streamed] == [plain(f) for f in document.findings]
    # Each finding is as evaluated but for `"baselined": true`, last (where the inline form's
    # field order puts it; the reference form writes `evidence_refs` before `reasons`).
    for text, spooled in zip(streamed, checked.spool.texts(), strict=True):
        if text != spooled:
            assert text == spooled[:-1] + b',"baselined":true}'
    assert sum(text.endswith(b',"baselined":true}') for text in streamed) == marked


def test_the_streamed_document_is_the_whole_document(checked: CheckResult) -> None:
    document = _whole(checked)
    baseline = _baseline_of(document, every=3)
    marks = find_baselined(checked.spool.texts(), baseline, checked.run)
    _old_baseline(document, baseline.keys())
    streamed = io.BytesIO()
    checked.spool.write_document(streamed, checked.run, mark_baselined(checked.spool.texts(), marks))
    assert orjson.loads(streamed.getvalue()) == {
        "run": plain(document.run),
        "findings": [plain(f) for f in document.findings],
    }
    if checked.run.evidence_form == "inline":  # read and written again, an inline document is unchanged
        whole = io.BytesIO()
        write_document(document, whole)
        assert streamed.getvalue() == whole.getvalue()


def test_a_passing_finding_whose_evidence_spells_a_failure_is_not_baselined(checked: CheckResult) -> None:
    document = _whole(checked)
    decoys = [
        (f.policy_id, f.resource.id)
        for f, text in zip(document.findings, checked.spool.texts(), strict=True)
        if f.status is not Status.FAIL and b'"status":"fail"' in text
    ]
    if checked.run.evidence_form == "inline":
        assert decoys  # the evidence text is in the finding: the parse must decide, not the text
    baseline = BaselineFile(entries=[BaselineEntry(policy=p, resource=r) for p, r in decoys])
    marks = find_baselined(checked.spool.texts(), baseline, checked.run)
    assert marks == BaselineMarks()


def test_an_empty_baseline_reads_nothing(checked: CheckResult) -> None:
    def unread() -> Iterator[bytes]:
        raise AssertionError("read")
        yield b""

    assert find_baselined(unread(), BaselineFile(), checked.run) == BaselineMarks()


def test_history_records_streamed_texts_as_the_document(history_url: str, checked: CheckResult) -> None:
    document = _whole(checked)
    baseline = _baseline_of(document, every=2)
    marks = find_baselined(checked.spool.texts(), baseline, checked.run)
    _old_baseline(document, baseline.keys())
    with History(history_url) as store:
        summary = store.record_texts(
            plain(checked.run),
            mark_baselined(checked.spool.texts(), marks),
            job="j",
            config_digest="x",
        )
        stored = store.document(summary.id)
        assert stored["findings"] == [plain(f) for f in document.findings]
        assert summary.counts["baselined"] == len(marks.positions) > 0
        run = store.run_info(summary.id)
        assert plain(run) == plain(check_run(plain(checked.run), "x")) == plain(checked.run)
        # The run as the reports' changes read it: from the rows, as from the document.
        stored_run, document_run = store.previous_run(summary.id), PreviousRun.of(document)
        assert (stored_run.id, stored_run.started_at) == (document_run.id, document_run.started_at)
        assert stored_run.gaps == document_run.gaps and stored_run.accounts == document_run.accounts
        assert stored_run.statuses == document_run.statuses
        failing = [key_digest(f.key) for f in document.findings if f.status is Status.FAIL]
        wanted = set(failing[::2]) | {key_digest(("no.such-policy", "x"))}
        facts = list(stored_run.failures_among(wanted))
        assert facts == list(document_run.failures_among(wanted)) and len(facts) == len(set(failing[::2]))
        assert any(fact.regions for fact in facts)


def _row(policy: str, resource: str, status: str, account: str = "sub-a") -> FindingRow:
    return FindingRow(policy, resource, "azure", account, resource.rsplit("/", 1)[-1], status, "high", False)


def test_drift_from_a_stream_is_drift_from_lists() -> None:
    earlier = [
        _row("p.a", "/sub-a/c1", "fail"),
        _row("p.a", "/sub-a/c2", "fail"),
        _row("p.b", "/sub-a/c2", "pass"),
        _row("p.a", "/sub-b/c3", "fail", "sub-b"),
        _row("p.a", "/sub-b/c4", "error", "sub-b"),
        _row("p.a", "/sub-a/c5", "pass"),
        _row("p.a", "/sub-a/c5", "fail"),  # repeated: the last holds
    ]
    later = [
        _row("p.a", "/sub-a/c2", "fail"),
        _row("p.b", "/sub-a/c2", "fail"),
        _row("p.a", "/sub-b/c4", "pass", "sub-b"),
        _row("p.a", "/sub-a/c6", "error"),
        _row("p.a", "/sub-a/c6", "waived"),  # repeated: the last holds
    ]
    coverage = LaterCoverage(
        [RecordedGap("azure", "sub-b", "region:westeurope", "access_denied", "listing failed")],
        seen_accounts={("azure", "sub-a")},
        known_accounts={("azure", "sub-a"), ("azure", "sub-b")},
    )
    reads: list[int] = []

    def stream() -> Iterator[FindingRow]:
        reads.append(1)
        yield from earlier

    asked: list[set[tuple[str, str]]] = []

    def regions(keys: set[tuple[str, str]]) -> dict[tuple[str, str], list[str] | None]:
        asked.append(keys)
        return {("p.a", "/sub-b/c3"): ["westeurope"]}

    streamed = diff_rows(stream, lambda: iter(later), coverage, regions)
    listed = diff_rows(earlier, later, coverage, {("p.a", "/sub-b/c3"): ["westeurope"]})
    assert streamed == listed
    assert len(reads) == 2 and asked == [{("p.a", "/sub-b/c3")}]  # only the gone failure under a gap
    summary: dict[str, Any] = {
        s: [(r.policy_id, r.resource_id, w, n) for r, w, n in v] for s, v in listed.items()
    }
    assert summary == {
        "new_failures": [("p.b", "/sub-a/c2", "pass", "fail")],
        "fixed": [("p.a", "/sub-a/c1", "fail", None), ("p.a", "/sub-a/c5", "fail", None)],
        "still_failing": [("p.a", "/sub-a/c2", "fail", "fail")],
        "newly_unknown": [],
        "newly_waived": [],
        "not_assessed": [("p.a", "/sub-b/c3", "fail", None)],
    }


@pytest.mark.parametrize("listed", [(), ("fixed",), ("still_failing", "not_assessed"), SECTIONS])
def test_drift_counts_every_section_and_holds_the_rows_of_those_listed(listed: tuple[str, ...]) -> None:
    """The audit job prints how many findings moved (`listed=()`): the counts are those of the
    lists drift gives in full, and no section's rows are held."""
    earlier = [
        _row("p.a", "/sub-a/c1", "fail"),  # gone, its resource seen: fixed
        _row("p.a", "/sub-a/c2", "fail"),
        _row("p.a", "/sub-b/c3", "fail", "sub-b"),  # gone under a gap: not assessed
        _row("p.a", "/sub-a/c8", "fail"),
        _row("p.a", "/sub-a/c9", "pass"),
    ]
    later = [
        _row("p.a", "/sub-a/c2", "fail"),
        _row("p.a", "/sub-a/c8", "fail"),
        _row("p.a", "/sub-a/c8", "pass"),  # repeated: the last holds (fixed, and not gone)
        _row("p.a", "/sub-a/c9", "error"),
        _row("p.a", "/sub-a/c10", "fail"),
        _row("p.a", "/sub-a/c11", "error"),
        _row("p.a", "/sub-a/c11", "pass"),  # repeated: moved, then not
    ]
    coverage = LaterCoverage(
        [RecordedGap("azure", "sub-b", "account", "access_denied", "listing failed")],
        seen_accounts={("azure", "sub-a")},
        known_accounts={("azure", "sub-a"), ("azure", "sub-b")},
    )
    full = diff_rows(earlier, later, coverage)
    out = diff_rows(lambda: iter(earlier), lambda: iter(later), coverage, listed=listed)
    expected = {
        "new_failures": 1,
        "fixed": 2,
        "still_failing": 1,
        "newly_unknown": 1,
        "newly_waived": 0,
        "not_assessed": 1,
    }
    assert {section: len(rows) for section, rows in full.items()} == expected
    assert {section: out.counts[section] for section in SECTIONS} == expected
    assert set(out) == set(listed)
    assert all(out[section] == full[section] for section in listed)


def test_history_show_json_streams_the_stored_document(
    tmp_path: Path, checked: CheckResult, run_cli: Callable[..., Result]
) -> None:
    database = tmp_path / "history.db"
    with History(f"sqlite:///{database}") as store:
        summary = store.record_texts(plain(checked.run), checked.spool.texts(), job="j", config_digest="x")
        stored = store.document(summary.id)
    shown = run_cli("history", "--database", database, "show", summary.id, "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout) == stored and len(stored["findings"]) > 100
    # auditor's layout: the run indented, then each finding on its own line, as stored
    lines = shown.stdout.splitlines()
    start = lines.index('"findings": [')
    assert [line.rstrip(",") for line in lines[start + 1 : -1]] == [t.decode() for t in checked.spool.texts()]


def test_a_baseline_is_made_from_a_streamed_or_a_whole_document(
    tmp_path: Path, checked: CheckResult, run_cli: Callable[..., Result]
) -> None:
    streamed = tmp_path / "findings.json"
    with streamed.open("wb") as handle:
        checked.spool.write_document(handle, checked.run)
    whole = tmp_path / "indented.json"  # not auditor's layout: read whole
    whole.write_bytes(orjson.dumps(orjson.loads(streamed.read_bytes()), option=orjson.OPT_INDENT_2))
    made = []
    for findings in (streamed, whole):
        output = tmp_path / f"baseline-{findings.stem}.yaml"
        result = run_cli("baseline", "create", "--findings", findings, "--output", output)
        assert result.exit_code == 0, result.stderr
        made.append(yaml.safe_load(output.read_text()))
    failing = {
        (f["policy_id"], f["resource"]["id"])
        for f in orjson.loads(streamed.read_bytes())["findings"]
        if f["status"] == "fail"
    }
    assert made[0]["entries"] == made[1]["entries"] and made[0]["source_run"] == checked.run.id
    assert {(e["policy"], e["resource"]) for e in made[0]["entries"]} == failing and failing
