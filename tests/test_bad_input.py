"""Every kind of bad input: one line naming file:line (or the argument), exit 2, no output file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import DEMO_INVENTORY

Cli = Callable[..., Result]

GOOD_POLICY = """\
policies:
  - id: custom.tagged
    title: Tagged
    description: Has an owner tag.
    severity: low
    condition:
      attribute: tags.owner
      op: exists
"""


def _check(
    run_cli: Cli, tmp_path: Path, *extra: str | Path, inventory: Path = DEMO_INVENTORY
) -> tuple[Result, Path]:
    out = tmp_path / "out" / "findings.json"
    out.parent.mkdir(exist_ok=True)
    result = run_cli("check", "--inventory", inventory, "--format", "json", "--output", out, *extra)
    return result, out


def _assert_rejected(result: Result, out: Path, where: str, what: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert where in lines[0] and what in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in out.parent.iterdir()], "no temporary file may be left behind"


@pytest.mark.parametrize(
    ("replace", "by", "line", "what"),
    [
        pytest.param(
            "      op: exists\n", "      op: exists\n    bogus: [\n", 10, "invalid YAML", id="malformed-yaml"
        ),
        pytest.param(
            "    severity: low\n",
            "    severity: low\n    colour: red\n",
            6,
            "Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param("    severity: low\n", "    severity: [low]\n", 5, "severity", id="wrong-type"),
        pytest.param(
            "      op: exists\n",
            "      op: matches\n      value: '(unclosed'\n",
            9,
            "invalid regular expression",
            id="bad-regex",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.regions\n      op: subset_of\n      value: {zone: atlantis}\n",
            9,
            "unknown zone 'atlantis'",
            id="unknown-zone",
        ),
        pytest.param(
            "      op: exists\n", "      op: roughly\n", 8, "Input should be 'equals'", id="unknown-operator"
        ),
        pytest.param(
            "tags.owner",
            "location.continent",
            7,
            "unknown attribute path 'location.continent'",
            id="unknown-attribute",
        ),
        pytest.param("title: Tagged", "title: [", 5, "flow sequence at line 3", id="unclosed-flow"),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.regions\n      op: in\n      value: [eu-west-1]\n",
            9,
            "'in' does not apply to list attribute 'location.regions'",
            id="operator-for-wrong-kind",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: location.primary\n      op: equals\n      value: {zone: eu}\n",
            9,
            "a zone value goes with in, not_in or subset_of",
            id="zone-with-equals",
        ),
        pytest.param(
            "      attribute: tags.owner\n      op: exists\n",
            "      attribute: encryption.enabled\n      op: equals\n      value: 'yes'\n",
            9,
            "compare it with true or false",
            id="bool-compared-to-text",
        ),
    ],
)
def test_bad_policy(run_cli: Cli, tmp_path: Path, replace: str, by: str, line: int, what: str) -> None:
    assert replace in GOOD_POLICY
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace(replace, by))
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:{line}", what)


def test_good_policy_runs(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY)
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    assert result.exit_code in (0, 1, 3) and out.exists()


def test_duplicate_policy_id(run_cli: Cli, tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD_POLICY)
    second.write_text("# another file\n" + GOOD_POLICY)
    result, out = _check(run_cli, tmp_path, "--policies", first, "--policies", second)
    _assert_rejected(result, out, f"{second}:3", "duplicate policy id 'custom.tagged'")


def test_duplicate_yaml_key(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace("    severity: low\n", "    severity: low\n    severity: high\n"))
    result, out = _check(run_cli, tmp_path, "--policies", policy)
    _assert_rejected(result, out, f"{policy}:6", "duplicate key 'severity'")


WAIVER = """\
waivers:
  - id: W-1
    policy: transport.*
    resources: {names: [exports]}
    justification: legacy
    approver: ciso@example.com
    expires: 2027-01-31
"""


@pytest.mark.parametrize(
    ("replace", "by", "line", "what"),
    [
        pytest.param("    approver: ciso@example.com\n", "", 2, "approver", id="missing-approver"),
        pytest.param("expires: 2027-01-31", "expires: 31/01/2027", 7, "YYYY-MM-DD", id="date-format"),
        pytest.param("expires: 2027-01-31", "expires: 2027-02-30", 7, "invalid value", id="impossible-date"),
        pytest.param(
            "resources: {names: [exports]}", "resources: {}", 4, "at least one of", id="empty-selector"
        ),
        pytest.param(
            "    policy: transport.*\n",
            "    policy: transport.*\n    reason: x\n",
            4,
            "Extra inputs",
            id="unknown-field",
        ),
    ],
)
def test_bad_waiver(run_cli: Cli, tmp_path: Path, replace: str, by: str, line: int, what: str) -> None:
    assert replace in WAIVER
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(WAIVER.replace(replace, by))
    result, out = _check(run_cli, tmp_path, "--waivers", waivers)
    _assert_rejected(result, out, f"{waivers}:{line}", what)


def test_truncated_inventory_line(run_cli: Cli, tmp_path: Path) -> None:
    lines = DEMO_INVENTORY.read_text().splitlines()
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text("\n".join([*lines[:5], lines[5][: len(lines[5]) // 2]]) + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:6", "invalid JSON")


def test_invalid_inventory_record(run_cli: Cli, tmp_path: Path) -> None:
    record = json.loads(DEMO_INVENTORY.read_text().splitlines()[0])
    record["location"]["type"] = "continent"
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(DEMO_INVENTORY.read_text().splitlines()[1] + "\n" + json.dumps(record) + "\n")
    result, out = _check(run_cli, tmp_path, inventory=inventory)
    _assert_rejected(result, out, f"{inventory}:2", "location.type")


def test_missing_inventory(run_cli: Cli, tmp_path: Path) -> None:
    result, out = _check(run_cli, tmp_path, inventory=tmp_path / "nope.jsonl")
    _assert_rejected(result, out, "nope.jsonl", "cannot read inventory")


@pytest.mark.parametrize(
    ("param", "where", "what"),
    [
        pytest.param(
            "colour=red", "--param colour", "no loaded policy declares parameter 'colour'", id="unknown-param"
        ),
        pytest.param(
            "zone=atlantis", "--param zone=atlantis", "unknown zone 'atlantis'", id="unknown-zone-value"
        ),
        pytest.param("zone", "--param zone", "expected NAME=VALUE", id="no-equals"),
    ],
)
def test_bad_param(run_cli: Cli, tmp_path: Path, param: str, where: str, what: str) -> None:
    result, out = _check(run_cli, tmp_path, "--param", param)
    _assert_rejected(result, out, where, what)


def test_policy_validate_reports_the_same_errors(run_cli: Cli, tmp_path: Path) -> None:
    policy = tmp_path / "custom.yaml"
    policy.write_text(GOOD_POLICY.replace("tags.owner", "location.continent"))
    result = run_cli("policy", "validate", policy)
    assert result.exit_code == 2 and f"{policy}:7" in result.stderr
    policy.write_text(GOOD_POLICY)
    assert run_cli("policy", "validate", policy).exit_code == 0
