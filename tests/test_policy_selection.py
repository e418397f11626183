"""`auditor policy list` and policy selection (`--policy`, `--skip-policy`, `--min-severity`) on
`check` and `audit`, and the selection recorded in the findings document."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from auditor.audit.config import AuditConfig, Outputs
from auditor.document import SCHEMA_VERSION
from auditor.findings import Severity
from auditor.sources import provider_names
from tests.conftest import DEMO_INVENTORY, SHIPPED_POLICIES

Cli = Callable[..., Result]


def shipped() -> dict[str, dict[str, Any]]:
    """Every shipped policy as its file says: id -> the policy's mapping."""
    policies: dict[str, dict[str, Any]] = {}
    for file in sorted(SHIPPED_POLICIES.glob("*.yaml")):
        for policy in yaml.safe_load(file.read_text())["policies"]:
            policies[policy["id"]] = policy
    return policies


def listing_order(policies: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(policies, key=lambda i: (-Severity(policies[i]["severity"]).rank, i))


def check(run_cli: Cli, tmp_path: Path, *options: str) -> tuple[Result, dict[str, Any] | None]:
    out = tmp_path / "findings.json"
    out.unlink(missing_ok=True)
    result = run_cli(
        "check", "--inventory", DEMO_INVENTORY, "--param", "zone=eu", "--format", "json", "-o", out, *options
    )
    return result, json.loads(out.read_text()) if out.exists() else None


def evaluated(document: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The policy ids of `run.policies` and those of the findings."""
    return {p["id"] for p in document["run"]["policies"]}, {f["policy_id"] for f in document["findings"]}


def test_list_json_has_every_shipped_policy_most_severe_first(run_cli: Cli) -> None:
    policies = shipped()
    assert len(policies) == 9
    result = run_cli("policy", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == listing_order(policies)
    for row in rows:
        policy = policies[row["id"]]
        assert set(row) == {"id", "title", "severity", "providers", "frameworks"}
        assert row["title"] == policy["title"] and row["severity"] == policy["severity"]
        assert row["providers"] == policy.get("scope", {}).get("providers", list(provider_names()))
        assert row["frameworks"] == sorted(policy.get("controls", {}))


def test_list_table_names_each_policy_once_with_its_severity(run_cli: Cli) -> None:
    policies = shipped()
    result = run_cli("policy", "list")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:2] == ["id", "severity"]
    assert [line.split()[0] for line in lines] == listing_order(policies)
    for line in lines:
        policy_id, severity = line.split()[:2]
        assert severity == policies[policy_id]["severity"] and policies[policy_id]["title"] in line


def test_list_reads_the_given_policy_directories(run_cli: Cli, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "mine.yaml").write_text((SHIPPED_POLICIES / "training.yaml").read_text())
    result = run_cli("policy", "list", "--policies", own, "--format", "json")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == sorted(
        i for i in shipped() if fnmatch.fnmatchcase(i, "training.*")
    )


def test_check_policy_glob_evaluates_only_matching_policies(run_cli: Cli, tmp_path: Path) -> None:
    expected = {i for i in shipped() if i.startswith("residency.")}
    assert expected
    result, document = check(run_cli, tmp_path, "--policy", "residency.*")
    assert result.exit_code in (1, 3), result.output
    assert document is not None
    in_run, in_findings = evaluated(document)
    assert in_run == expected and in_findings == expected
    assert document["run"]["schema_version"] == SCHEMA_VERSION
    assert document["run"]["selection"] == {
        "policy": ["residency.*"],
        "skip_policy": [],
        "min_severity": None,
    }


def test_check_skip_policy_and_min_severity(run_cli: Cli, tmp_path: Path) -> None:
    policies = shipped()
    result, document = check(run_cli, tmp_path, "--skip-policy", "transport.*", "--skip-policy", "training.*")
    assert result.exit_code in (1, 3) and document is not None, result.output
    kept = {i for i in policies if not i.startswith(("transport.", "training."))}
    assert evaluated(document) == (kept, kept)
    assert document["run"]["selection"]["skip_policy"] == ["transport.*", "training.*"]

    result, document = check(run_cli, tmp_path, "--min-severity", "critical")
    assert result.exit_code in (1, 3) and document is not None, result.output
    critical = {i for i, p in policies.items() if p["severity"] == "critical"}
    assert critical and evaluated(document) == (critical, critical)
    assert document["run"]["selection"]["min_severity"] == "critical"


def test_check_without_a_selection_records_none(run_cli: Cli, tmp_path: Path) -> None:
    result, document = check(run_cli, tmp_path)
    assert document is not None, result.output
    assert "selection" not in document["run"]
    assert evaluated(document)[0] == set(shipped())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ("--policy", "residency.*", "--policy", "nosuch.*"),
            "error: --policy nosuch.*: matches no loaded policy",
        ),
        (("--skip-policy", "nosuch"), "error: --skip-policy nosuch: matches no loaded policy"),
        (("--skip-policy", "*"), "error: policy selection: no policy selected (--skip-policy *)"),
        (
            ("--policy", "transport.*", "--min-severity", "critical"),
            "error: policy selection: no policy selected (--policy transport.* --min-severity critical)",
        ),
    ],
)
def test_bad_selection_is_exit_2_with_one_line(
    run_cli: Cli, tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    result, document = check(run_cli, tmp_path, *options)
    assert result.exit_code == 2
    assert document is None  # nothing written on bad input
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


def audit_config(tmp_path: Path, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "name": "selection",
        "inventories": [str(DEMO_INVENTORY)],
        "params": {"zone": "eu"},
        "outputs": {"directory": "out", "formats": ["json"], "bundle": "none"},
        **extra,
    }
    path = tmp_path / "auditor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_audit_records_the_selection_of_its_config(run_cli: Cli, tmp_path: Path) -> None:
    config = audit_config(
        tmp_path, policy=["residency.*"], skip_policy=["*.key-in-zone"], min_severity="high"
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code in (1, 3), result.output
    document = json.loads((tmp_path / "out" / "findings.json").read_text())
    expected = {i for i in shipped() if i.startswith("residency.") and not i.endswith(".key-in-zone")}
    assert expected and evaluated(document) == (expected, expected)
    assert document["run"]["selection"] == {
        "policy": ["residency.*"],
        "skip_policy": ["*.key-in-zone"],
        "min_severity": "high",
    }


def test_audit_options_replace_the_config_and_errors_name_their_source(run_cli: Cli, tmp_path: Path) -> None:
    config = audit_config(tmp_path, policy=["nosuch.*"])
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    # at the line of the config's `policy` item (yaml.safe_dump writes `policy:` then `- nosuch.*`)
    line = config.read_text().splitlines().index("- nosuch.*") + 1
    assert result.stderr.startswith(f"error: {config}:{line}: policy nosuch.*: matches no loaded policy")
    assert not (tmp_path / "out").exists()  # validated before anything was written

    result = run_cli("audit", "--config", config, "--policy", "training.*")
    assert result.exit_code in (1, 3), result.output
    document = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert evaluated(document)[0] == {i for i in shipped() if i.startswith("training.")}
    assert document["run"]["selection"]["policy"] == ["training.*"]


def test_selection_keys_count_in_the_config_digest_only_when_set() -> None:
    config = AuditConfig(
        name="stable", outputs=Outputs(directory=Path("/srv/auditor/reports")), params={"zone": "eu"}
    )
    # The digest pinned in tests/audit/test_config.py, from before the selection keys existed.
    assert config.digest() == "f72ccd8bdf646e11f8d46fae31e15edbed0347ce2ccca8048c68bd632c674827"
    for update in ({"policy": ["residency.*"]}, {"skip_policy": ["x"]}, {"min_severity": Severity.HIGH}):
        assert config.model_copy(update=update).digest() != config.digest()
