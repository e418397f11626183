"""History store: the same tests against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from auditor.audit.history import History, diff_rows
from auditor.check import CheckOptions, run_check
from auditor.errors import InputError

from .conftest import CUSTOMER_DATA, DR_COPY, edit_record, read_records, write_records

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def check_document(inventory: Path, waivers: Path | None = None) -> dict[str, Any]:
    """A real findings document for `inventory` (zone eu)."""
    result = run_check(CheckOptions(inventory=inventory, params={"zone": "eu"}, waivers=waivers))
    try:
        buffer = io.BytesIO()
        result.spool.write_document(buffer, result.run)
    finally:
        result.spool.close()
    return dict(orjson.loads(buffer.getvalue()))


def synthetic_document(
    run_id: str,
    at: datetime,
    findings: list[tuple[str, str, str, list[str]]],
    *,
    gaps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A minimal document: findings as (policy id, resource id, status, soc2 controls), all in AWS
    account "1"; `gaps` are findings-JSON coverage gaps."""
    by_status = {s: sum(1 for f in findings if f[2] == s) for s in ("pass", "fail", "error", "waived")}
    return {
        "run": {
            "id": run_id,
            "tool": {"name": "auditor", "version": "test"},
            "started_at": at.isoformat(),
            "finished_at": (at + timedelta(minutes=1)).isoformat(),
            "counts": {"findings": len(findings), "by_status": by_status},
            "coverage": {
                "resources": len({f[1] for f in findings}),
                "accounts": [{"provider": "aws", "account": "1"}] if findings else [],
                "gaps": gaps or [],
            },
            "gate": {
                "fail_on": "info",
                "allow_incomplete": False,
                "exit_code": 1 if by_status["fail"] else 0,
            },
        },
        "findings": [
            {
                "policy_id": policy,
                "status": status,
                "underlying_status": status,
                "severity": "high",
                "resource": {"provider": "aws", "account": "1", "id": rid, "name": rid.rsplit(":", 1)[-1]},
                "controls": {"soc2": controls},
            }
            for policy, rid, status, controls in findings
        ],
    }


@pytest.fixture
def store(history_url: str) -> Any:
    with History(history_url) as history:
        yield history


def test_record_and_read_back_a_real_run(store: History, demo_inventory: Path, demo_waivers: Path) -> None:
    document = check_document(demo_inventory, demo_waivers)
    summary = store.record(
        document, job="nightly", config_digest="c" * 64, bundle="b", manifest_sha256="d" * 64
    )
    assert summary.id == document["run"]["id"]
    by_status = document["run"]["counts"]["by_status"]
    assert by_status["fail"] > 0 and by_status["error"] > 0 and by_status["waived"] > 0
    assert summary.counts == {**by_status, "baselined": 0}
    assert summary.resources == document["run"]["coverage"]["resources"] > 0
    assert summary.exit_code == 1 and summary.job == "nightly"
    assert store.document(summary.id) == document
    assert store.count_findings(summary.id) == len(document["findings"])
    gaps = [c for c in store.coverage(summary.id) if c["kind"] == "gap"]
    assert [(g["provider"], g["account"]) for g in gaps] == [("aws", "777788889999")]
    assert [r.id for r in store.list_runs()] == [summary.id]


def test_diff_of_two_real_runs(store: History, demo_inventory: Path, changed_inventory: Path) -> None:
    records = read_records(changed_inventory)
    # Newly unknown: acme-ml-features' tags become unreadable (its consent policy passed before).
    edit_record(
        records,
        "acme-gcs-ml-features",
        lambda r: r.update(tags=None, unknown={"tags": {"code": "access_denied", "reason": "403 (labels)"}}),
    )
    changed = write_records(changed_inventory, records)
    a = store.record(check_document(demo_inventory), job="j", config_digest="x")
    b = store.record(check_document(changed), job="j", config_digest="x")
    diff = store.diff(a, b)
    assert [(c.policy_id, c.resource_id, c.before, c.after) for c in diff.new_failures] == [
        (*CUSTOMER_DATA, "pass", "fail")
    ]
    assert [(c.policy_id, c.resource_id, c.before, c.after) for c in diff.fixed] == [
        (*DR_COPY, "fail", "pass")
    ]
    unknown = {(c.policy_id, c.resource_id) for c in diff.newly_unknown}
    assert ("training.ai-training-consent", "gs://acme-gcs-ml-features") in unknown
    before_fail = {(r.policy_id, r.resource_id) for r in store.iter_finding_rows(a.id) if r.status == "fail"}
    assert len(diff.still_failing) == len(before_fail) - 1
    assert diff.to_json_dict()["new_failures"][0]["resource"]["name"] == "acme-customer-data-eu"


