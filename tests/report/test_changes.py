"""The report's changes section (`--previous`): what was not seen is never "fixed".

Real findings documents of the demo estate: in the later run the AWS account 111122223333 (8
failures in the demo, reported as "8 Fixed" before) could not be scanned at all, so those failures
are "not assessed" and the account shows as a new coverage gap, in HTML and in Markdown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from auditor.document import FindingsDocument, load_document, write_document
from auditor.drift import key_digest
from auditor.findings_stream import FindingsStream
from auditor.report.base import ReportInput, render_to_file
from auditor.report.markdown import md
from auditor.report.previous import FindingFacts, PreviousRun
from auditor.report.view import compare_runs

from .conftest import DEMO_INVENTORY, run_check, typed

ACCOUNT = "111122223333"
GAP = {
    "record": "gap",
    "provider": "aws",
    "account": ACCOUNT,
    "scope": "account",
    "code": "access_denied",
    "reason": f"AccessDenied: sts:AssumeRole on arn:aws:iam::{ACCOUNT}:role/auditor-read",
    "at": "2026-11-25T06:00:00Z",
}


def records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_INVENTORY.read_text().splitlines() if line.strip()]


def findings_of(tmp_path: Path, name: str, inventory: list[dict[str, Any]]) -> dict[str, Any]:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in inventory))
    out = tmp_path / f"{name}.json"
    run_check(path, out)
    load_document(out)
    doc: dict[str, Any] = json.loads(out.read_text())
    doc["run"]["id"] = f"{name}-run"
    return doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """`full`: the demo estate; `gap`: the same with account 111122223333 unscannable;
    `deleted`: the demo with the failing bucket acme-dr-copy deleted (its account fully scanned)."""
    tmp = tmp_path_factory.mktemp("changes")
    full = records()
    gap = [r for r in full if not (r.get("record") == "resource" and r["account"] == ACCOUNT)] + [GAP]
    deleted = [r for r in full if r.get("name") != "acme-dr-copy"]
    return {
        "full": findings_of(tmp, "full", full),
        "gap": findings_of(tmp, "gap", gap),
        "deleted": findings_of(tmp, "deleted", deleted),
    }


def failures_in_account(doc: dict[str, Any]) -> int:
    return sum(1 for f in doc["findings"] if f["status"] == "fail" and f["resource"]["account"] == ACCOUNT)


def render(fmt: str, current: dict[str, Any], previous: dict[str, Any], tmp_path: Path) -> str:
    out = tmp_path / f"report.{fmt}"
    render_to_file(fmt, ReportInput(document=typed(current), previous=typed(previous)), out)
    return out.read_text()


def tile(html: str, label: str) -> int:
    found = re.search(rf'<span class="n">(\d+)</span><span>{label}</span>', html)
    assert found is not None, label
    return int(found.group(1))


def test_an_account_that_became_a_gap_is_not_assessed_not_fixed(runs: dict[str, Any]) -> None:
    full, gap = runs["full"], runs["gap"]
    hidden = failures_in_account(full)
    assert hidden >= 2  # 8 in the demo
    changes = compare_runs(typed(gap), typed(full))
    assert changes.fixed == []
    assert len(changes.not_assessed) == hidden
    assert {c.account for c in changes.not_assessed} == {ACCOUNT}
    assert all(
        c.before == "fail" and c.gap is not None and c.gap.account == ACCOUNT for c in changes.not_assessed
    )
    assert [(g.provider, g.account, g.scope, g.code) for g in changes.new_gaps] == [
        ("aws", ACCOUNT, "account", "access_denied")
    ]
    assert changes.closed_gaps == []  # the demo's gap on 777788889999 is in both runs
    # Back to full coverage: the gap is closed and the failures are seen again.
    back = compare_runs(typed(full), typed(gap))
    assert [g.account for g in back.closed_gaps] == [ACCOUNT] and back.new_gaps == []
    assert back.not_assessed == [] and back.fixed == []
    assert len(back.new_failures) == hidden


def test_html_changes_section_shows_not_assessed_and_the_new_gap(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    hidden = failures_in_account(runs["full"])
    html = render("html", runs["gap"], runs["full"], tmp_path)
    section = html[
        html.index('<section id="changes">') : html.index("</section>", html.index('id="changes"'))
    ]
    assert tile(section, "Fixed") == 0
    assert tile(section, "Not assessed") == hidden
    assert tile(section, "New coverage gaps") == 1
    assert tile(section, "Closed coverage gaps") == 0
    assert "Fixed (" not in section  # no "Fixed" table at all
    assert f"Not assessed (under a coverage gap of this run) ({hidden})" in section
    assert "New coverage gaps (1)" in section
    assert f"<code>{ACCOUNT}</code>" in section and "sts:AssumeRole" in section
    assert f"{hidden} failure(s) of the previous run are not assessed" in section


def test_markdown_changes_section_shows_not_assessed_and_the_new_gap(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    hidden = failures_in_account(runs["full"])
    text = render("markdown", runs["gap"], runs["full"], tmp_path)
    since = text[text.index("### Since the previous run") :]
    since = since[: since.index("###", 3)]
    assert "0 fixed" in since and f"{hidden} fixed" not in since
    assert f"{hidden} not assessed; 1 new coverage gap(s), 0 closed" in since
    assert f"**Not assessed ({hidden})**" in since
    assert "**New coverage gaps (1)**:" in since and "Closed coverage gaps" not in since
    assert f"- aws {md(ACCOUNT)} account: {md('access_denied')}: " in since
    assert since.count("- not assessed: ") == min(hidden, 15)


def test_markdown_lists_a_closed_gap(runs: dict[str, Any], tmp_path: Path) -> None:
    text = render("markdown", runs["full"], runs["gap"], tmp_path)
    assert "0 not assessed; 0 new coverage gap(s), 1 closed" in text
    assert "**Closed coverage gaps (1)**:" in text and f"- aws {md(ACCOUNT)} account: " in text


def test_a_deleted_resource_in_a_fully_scanned_account_is_still_fixed(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    full, deleted = runs["full"], runs["deleted"]
    gone = [f for f in full["findings"] if f["resource"]["name"] == "acme-dr-copy" and f["status"] == "fail"]
    assert gone  # acme-dr-copy fails in the demo
    changes = compare_runs(typed(deleted), typed(full))
    assert changes.not_assessed == [] and changes.new_gaps == [] and changes.closed_gaps == []
    assert sorted((c.policy_id, c.name, c.after) for c in changes.fixed) == sorted(
        (f["policy_id"], "acme-dr-copy", "no longer reported") for f in gone
    )
    html = render("html", deleted, full, tmp_path)
    assert tile(html, "Fixed") == len(gone) and tile(html, "Not assessed") == 0


def test_a_failure_that_became_error_is_newly_undecided_not_fixed(runs: dict[str, Any]) -> None:
    full = runs["full"]
    current = json.loads(json.dumps(full))
    current["run"]["id"] = "later"
    target = next(f for f in current["findings"] if f["status"] == "fail")
    target["status"] = target["underlying_status"] = "error"
    changes = compare_runs(typed(current), typed(full))
    assert changes.fixed == [] and changes.not_assessed == []
    assert [(c.policy_id, c.resource_id, c.before, c.after) for c in changes.newly_unknown] == [
        (target["policy_id"], target["resource"]["id"], "fail", "error")
    ]


def written(document: FindingsDocument, path: Path) -> Path:
    with path.open("wb") as out:
        write_document(document, out)
    return path


@pytest.mark.parametrize(
    ("current", "previous"), [("gap", "full"), ("full", "gap"), ("deleted", "full"), ("full", "deleted")]
)
def test_a_previous_run_read_one_finding_at_a_time_gives_the_same_changes(
    runs: dict[str, Any], tmp_path: Path, current: str, previous: str
) -> None:
    """`report --previous` reads the earlier document as a stream and keeps only what drift needs
    (`PreviousRun`): the changes are exactly those against the document read whole."""
    path = written(typed(runs[previous]), tmp_path / "previous.json")
    assert FindingsStream.open(path)._document is None  # auditor's layout: streamed, not read whole
    streamed = compare_runs(typed(runs[current]), PreviousRun.open(path))
    whole = compare_runs(typed(runs[current]), typed(runs[previous]))
    assert streamed == whole
    assert sum(streamed.counts.values()) > 0


def test_a_previous_run_keeps_statuses_by_key_and_reads_failures_again(runs: dict[str, Any]) -> None:
    document = typed(runs["full"])
    previous = PreviousRun.of(document)
    assert previous.statuses == {key_digest(f.key): f.status.value for f in document.findings}
    assert previous.accounts >= {(f.resource.provider, f.resource.account) for f in document.findings}
    failing = [f for f in document.findings if f.status.value == "fail"]
    wanted = {key_digest(f.key) for f in failing[1::2]}
    facts = list(previous.failures_among(wanted | {key_digest(("no-such-policy", "x"))}))
    assert [(f.policy_id, f.resource_id) for f in facts] == [f.key for f in failing[1::2]]
    assert facts[0] == FindingFacts.of(failing[1])


def test_a_repeated_finding_key_keeps_the_last_as_a_whole_document_would(runs: dict[str, Any]) -> None:
    document = typed(runs["full"])
    failing = next(f for f in document.findings if f.status.value == "fail")
    passing = failing.model_copy(update={"status": type(failing.status)("pass")})
    findings = [*document.findings, passing]
    previous = PreviousRun(document.run, lambda: findings)
    digest = key_digest(failing.key)
    assert previous.statuses[digest] == "pass"
    assert list(previous.failures_among({digest})) == []


def test_finding_keys_are_digested_unambiguously() -> None:
    assert key_digest(("a:b", "c")) != key_digest(("a", "b:c"))
    assert key_digest(("p", "arn:aws:s3:::x")) == key_digest(("p", "arn:aws:s3:::x"))


def test_the_html_lists_the_most_severe_changes_and_counts_every_one(
    runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many findings changed, the HTML lists at most CHANGES_SHOWN rows per section (most
    severe first) and its tiles and headings count every change."""
    from auditor.report import view

    monkeypatch.setattr(view, "CHANGES_SHOWN", 2)
    hidden = failures_in_account(runs["full"])
    html = render("html", runs["gap"], runs["full"], tmp_path)
    assert tile(html, "Not assessed") == hidden > 2
    section = html.split(f"<h3>Not assessed (under a coverage gap of this run) ({hidden})</h3>", 1)[1]
    table = section.split("</table>", 1)[0]
    assert "The 2 most severe are listed" in table
    assert table.count("<tr><td>") == 2
    expected = sorted(
        (
            f
            for f in runs["full"]["findings"]
            if f["status"] == "fail" and f["resource"]["account"] == ACCOUNT
        ),
        key=lambda f: (
            ["critical", "high", "medium", "low", "info"].index(f["severity"]),
            f["policy_id"],
            f["resource"]["provider"],
            f["resource"]["name"],
        ),
    )
    assert expected[0]["resource"]["name"] in table
