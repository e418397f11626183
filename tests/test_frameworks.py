"""Frameworks are YAML files found beside the policies (then the shipped ones), read once, with
file:line on every error; one function decides a control's status for every report."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result

from auditor.audit import period
from auditor.audit.history import History
from auditor.audit.period import build_period_report
from auditor.errors import InputError
from auditor.frameworks import (
    ControlStatus,
    available_frameworks,
    control_status,
    load_framework,
    read_framework,
)
from auditor.report import view

from .conftest import DEMO_INVENTORY, DEMO_WAIVERS

RunCli = Callable[..., Result]
SHIPPED = ["gdpr", "soc2", "iso27001"]

ACME = """\
framework: acme
title: "ACME storage standard"
label: "ACME"
version: "2026"
controls:
  - id: "ST-1"
    title: "Plaintext is refused"
    description: "Every store refuses unencrypted connections."
  - id: "ST-2"
    title: "Stores are reviewed yearly"
"""

POLICY = """\
policies:
  - id: acme.plaintext-refused
    title: Plaintext HTTP is refused
    description: Every store refuses plaintext requests.
    severity: high
    condition:
      attribute: transport.plaintext_refused
      op: equals
      value: true
    expected: plaintext requests refused
    controls:
      acme: ["ST-1"]
      soc2: ["CC6.7"]
"""


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    """A user's policy directory: one policy mapped to a new framework `acme`, and its one file."""
    directory = tmp_path / "mine"
    (directory / "frameworks").mkdir(parents=True)
    (directory / "acme.yaml").write_text(POLICY)
    (directory / "frameworks" / "acme.yaml").write_text(ACME)
    return directory


def check(run_cli: RunCli, output: Path, *args: str | Path, inventory: Path = DEMO_INVENTORY) -> Path:
    result = run_cli("check", "--inventory", inventory, "--format", "json", "-o", output, *args)
    assert result.exit_code in (0, 1, 3), result.output
    return output


def matrix(page: str, framework: str) -> dict[str, str]:
    """Control id -> verdict of one framework's control matrix in the HTML report."""
    section = page.split(f'id="fw-{framework}"', 1)[1].split("</article>", 1)[0]
    return dict(
        (cid, verdict.replace("-", " "))
        for verdict, cid in re.findall(r'<tr class="v-([a-z-]+)">\s*<td><b>([^<]+)</b>', section)
    )


def history(tmp_path: Path) -> History:
    return History(f"sqlite:///{tmp_path / 'history.db'}")


# --- a new framework is one file ------------------------------------------------------------------


def test_the_shipped_frameworks_come_from_their_files() -> None:
    frameworks = available_frameworks()
    assert [f.name for f in frameworks] == SHIPPED
    assert [f.label for f in frameworks] == ["GDPR", "SOC 2", "ISO/IEC 27001:2022"]
    assert all(f.controls for f in frameworks)