def test_diff_matches_by_resource_id_not_name() -> None:
    from auditor.audit.history import FindingRow

    def row(rid: str, status: str) -> FindingRow:
        return FindingRow("p.x", rid, "azure", "acct", "exports", status, "high", False, {})

    out = diff_rows(
        [row("/sub/a/exports", "fail")], [row("/sub/a/exports", "pass"), row("/sub/b/exports", "fail")]
    )
    assert [r.resource_id for r, _, _ in out["fixed"]] == ["/sub/a/exports"]
    assert [r.resource_id for r, _, _ in out["new_failures"]] == ["/sub/b/exports"]
    gone = diff_rows([row("/sub/a/exports", "fail")], [])
    assert [(r.resource_id, was, now) for r, was, now in gone["fixed"]] == [("/sub/a/exports", "fail", None)]


def test_resolve_run_references(store: History) -> None:
    ids = ["aaaa1111-0", "aaaa2222-0", "bbbb3333-0"]
    for i, run_id in enumerate(ids):
        store.record(synthetic_document(run_id, T0 + timedelta(days=i), []), job="j", config_digest="x")
    assert store.resolve("latest").id == "bbbb3333-0"
    assert store.resolve("latest~2").id == "aaaa1111-0"
    assert store.resolve("bbbb").id == "bbbb3333-0"
    with pytest.raises(InputError, match="ambiguous"):
        store.resolve("aaaa")
    with pytest.raises(InputError, match="no such run"):
        store.resolve("cccc")
    with pytest.raises(InputError, match="only 3 run"):
        store.resolve("latest~3")
    assert store.last_run("j") is not None and store.last_run("other") is None


