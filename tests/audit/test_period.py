"""The period report over a seeded history (SQLite and PostgreSQL): timelines, shares, fixes, gaps."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result

from auditor.audit.config import parse_duration
from auditor.audit.history import History
from auditor.audit.period import build_period_report, find_gaps, render_period_html

from .test_history import account_gap, synthetic_document

RunCli = Callable[..., Result]
DAY = timedelta(days=1)
JAN = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)


def seed(store: History, job: str = "nightly") -> list[str]:
    """Daily runs Jan 1-10 at 06:00, none on Jan 5. CC6.7 fails Jan 3-4 and is fixed Jan 6;
    P3.2 is unknown on Jan 8; CC6.1 passes with a waiver (exception) on Jan 2."""
    ids = []
    for day in range(10):
        if day == 4:
            continue  # the missed run
        at = JAN + day * DAY
        transport = "fail" if day in (2, 3) else "pass"
        consent = "error" if day == 7 else "pass"
        encryption = "waived" if day == 1 else "pass"
        run_id = f"run-{at:%m%d}"
        findings = [
            ("transport.plaintext-refused", "arn:aws:s3:::b1", transport, ["CC6.7"]),
            ("training.ai-training-consent", "arn:aws:s3:::b1", consent, ["P3.2", "P4.1"]),
            ("encryption.at-rest-aes256", "arn:aws:s3:::b1", encryption, ["CC6.1", "C1.1"]),
            ("encryption.at-rest-aes256", "arn:aws:s3:::b2", "pass", ["CC6.1", "C1.1"]),
        ]
        store.record(synthetic_document(run_id, at, findings), job=job, config_digest="x")
        ids.append(run_id)
    return ids


@pytest.fixture
def store(history_url: str) -> Any:
    with History(history_url) as history:
        yield history


def control(report: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in report["controls"] if c["id"] == cid)


def test_missed_run_is_a_gap_not_compliance(store: History) -> None:
    seed(store)
    report = build_period_report(
        store, date(2026, 1, 1), date(2026, 1, 10), framework="soc2", now=datetime(2026, 2, 1, tzinfo=UTC)
    )
    assert report["gaps"] == [
        {
            "from": "2026-01-04T06:00:00+00:00",
            "to": "2026-01-06T06:00:00+00:00",
            "hours": 48.0,
            "missed_runs": 1,
        }
    ]
    assert report["summary"] == {
        "runs": 9,
        "missed_runs": 1,
        "expected_runs": 10,
        "controls": 12,
        "controls_effective_in_every_run": 2,  # CC6.1 and C1.1 (the waived run counts as an exception)
        "complete": False,
    }
    transport = control(report, "CC6.7")
    statuses = [(e["at"][:10], e["status"]) for e in transport["timeline"]]
    assert statuses[2:6] == [
        ("2026-01-03", "failing"),
        ("2026-01-04", "failing"),
        ("2026-01-04", "gap"),
        ("2026-01-06", "effective"),
    ]
    assert transport["effective_runs"] == 7 and transport["runs"] == 9
    assert transport["effective_share"] == pytest.approx(7 / 9, abs=1e-4)
    assert transport["effective_share_of_expected"] == pytest.approx(0.7)
    assert transport["first_failure"] == "2026-01-03T06:00:00+00:00"
    assert transport["last_fix"] == "2026-01-06T06:00:00+00:00"
    assert transport["failing_at_end"] is False and transport["status_at_end"] == "effective"

    access = control(report, "CC6.1")
    assert access["effective_runs"] == 9 and access["effective_share"] == 1.0
    assert access["effective_share_of_expected"] == pytest.approx(0.9)  # the gap is not counted as effective
    assert [e["status"] for e in access["timeline"] if not e.get("gap")][1] == "exceptions"
    consent = control(report, "P3.2")
    assert [e["status"] for e in consent["timeline"] if not e.get("gap")][6] == "unknown"
    assert consent["first_failure"] is None
    assert control(report, "CC9.2")["timeline"][0]["status"] == "not_tested"


def test_failing_before_the_window_and_still_failing(store: History) -> None:
    seed(store)
    report = build_period_report(
        store, date(2026, 1, 4), date(2026, 1, 4), framework="soc2", now=datetime(2026, 2, 1, tzinfo=UTC)
    )
    transport = control(report, "CC6.7")
    assert report["run_before_window"] == "run-0103"
    assert transport["status_at_start"] == "failing"
    assert transport["first_failure"] == "before window"
    assert transport["failing_at_end"] is True and transport["last_fix"] is None


def test_window_without_runs_is_all_gap(store: History) -> None:
    seed(store)
    report = build_period_report(
        store, date(2026, 3, 1), date(2026, 3, 3), job="nightly", now=datetime(2026, 4, 1, tzinfo=UTC)
    )
    assert report["summary"]["runs"] == 0 and report["summary"]["missed_runs"] == 3
    assert report["gaps"][0]["from"] == "2026-03-01T00:00:00+00:00"
    assert report["gaps"][0]["to"] == "2026-03-04T00:00:00+00:00"
    assert all(
        c["effective_share"] is None and c["effective_share_of_expected"] == 0 for c in report["controls"]
    )


def test_several_jobs_need_a_choice(store: History) -> None:
    from auditor.errors import InputError

    seed(store, "nightly")
    store.record(
        synthetic_document("other", JAN + 2 * DAY + timedelta(hours=1), []), job="other", config_digest="x"
    )
    with pytest.raises(InputError, match="several jobs"):
        build_period_report(store, date(2026, 1, 1), date(2026, 1, 10))
    report = build_period_report(store, date(2026, 1, 1), date(2026, 1, 10), job="other", now=JAN + 30 * DAY)
    assert report["summary"]["runs"] == 1


def test_html_is_self_contained_escaped_and_shows_the_gap(store: History) -> None:
    seed(store, job="<script>alert(1)</script>")
    report = build_period_report(
        store, date(2026, 1, 1), date(2026, 1, 10), now=datetime(2026, 2, 1, tzinfo=UTC)
    )
    page = render_period_html(report)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "1 gap(s) in monitoring" in page and "2026-01-04 06:00" in page
    assert 'class="cell gap"' in page and 'class="cell failing"' in page
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_period_command(history_url: str, run_cli: RunCli, tmp_path: Any) -> None:
    with History(history_url) as history:
        seed(history)
    out = tmp_path / "period.json"
    result = run_cli(
        "history", "--database", history_url, "period", "--from", "2026-01-01", "--to", "2026-01-10",
        "--framework", "soc2", "--format", "json", "--output", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["framework"]["id"] == "soc2" and len(data["gaps"]) == 1
    # A two-day schedule makes the missed day an ordinary pause.
    relaxed = run_cli(
        "history", "--database", history_url, "period", "--from", "2026-01-01", "--to", "2026-01-10",
        "--format", "json", "--interval", "2d",
    )  # fmt: skip
    assert relaxed.exit_code == 0 and json.loads(relaxed.stdout)["gaps"][:1] != data["gaps"]
    html = run_cli(
        "history", "--database", history_url, "period", "--from", "2026-01-01", "--to", "2026-01-10"
    )
    assert html.exit_code == 0 and html.stdout.startswith("<!DOCTYPE html>")
    bad = run_cli(
        "history",
        "--database",
        history_url,
        "period",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-10",
        "--framework",
        "nope",
    )
    assert bad.exit_code == 2 and "unknown framework" in bad.stderr


def test_gap_arithmetic() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    runs = [start + timedelta(hours=6), start + timedelta(days=1, hours=6, minutes=40)]  # 40 min late: grace
    assert find_gaps(runs, start, start + 2 * DAY, DAY, parse_duration("1h")) == []
    late = [start + timedelta(hours=6), start + timedelta(days=1, hours=8)]
    (gap,) = find_gaps(late, start, start + 2 * DAY, DAY, parse_duration("1h"))
    assert gap.missed_runs == 1 and gap.end == late[1]
    three_days = find_gaps(
        [start + timedelta(hours=6), start + timedelta(days=4, hours=6)],
        start,
        start + 5 * DAY,
        DAY,
        timedelta(0),
    )
    assert [g.missed_runs for g in three_days] == [3]


# --- coverage: a run that saw nothing, or not everything, is no complete test --------------------

FINDINGS = [
    ("transport.plaintext-refused", "arn:aws:s3:::b1", "pass", ["CC6.7"]),
    ("encryption.at-rest-aes256", "arn:aws:s3:::b1", "pass", ["CC6.1", "C1.1"]),
]


def test_a_run_that_scanned_nothing_is_not_a_complete_run(store: History) -> None:
    """Two runs of two expected, the second without credentials: no resource, only a gap."""
    store.record(synthetic_document("ok", JAN, FINDINGS), job="nightly", config_digest="x")
    store.record(
        synthetic_document("blind", JAN + DAY, [], gaps=[account_gap("default")]),
        job="nightly",
        config_digest="x",
    )
    report = build_period_report(store, date(2026, 1, 1), date(2026, 1, 2), now=JAN + 30 * DAY)
    assert report["summary"]["runs"] == 2 and report["summary"]["expected_runs"] == 2
    assert report["gaps"] == []  # no run was missed ...
    assert report["summary"]["complete"] is False  # ... but one saw nothing
    assert report["coverage"] == {
        "complete_runs": 1,
        "runs_with_coverage_gaps": 1,
        "runs_with_nothing_evaluated": 1,
        "incomplete_runs": ["blind"],
    }
    assert [(r["id"], r["resources"], r["complete"]) for r in report["runs"]] == [
        ("ok", 1, True),
        ("blind", 0, False),
    ]
    assert report["runs"][1]["coverage_gaps"][0]["account"] == "default"
    for cid in ("CC6.7", "CC6.1", "CC9.2"):
        entry = control(report, cid)
        assert entry["timeline"][1]["status"] == "nothing_evaluated"
        assert entry["runs_with_nothing_evaluated"] == 1
    transport = control(report, "CC6.7")
    assert transport["effective_runs"] == 1 and transport["effective_share"] == 0.5
    assert transport["runs_by_status"] == {"effective": 1, "nothing_evaluated": 1}
    assert transport["status_at_end"] == "nothing_evaluated"
    assert report["summary"]["controls_effective_in_every_run"] == 0


def test_a_run_with_gaps_is_incomplete_for_the_controls_its_policies_map(store: History) -> None:
    store.record(synthetic_document("d1", JAN, FINDINGS), job="nightly", config_digest="x")
    partial = synthetic_document(
        "d2",
        JAN + DAY,
        [*FINDINGS, ("residency.data-in-zone", "arn:aws:s3:::b1", "fail", ["C1.1"])],
        gaps=[account_gap("777788889999")],
    )
    # The run's policies: transport and residency ran (CC6.7, C1.1, CC6.1); none maps CC9.2.
    partial["run"]["policies"] = [
        {"id": "transport.plaintext-refused", "controls": {"soc2": ["CC6.7"]}},
        {"id": "encryption.at-rest-aes256", "controls": {"soc2": ["CC6.1", "C1.1"]}},
        {"id": "residency.data-in-zone", "controls": {"soc2": ["C1.1"]}},
    ]
    store.record(partial, job="nightly", config_digest="x")
    store.record(synthetic_document("d3", JAN + 2 * DAY, FINDINGS), job="nightly", config_digest="x")
    report = build_period_report(store, date(2026, 1, 1), date(2026, 1, 3), now=JAN + 30 * DAY)
    assert report["summary"]["complete"] is False and report["gaps"] == []
    assert report["coverage"]["runs_with_coverage_gaps"] == 1
    assert report["coverage"]["runs_with_nothing_evaluated"] == 0
    assert report["coverage"]["incomplete_runs"] == ["d2"]

    transport = control(report, "CC6.7")
    assert [e["status"] for e in transport["timeline"]] == ["effective", "incomplete", "effective"]
    assert transport["effective_runs"] == 2 and transport["runs"] == 3
    assert transport["runs_with_coverage_gaps"] == 1 and transport["runs_with_nothing_evaluated"] == 0
    confidentiality = control(report, "C1.1")  # a failure seen under a gap is still a failure
    assert [e["status"] for e in confidentiality["timeline"]] == ["effective", "failing", "effective"]
    assert confidentiality["runs_with_coverage_gaps"] == 1
    assert confidentiality["last_fix"] == (JAN + 2 * DAY).isoformat()
    untested = control(report, "CC9.2")  # no policy of the run maps it: the gap does not touch it
    assert untested["runs_with_coverage_gaps"] == 0
    assert {e["status"] for e in untested["timeline"]} == {"not_tested"}

    page = render_period_html(report)
    assert 'id="incomplete-runs"' in page and "1 run(s) were not a complete test" in page
    assert "777788889999" in page and 'class="cell incomplete"' in page
    assert "Not complete." in page


def test_an_incomplete_run_does_not_close_a_failure(store: History) -> None:
    failing = [("transport.plaintext-refused", "arn:aws:s3:::b1", "fail", ["CC6.7"])]
    store.record(synthetic_document("f1", JAN, failing), job="nightly", config_digest="x")
    # The failing bucket's account could not be scanned: what was seen passes, nothing is fixed.
    store.record(
        synthetic_document(
            "f2",
            JAN + DAY,
            [("transport.plaintext-refused", "arn:aws:s3:::b2", "pass", ["CC6.7"])],
            gaps=[account_gap("2")],
        ),
        job="nightly",
        config_digest="x",
    )
    report = build_period_report(store, date(2026, 1, 1), date(2026, 1, 2), now=JAN + 30 * DAY)
    transport = control(report, "CC6.7")
    assert [e["status"] for e in transport["timeline"]] == ["failing", "incomplete"]
    assert transport["last_fix"] is None and transport["failing_at_end"] is True
    assert transport["effective_runs"] == 0


def test_complete_runs_keep_the_period_complete(store: History) -> None:
    for day in range(3):
        store.record(
            synthetic_document(f"c{day}", JAN + day * DAY, FINDINGS), job="nightly", config_digest="x"
        )
    report = build_period_report(store, date(2026, 1, 1), date(2026, 1, 3), now=JAN + 30 * DAY)
    assert report["summary"]["complete"] is True
    assert report["coverage"]["incomplete_runs"] == [] and report["coverage"]["complete_runs"] == 3
    assert control(report, "CC6.7")["runs_by_status"] == {"effective": 3}
    assert 'id="incomplete-runs"' not in render_period_html(report)