def test_a_user_framework_file_is_in_the_report_matrix(run_cli: RunCli, mine: Path, tmp_path: Path) -> None:
    assert [f.name for f in available_frameworks([mine])] == [*SHIPPED, "acme"]  # no `order`: after, by name
    findings = check(run_cli, tmp_path / "findings.json", "--policies", mine)
    out = tmp_path / "report.html"
    result = run_cli("report", "--findings", findings, "--format", "html", "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # no --framework: every framework found, the run's policy directory first, then the shipped ones
    assert all(f'id="fw-{name}"' in page for name in [*SHIPPED, "acme"])
    assert "ACME: ACME storage standard" in page
    assert matrix(page, "acme") == {"ST-1": "not effective", "ST-2": "not assessed"}
    assert "ACME ST-1" in page  # the policy's controls, labelled from the file

    md = tmp_path / "report.md"
    result = run_cli(
        "report", "--findings", findings, "--format", "markdown", "--framework", "acme", "-o", md
    )
    assert result.exit_code == 0, result.output
    assert "| ACME | ST-1 Plaintext is refused | not effective |" in md.read_text()
    csv = tmp_path / "report.csv"
    assert run_cli("report", "--findings", findings, "--format", "csv", "-o", csv).exit_code == 0
    assert csv.read_text().splitlines()[0].count(",acme,") == 1


def test_a_user_framework_file_is_in_the_period_report(mine: Path, tmp_path: Path) -> None:
    start = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    with history(tmp_path) as store:
        for day, status in enumerate(["fail", "pass"]):
            doc = synthetic(f"r{day}", start + timedelta(days=day), [("acme.plaintext-refused", status)])
            store.record(doc, job="nightly", config_digest="x")
        report = build_period_report(
            store,
            date(2026, 3, 1),
            date(2026, 3, 2),
            framework="acme",
            policy_paths=[mine],
            now=datetime(2026, 4, 1, tzinfo=UTC),
        )
        assert report["framework"] == {"id": "acme", "title": "ACME storage standard"}
        st1, st2 = report["controls"]
        assert (st1["id"], st1["title"]) == ("ST-1", "Plaintext is refused")
        assert [e["status"] for e in st1["timeline"]] == ["failing", "effective"]
        assert st1["last_fix"] == "2026-03-02T06:00:00+00:00"
        assert {e["status"] for e in st2["timeline"]} == {"not_tested"}
        # without the user's directory the framework does not exist
        with pytest.raises(InputError, match=r"unknown framework 'acme' \(known: gdpr, iso27001, soc2\)"):
            build_period_report(store, date(2026, 3, 1), date(2026, 3, 2), framework="acme")


def synthetic(run_id: str, at: datetime, findings: list[tuple[str, str]]) -> dict[str, Any]:
    """A minimal findings document: (policy id, status) on one AWS bucket, mapped to acme ST-1."""
    by_status = {s: sum(1 for f in findings if f[1] == s) for s in ("pass", "fail", "error", "waived")}
    return {
        "run": {
            "id": run_id,
            "tool": {"name": "auditor", "version": "test"},
            "started_at": at.isoformat(),
            "finished_at": (at + timedelta(minutes=1)).isoformat(),
            "counts": {"findings": len(findings), "by_status": by_status},
            "coverage": {"resources": 1, "accounts": [{"provider": "aws", "account": "1"}], "gaps": []},
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
                "resource": {"provider": "aws", "account": "1", "id": "arn:aws:s3:::b1", "name": "b1"},
                "controls": {"acme": ["ST-1"]},
            }
            for policy, status in findings
        ],
    }


# --- unknown and invalid frameworks ---------------------------------------------------------------


def test_an_unknown_framework_is_exit_2_naming_the_known_ones(
    run_cli: RunCli, mine: Path, tmp_path: Path
) -> None:
    shipped = check(run_cli, tmp_path / "shipped.json")
    out = tmp_path / "report.csv"
    result = run_cli("report", "--findings", shipped, "--format", "csv", "--framework", "hipaa", "-o", out)
    assert result.exit_code == 2
    assert "--framework: unknown framework 'hipaa' (known: gdpr, iso27001, soc2)" in result.output
    assert not out.exists()
    # the run's own policy directory adds its frameworks to the known ones
    own = check(run_cli, tmp_path / "own.json", "--policies", mine)
    result = run_cli("report", "--findings", own, "--format", "json", "--framework", "hipaa", "-o", out)
    assert result.exit_code == 2 and "(known: acme, gdpr, iso27001, soc2)" in result.output

    with history(tmp_path) as store:  # an empty history
        database = store.url
    result = run_cli(
        "history", "--database", database, "period", "--from", "2026-01-01", "--to", "2026-01-02",
        "--framework", "hipaa",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--framework: unknown framework 'hipaa' (known: gdpr, iso27001, soc2)" in result.stderr


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        pytest.param(
            '    title: "Plaintext is refused"\n', "", 6, "controls.0.title: Field required", id="missing"
        ),
        pytest.param(
            "    description:", "    descripton:", 8, "controls.0.descripton: Extra inputs", id="typo"
        ),
        pytest.param("framework: acme\n", "framework: acme2\n", 1, "must be named like its file", id="name"),
        pytest.param(
            'id: "ST-2"', 'id: "ST-1"', 9, "duplicate control id 'ST-1' (first at line 6)", id="dup"
        ),
        pytest.param('label: "ACME"\n', 'label: "ACME\n', 4, "invalid YAML", id="syntax"),
        pytest.param(
            'version: "2026"', "version: [2026]", 4, "version: Input should be a valid string", id="type"
        ),
    ],
)
def test_an_invalid_framework_file_names_file_and_line(
    mine: Path, tmp_path: Path, run_cli: RunCli, old: str, new: str, line: int, message: str
) -> None:
    file = mine / "frameworks" / "acme.yaml"
    assert old in ACME
    file.write_text(ACME.replace(old, new, 1))
    with pytest.raises(InputError) as raised:
        load_framework("acme", [mine])
    assert str(raised.value).startswith(f"{file}:{line}: ") and message in str(raised.value)
    # never an empty catalog: not for the period report, not for a report that shows every framework
    with pytest.raises(InputError, match=re.escape(f"{file}:{line}: ")), history(tmp_path) as store:
        build_period_report(store, date(2026, 3, 1), date(2026, 3, 1), framework="acme", policy_paths=[mine])
    findings = check(run_cli, tmp_path / "findings.json", "--policies", mine)
    result = run_cli("report", "--findings", findings, "--format", "html", "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and f"{file}:{line}: " in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_framework_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    file = tmp_path / "frameworks" / "odd.yaml"
    file.parent.mkdir()
    file.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match=r"odd\.yaml:1: a framework file is a mapping"):
        read_framework(file)


