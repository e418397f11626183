"""Frameworks are YAML files found beside the policies (then the shipped ones), read once, with
file:line on every error; a report shows by default those shown always and the laws of the run's
zone; a policy may map only to controls a framework file defines; one function decides a control's
status for every report."""

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
    check_policy_controls,
    control_status,
    default_frameworks,
    framework_files,
    load_framework,
    read_framework,
)
from auditor.policy.loader import load_policies
from auditor.report import view

from .conftest import DEMO_INVENTORY, DEMO_WAIVERS, SHIPPED_POLICIES

RunCli = Callable[..., Result]
SHIPPED = ["gdpr", "soc2", "iso27001"]  # the frameworks every report shows unless told otherwise


def known(*extra: str) -> str:
    """The '(known: ...)' list of an unknown-framework error: every shipped file, and `extra`."""
    return f"(known: {', '.join(sorted([*framework_files(), *extra]))})"


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
    assert [f.name for f in frameworks][:3] == SHIPPED  # by `order`, then the others by name
    assert [f.label for f in frameworks][:3] == ["GDPR", "SOC 2", "ISO/IEC 27001:2022"]
    assert [f.name for f in frameworks] == [*SHIPPED, *sorted(f.name for f in frameworks[3:])]
    assert {f.name for f in frameworks} == set(framework_files())
    assert all(f.controls for f in frameworks)


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        pytest.param(None, SHIPPED, id="no-zone"),
        # the EU's sectoral laws (DORA, NIS2, the Data Act) bind only some entities: on request only
        pytest.param("eu", SHIPPED, id="eu"),
        pytest.param("jp", [*SHIPPED, "appi"], id="jp"),
        pytest.param("ca", [*SHIPPED, "pipeda", "quebec-law25"], id="ca"),
        pytest.param("ae", [*SHIPPED, "uae-pdpl"], id="ae"),  # not the DIFC free zone's law
        pytest.param("atlantis", SHIPPED, id="unknown-zone"),
    ],
)
def test_a_report_shows_by_default_the_frameworks_shown_always_and_the_zones_law(
    zone: str | None, shown: list[str]
) -> None:
    assert [f.name for f in default_frameworks((), zone)] == shown
    for name in ("dora", "nis2", "eu-data-act", "difc-dpl"):
        assert load_framework(name).shown == "on-request"