def test_a_failed_record_leaves_no_partial_run(store: History) -> None:
    document = synthetic_document("broken-run", T0, [("p.a", f"r{i}", "pass", []) for i in range(1500)])
    del document["findings"][1200]["resource"]  # fails after the run row and a first batch are sent
    with pytest.raises(KeyError):
        store.record(document, job="j", config_digest="x")
    assert store.list_runs() == []
    assert store.count_findings("broken-run") == 0


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import auditor.audit.history as h
    from tests_audit_doc import document
    real = h._finding_row
    def slow(run_id, seq, finding):
        if seq == 1100:  # after the first batch of 1000 findings went to the database
            Path(sys.argv[2]).write_text("inside")
            time.sleep(60)
        return real(run_id, seq, finding)
    h._finding_row = slow
    h.History(sys.argv[1]).record(document(), job="j", config_digest="x")
    """
)


def test_a_run_killed_midway_leaves_nothing(history_url: str, tmp_path: Path) -> None:
    (tmp_path / "tests_audit_doc.py").write_text(
        "from datetime import datetime, timezone\n"
        "def document():\n"
        "    findings = [{'policy_id': 'p.a', 'status': 'pass', 'severity': 'low', 'controls': {},\n"
        "                 'resource': {'provider': 'aws', 'account': '1', 'id': f'r{i}', 'name': f'r{i}'}}\n"
        "                for i in range(2000)]\n"
        "    at = datetime(2026, 1, 1, tzinfo=timezone.utc).isoformat()\n"
        "    return {'run': {'id': 'killed', 'tool': {'version': 't'}, 'started_at': at, 'finished_at': at,\n"
        "            'counts': {'by_status': {'pass': 2000}}, 'coverage': {'resources': 2000},\n"
        "            'gate': {'exit_code': 0}}, 'findings': findings}\n"
    )
    with History(history_url):
        pass  # tables exist before the child starts
    marker = tmp_path / "inside"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, history_url, str(marker)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, "the recording process ended early"
            assert time.monotonic() < deadline, "the recording process never reached the midpoint"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    with History(history_url) as store:
        deadline = time.monotonic() + 10
        while True:  # PostgreSQL notices the dropped connection and rolls back shortly after
            try:
                assert store.list_runs() == []
                assert store.count_findings("killed") == 0
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_sqlite_history_uses_wal(tmp_path: Path) -> None:
    with History(f"sqlite:///{tmp_path / 'h.db'}") as store, store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_prune_keeps_the_period_baseline_and_protected_runs(store: History) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for days_ago in (100, 90, 80, 40, 20, 5, 1):
        run_id = f"run-{days_ago:03d}"
        store.record(
            synthetic_document(run_id, now - timedelta(days=days_ago), []), job="j", config_digest="x"
        )
    store.record(
        synthetic_document("other-200", now - timedelta(days=200), []), job="other", config_digest="x"
    )

    dry = store.prune(30, now=now, dry_run=True)
    assert sorted(r.id for r in dry.deleted) == ["run-080", "run-090", "run-100"]
    assert len(store.list_runs()) == 8

    # An audit period opened 85.5 days ago: its runs (80 days ago on) stay, and so does run-090,
    # the last run before it; only run-100 goes.
    result = store.prune(30, protect_from=date(2025, 12, 6), now=now)
    assert sorted(r.id for r in result.deleted) == ["run-100"]
    assert sorted(r.id for r in result.kept_as_baseline) == ["other-200", "run-090"]
    assert sorted(r.id for r in store.list_runs()) == sorted(
        ["run-090", "run-080", "run-040", "run-020", "run-005", "run-001", "other-200"]
    )

    result = store.prune(30, now=now)
    assert sorted(r.id for r in result.deleted) == ["run-080", "run-090"]
    # The newest run before the window of each job stays: the state the window starts from.
    assert sorted(r.id for r in result.kept_as_baseline) == ["other-200", "run-040"]
    assert sorted(r.id for r in store.list_runs(job="j")) == ["run-001", "run-005", "run-020", "run-040"]
    assert store.count_findings("run-090") == 0
    with pytest.raises(InputError):
        store.prune(0)


def test_postgres_url_is_normalized_to_psycopg3() -> None:
    from auditor.audit.history import normalize_url

    assert normalize_url("postgresql://u:p@127.0.0.1:5/db").startswith("postgresql+psycopg://u:p@")
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(InputError) as err:
        normalize_url("not a url with secret")
    assert "secret" not in str(err.value)


# --- not seen is not fixed ---------------------------------------------------------------------

GAP_ACCOUNT = "111122223333"


def account_gap(account: str = GAP_ACCOUNT, scope: str = "account") -> dict[str, Any]:
    """A findings-JSON coverage gap: the account could not be scanned."""
    return {
        "record": "gap",
        "provider": "aws",
        "account": account,
        "scope": scope,
        "code": "access_denied",
        "reason": f"AccessDenied: sts:AssumeRole on arn:aws:iam::{account}:role/auditor-read",
        "at": "2026-01-06T06:00:00Z",
    }


def unscannable(inventory: Path, target: Path, account: str = GAP_ACCOUNT) -> Path:
    """`inventory` as if `account` could not be scanned: its resources gone, a gap in their place."""
    records = [
        r for r in read_records(inventory) if not (r.get("record") == "resource" and r["account"] == account)
    ]
    return write_records(target, [*records, account_gap(account)])


def test_an_account_that_becomes_a_gap_is_not_assessed_not_fixed(
    store: History, demo_inventory: Path, tmp_path: Path
) -> None:
    full = store.record(check_document(demo_inventory), job="j", config_digest="x")
    failing = {
        (r.policy_id, r.resource_id)
        for r in store.iter_finding_rows(full.id)
        if r.status == "fail" and r.account == GAP_ACCOUNT
    }
    assert len(failing) >= 2  # 8 in the demo
    gap = store.record(
        check_document(unscannable(demo_inventory, tmp_path / "gap.jsonl")), job="j", config_digest="x"
    )
    diff = store.diff(full, gap)
    assert diff.fixed == []
    assert {(c.policy_id, c.resource_id) for c in diff.not_assessed} == failing
    assert all(c.before == "fail" and c.after is None for c in diff.not_assessed)
    assert {(c.gap.account, c.gap.scope) for c in diff.not_assessed if c.gap} == {(GAP_ACCOUNT, "account")}
    assert [(g.provider, g.account, g.scope, g.code) for g in diff.new_gaps] == [
        ("aws", GAP_ACCOUNT, "account", "access_denied")
    ]
    assert diff.closed_gaps == []  # the demo's own gap (777788889999) is in both runs
    data = diff.to_json_dict()
    assert data["fixed"] == [] and len(data["not_assessed"]) == len(failing)
    assert data["not_assessed"][0]["gap"]["account"] == GAP_ACCOUNT
    assert [g["account"] for g in data["coverage_gaps"]["new"]] == [GAP_ACCOUNT]
    assert data["coverage_gaps"]["closed"] == []
    lines = diff.text_lines()
    assert (
        "fixed: 0" in lines and f"not assessed: {len(failing)}" in lines and "new coverage gaps: 1" in lines
    )
    assert not any(line.strip().startswith("fail -> absent") for line in lines)
    assert sum(line.strip().startswith("fail -> not assessed") for line in lines) == len(failing)
    assert any(GAP_ACCOUNT in line and "AccessDenied" in line for line in lines)

    # The gap closes: the account is seen again, its failures are new, the gap is listed as closed.
    again = store.record(check_document(demo_inventory), job="j", config_digest="x")
    back = store.diff(gap, again)
    assert [(g.account, g.scope) for g in back.closed_gaps] == [(GAP_ACCOUNT, "account")]
    assert back.new_gaps == [] and back.not_assessed == [] and back.fixed == []
    assert {(c.policy_id, c.resource_id) for c in back.new_failures} == failing
    assert "closed coverage gaps: 1" in back.text_lines()


def test_a_deleted_resource_in_a_fully_scanned_account_is_fixed(
    store: History, demo_inventory: Path, tmp_path: Path
) -> None:
    full = store.record(check_document(demo_inventory), job="j", config_digest="x")
    records = [r for r in read_records(demo_inventory) if r.get("name") != "acme-dr-copy"]
    deleted = store.record(
        check_document(write_records(tmp_path / "deleted.jsonl", records)), job="j", config_digest="x"
    )
    diff = store.diff(full, deleted)
    assert (*DR_COPY, "fail", None) in [(c.policy_id, c.resource_id, c.before, c.after) for c in diff.fixed]
    assert diff.not_assessed == [] and diff.new_gaps == [] and diff.closed_gaps == []


def test_region_and_unattributed_gaps_in_the_store(store: History) -> None:
    """A region gap hides the resources of its region only; a gap on a credential label (no account
    either run saw) hides every account of its provider that the later run did not see."""

    def doc(
        run_id: str, day: int, findings: list[tuple[str, str, str]], gaps: list[dict[str, Any]]
    ) -> dict[str, Any]:
        document = synthetic_document(
            run_id, T0 + timedelta(days=day), [(p, r, s, []) for p, r, s in findings], gaps=gaps
        )
        for finding in document["findings"]:
            finding["resource"]["regions"] = [
                "us-east-1" if "-us" in finding["resource"]["id"] else "eu-west-1"
            ]
        return document

    a = store.record(
        doc(
            "a",
            0,
            [
                ("p.x", "arn:aws:s3:::b-eu", "fail"),
                ("p.x", "arn:aws:s3:::b-us", "fail"),
                ("p.x", "arn:aws:s3:::keep", "fail"),
            ],
            [],
        ),
        job="j",
        config_digest="x",
    )
    b = store.record(
        doc("b", 1, [("p.x", "arn:aws:s3:::keep", "fail")], [account_gap("1", "region:us-east-1")]),
        job="j",
        config_digest="x",
    )
    diff = store.diff(a, b)
    assert [c.resource_id for c in diff.not_assessed] == ["arn:aws:s3:::b-us"]
    assert [c.resource_id for c in diff.fixed] == ["arn:aws:s3:::b-eu"]  # deleted, its region was scanned
    assert [c.resource_id for c in diff.still_failing] == ["arn:aws:s3:::keep"]
    # Nothing scanned: the only gap names the credential profile "default", not an account.
    c = store.record(doc("c", 2, [], [account_gap("default")]), job="j", config_digest="x")
    blind = store.diff(a, c)
    assert blind.fixed == [] and len(blind.not_assessed) == 3
    assert {x.gap.account for x in blind.not_assessed if x.gap} == {"default"}


def test_drift_rules_without_a_store() -> None:
    from auditor.audit.history import FindingRow
    from auditor.drift import LaterCoverage, RecordedGap, classify_change

    assert classify_change("fail", "error") == "newly_unknown"  # unknown is never fixed
    assert classify_change("fail", None) == "fixed"
    assert classify_change("fail", None, assessed=False) == "not_assessed"
    assert classify_change("pass", None, assessed=False) is None

    def row(account: str, rid: str, status: str = "fail") -> FindingRow:
        return FindingRow("p.x", rid, "azure", account, rid.rsplit("/", 1)[-1], status, "high", False, {})

    earlier = [row("sub-a", "/sub-a/c1"), row("sub-b", "/sub-b/c2"), row("sub-b", "/sub-b/c3")]
    later = [row("sub-b", "/sub-b/c3", "error")]
    coverage = LaterCoverage(
        [RecordedGap("azure", "sub-a", "containers", "access_denied", "listing failed")],
        seen_accounts={("azure", "sub-b")},
        known_accounts={("azure", "sub-a"), ("azure", "sub-b")},
    )
    out = diff_rows(earlier, later, coverage)
    assert [r.resource_id for r, _, _ in out["not_assessed"]] == ["/sub-a/c1"]  # listing failed
    assert [r.resource_id for r, _, _ in out["fixed"]] == ["/sub-b/c2"]  # deleted, account fully listed
    assert [(r.resource_id, was, now) for r, was, now in out["newly_unknown"]] == [
        ("/sub-b/c3", "fail", "error")
    ]
    # Without the later run's coverage (the old behaviour) the hidden failure would count as fixed.
    assert [r.resource_id for r, _, _ in diff_rows(earlier, later)["fixed"]] == ["/sub-a/c1", "/sub-b/c2"]