# --- one control status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "status", "verdict"),
    [
        ({"pass": 3, "fail": 1, "error": 2}, ControlStatus.FAILING, "not effective"),
        ({"pass": 3, "error": 2}, ControlStatus.UNKNOWN, "not assessed"),
        ({"pass": 3, "waived": 1}, ControlStatus.EXCEPTIONS, "effective"),
        ({"waived": 1}, ControlStatus.EXCEPTIONS, "effective"),
        ({"pass": 3}, ControlStatus.EFFECTIVE, "effective"),
        ({"pass": 0, "fail": 0, "error": 0, "waived": 0}, ControlStatus.NOT_TESTED, "not assessed"),
    ],
)
def test_one_status_in_the_words_of_each_report(
    counts: dict[str, int], status: ControlStatus, verdict: str
) -> None:
    assert control_status(counts).status is status and control_status(counts, policies=1).status is status
    assert status.verdict == verdict
    assert status.effective == (verdict == "effective")
    # coverage: a run that saw nothing tested nothing; gaps leave an otherwise passing control incomplete
    assert control_status(counts, nothing_evaluated=True).status is ControlStatus.NOTHING_EVALUATED
    with_gaps = control_status(counts, incomplete=True).status
    kept = (ControlStatus.FAILING, ControlStatus.UNKNOWN)
    assert with_gaps is (status if status in kept else ControlStatus.INCOMPLETE)


def test_the_report_matrix_and_the_period_report_agree(run_cli: RunCli, tmp_path: Path) -> None:
    # both modules decide with the one function
    assert view.control_status is period.control_status is control_status
    # Runs of parts of the demo estate (waivers included; without its coverage gap, so each run is a
    # complete test): only compliant resources, then with waived ones, with unreadable ones, all.
    lines = [line for line in DEMO_INVENTORY.read_bytes().splitlines(keepends=True) if b'"gap"' not in line]
    args = ("--param", "zone=eu", "--waivers", DEMO_WAIVERS, "--today", "2026-11-24")
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(lines))
    worst: dict[str, int] = {}
    rank = {"pass": 0, "waived": 1, "error": 2, "fail": 3}
    for finding in orjson.loads(check(run_cli, tmp_path / "whole.json", *args, inventory=whole).read_bytes())[
        "findings"
    ]:
        rid = finding["resource"]["id"]
        worst[rid] = max(worst.get(rid, 0), rank[finding["status"]])
    pages: dict[str, str] = {}
    seen: set[ControlStatus] = set()
    with history(tmp_path) as store:
        for part, allowed in enumerate([{0}, {0, 1}, {0, 2}, {0, 1, 2, 3}]):
            inventory = tmp_path / f"part{part}.jsonl"
            # a resource with no finding (an archived OpenAI project) counts as compliant
            inventory.write_bytes(
                b"".join(ln for ln in lines if worst.get(orjson.loads(ln)["id"], 0) in allowed)
            )
            findings = check(run_cli, tmp_path / f"part{part}.json", *args, inventory=inventory)
            out = tmp_path / f"part{part}.html"
            assert run_cli("report", "--findings", findings, "--format", "html", "-o", out).exit_code == 0
            document = orjson.loads(findings.read_bytes())
            store.record(document, job="demo", config_digest="x")
            pages[document["run"]["id"]] = out.read_text()
        day = datetime.now(UTC).date()
        for framework in SHIPPED:
            report = build_period_report(
                store, day - timedelta(days=1), day + timedelta(days=1), framework=framework
            )
            for run_id, page in pages.items():
                statuses = {
                    c["id"]: ControlStatus(next(e["status"] for e in c["timeline"] if e.get("run") == run_id))
                    for c in report["controls"]
                }
                assert {cid: s.verdict for cid, s in statuses.items()} == matrix(page, framework)
                seen |= set(statuses.values())
    # every status a complete run can give was compared
    assert seen == set(ControlStatus) - {ControlStatus.INCOMPLETE, ControlStatus.NOTHING_EVALUATED}