def test_a_user_framework_file_is_in_the_report_matrix(run_cli: RunCli, mine: Path, tmp_path: Path) -> None:
    # no `order` and no `zones`: shown by every report, after the ordered ones
    assert [f.name for f in default_frameworks([mine], "eu")] == [*SHIPPED, "acme"]
    assert [f.name for f in available_frameworks([mine])][:4] == [*SHIPPED, "acme"]  # then by name
    findings = check(run_cli, tmp_path / "findings.json", "--policies", mine)
    out = tmp_path / "report.html"
    result = run_cli("report", "--findings", findings, "--format", "html", "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # no --framework: the defaults for zone eu, the run's policy directory first, then the shipped ones
    assert all(f'id="fw-{name}"' in page for name in [*SHIPPED, "acme"])
    assert 'id="fw-appi"' not in page and 'id="fw-dora"' not in page
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
        with pytest.raises(InputError, match=re.escape(f"unknown framework 'acme' {known()}")):
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
    assert f"--framework: unknown framework 'hipaa' {known()}" in result.output
    assert not out.exists()
    # the run's own policy directory adds its frameworks to the known ones
    own = check(run_cli, tmp_path / "own.json", "--policies", mine)
    result = run_cli("report", "--findings", own, "--format", "json", "--framework", "hipaa", "-o", out)
    assert result.exit_code == 2 and known("acme") in result.output

    with history(tmp_path) as store:  # an empty history
        database = store.url
    result = run_cli(
        "history", "--database", database, "period", "--from", "2026-01-01", "--to", "2026-01-02",
        "--framework", "hipaa",
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"--framework: unknown framework 'hipaa' {known()}" in result.stderr


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
    findings = check(run_cli, tmp_path / "findings.json", "--policies", mine)  # while the file is valid
    file.write_text(ACME.replace(old, new, 1))
    with pytest.raises(InputError) as raised:
        load_framework("acme", [mine])
    assert str(raised.value).startswith(f"{file}:{line}: ") and message in str(raised.value)
    # never an empty catalog: not for the period report, not for a report that shows every framework
    with pytest.raises(InputError, match=re.escape(f"{file}:{line}: ")), history(tmp_path) as store:
        build_period_report(store, date(2026, 3, 1), date(2026, 3, 1), framework="acme", policy_paths=[mine])
    result = run_cli("report", "--findings", findings, "--format", "html", "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and f"{file}:{line}: " in result.output
    assert not (tmp_path / "r.html").exists()
    # nor the check of the policies that map to it
    with pytest.raises(InputError, match=re.escape(f"{file}:{line}: ")):
        check_policy_controls(load_policies([mine]))


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        pytest.param(
            '    description: "Every store refuses unencrypted connections."\n',
            '    description: "Every store refuses unencrypted connections."\n    verified: false\n',
            6,
            "verified: false needs a note",
            id="unverified-without-note",
        ),
        pytest.param(
            '    description: "Every store refuses unencrypted connections."\n',
            '    description: "Every store refuses unencrypted connections."\n    source: http://acme.example/1\n',
            9,
            "controls.0.source: String should match pattern",
            id="source-not-https",
        ),
        pytest.param(
            'version: "2026"\n', 'version: "2026"\nverified: false\n', 1, "needs a note", id="framework"
        ),
        pytest.param(
            'version: "2026"\n',
            'version: "2026"\nshown: sometimes\n',
            5,
            "shown: Input should be",
            id="shown",
        ),
    ],
)
def test_an_unverified_or_unsourced_control_is_refused(
    mine: Path, old: str, new: str, line: int, message: str
) -> None:
    file = mine / "frameworks" / "acme.yaml"
    assert old in ACME
    file.write_text(ACME.replace(old, new, 1))
    with pytest.raises(InputError) as raised:
        load_framework("acme", [mine])
    assert str(raised.value).startswith(f"{file}:{line}: ") and message in str(raised.value)


def test_verification_is_inherited_and_the_source_is_the_link(mine: Path) -> None:
    file = mine / "frameworks" / "acme.yaml"
    text = ACME.replace('version: "2026"\n', 'version: "2026"\nverified: false\nnote: "Draft standard."\n')
    text = text.replace(
        '    description: "Every store refuses unencrypted connections."\n',
        '    description: "Every store refuses unencrypted connections."\n'
        "    source: https://acme.example/st-1\n    verified: true\n",
    )
    file.write_text(text)
    st1, st2 = load_framework("acme", [mine]).controls
    assert (st1.verified, st1.url) == (True, "https://acme.example/st-1")
    assert (st2.verified, st2.url) == (False, None)


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        pytest.param(
            '      acme: ["ST-1"]\n',
            '      acme: ["ST-1", "ST-9"]\n',
            12,
            "'ST-9' is not a control of acme",
            id="id",
        ),
        pytest.param(
            '      soc2: ["CC6.7"]\n', '      sox: ["CC6.7"]\n', 13, "unknown framework 'sox'", id="framework"
        ),
    ],
)
def test_a_policy_mapping_to_an_unknown_control_is_refused(
    mine: Path, old: str, new: str, line: int, message: str
) -> None:
    file = mine / "acme.yaml"
    check_policy_controls(load_policies([mine, SHIPPED_POLICIES]))  # as written, every id is known
    assert old in POLICY
    file.write_text(POLICY.replace(old, new, 1))
    with pytest.raises(InputError) as raised:
        check_policy_controls(load_policies([mine]))
    assert str(raised.value).startswith(f"{file}:{line}: controls: ") and message in str(raised.value)
    # a framework of the user's own is known only beside the policies that use it
    (mine / "frameworks" / "acme.yaml").unlink()
    file.write_text(POLICY)
    with pytest.raises(InputError, match=re.escape(f"{file}:12: controls: unknown framework 'acme'")):
        check_policy_controls(load_policies([mine]))


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


def test_policy_validate_refuses_a_control_no_framework_defines(run_cli: RunCli, tmp_path: Path) -> None:
    policy = (
        "policies:\n  - id: x.tagged\n    title: t\n    description: d\n    severity: low\n"
        "    condition: {attribute: tags.a, op: exists}\n    controls:\n      gdpr: [Art.44]\n"
    )
    (tmp_path / "p.yaml").write_text(policy)
    assert run_cli("policy", "validate", tmp_path).exit_code == 0
    (tmp_path / "p.yaml").write_text(policy.replace("Art.44", "Art.999"))
    unknown_id = run_cli("policy", "validate", tmp_path)
    assert unknown_id.exit_code == 2
    assert f"{tmp_path / 'p.yaml'}:8: controls: 'Art.999' is not a control of gdpr" in unknown_id.stderr
    (tmp_path / "p.yaml").write_text(policy.replace("gdpr: [Art.44]", "hipaa: ['164.312']"))
    unknown_framework = run_cli("policy", "validate", tmp_path)
    assert unknown_framework.exit_code == 2
    assert f"{tmp_path / 'p.yaml'}:8: controls: unknown framework 'hipaa'" in unknown_framework.stderr
