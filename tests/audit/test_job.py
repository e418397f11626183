"""`auditor audit` end to end: demo, drift between runs, baselines, secrets, scanner wiring, config errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from auditor import findings_stream
from auditor.audit.config import REPORT_FILES, AuditConfig
from auditor.drift import key_digest
from auditor.report import base as report_base
from auditor.report.previous import PreviousRun

from .conftest import (
    CUSTOMER_DATA,
    DR_COPY,
    PostgresServer,
    break_customer_data,
    edit_record,
    read_records,
    write_records,
)

RunCli = Callable[..., Result]


def auditor_exe() -> str:
    exe = Path(sys.executable).parent / "auditor"
    return str(exe) if exe.exists() else shutil.which("auditor") or "auditor"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}


def write_config(directory: Path, inventory: Path, **extra: Any) -> Path:
    """auditor.yaml auditing `inventory` with zone eu, writing html/json/markdown under out/."""
    data: dict[str, Any] = {
        "name": "test-job",
        "inventories": [str(inventory)],
        "params": {"zone": "eu"},
        "outputs": {"directory": "out", "formats": ["html", "json", "markdown"]},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    path = directory / "auditor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def findings(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_demo_on_a_fresh_install(tmp_path: Path) -> None:
    """The README's first command: reports, a verified bundle and a history entry; exit 1."""
    audit = subprocess.run(
        [auditor_exe(), "audit", "--demo"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert audit.returncode == 1, audit.stderr
    out = tmp_path / "reports"  # the default output directory
    document = findings(out / "findings.json")
    assert document["run"]["gate"]["exit_code"] == 1 and document["run"]["counts"]["by_status"]["fail"] > 0
    for fmt in AuditConfig().outputs.formats:
        report = out / REPORT_FILES[fmt]
        assert report.stat().st_size > 0, fmt
    bundles = list((out / "bundles").iterdir())
    assert len(bundles) == 1
    bundle = bundles[0]
    assert {"manifest.json", "manifest.sig", "inventory.jsonl", "findings.json", "config.json"} <= {
        p.name for p in bundle.iterdir()
    }
    assert (bundle / "findings.json").read_bytes() == (out / "findings.json").read_bytes()
    assert (bundle / "waivers" / "demo-waivers.yaml").is_file()
    assert (bundle / "policies" / "shipped" / "residency.yaml").is_file()
    verify = subprocess.run(
        [auditor_exe(), "verify", str(bundle), "--public-key", str(out / "demo-signing.pub")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert "OK" in verify.stdout and "the given public key" in verify.stdout
    listing = subprocess.run(
        [auditor_exe(), "history", "--database", str(out / "history.db"), "list", "--format", "json"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    runs = json.loads(listing.stdout)
    assert [(r["id"], r["job"], r["bundle"]) for r in runs] == [(document["run"]["id"], "demo", str(bundle))]
    assert "gate (fail-on info): exit 1" in audit.stdout


def test_two_runs_give_a_diff_and_a_report_with_changes(
    tmp_path: Path,
    run_cli: RunCli,
    demo_inventory: Path,
    changed_inventory: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inventory = tmp_path / "estate.jsonl"
    shutil.copyfile(demo_inventory, inventory)
    config = write_config(tmp_path, inventory)
    seen: list[report_base.ReportInput] = []
    real_render = report_base.render_to_file

    def spy(name: str, report: report_base.ReportInput, output: Path) -> None:
        seen.append(report)
        real_render(name, report, output)

    monkeypatch.setattr(report_base, "render_to_file", spy)

    first = run_cli("audit", "--config", config)
    assert first.exit_code == 1, first.stderr
    first_doc = findings(tmp_path / "out" / "findings.json")
    assert seen and all(r.previous is None for r in seen)

    shutil.copyfile(changed_inventory, inventory)
    seen.clear()
    second = run_cli("audit", "--config", config)
    assert second.exit_code == 1, second.stderr
    second_doc = findings(tmp_path / "out" / "findings.json")
    assert second_doc["run"]["id"] != first_doc["run"]["id"]
    # Every report of the second run got the first run (from the history, read one finding at a
    # time) as `previous`: its statuses by key, and the facts of its failures read again.
    assert len(seen) == 3
    statuses = {key_digest((f["policy_id"], f["resource"]["id"])): f["status"] for f in first_doc["findings"]}
    failures = {
        key_digest((f["policy_id"], f["resource"]["id"]))
        for f in first_doc["findings"]
        if f["status"] == "fail"
    }
    for report in seen:
        previous = report.previous
        assert isinstance(previous, PreviousRun)
        assert previous.id == first_doc["run"]["id"] and previous.statuses == statuses
        facts = list(previous.failures_among(failures))
        assert sorted((f.policy_id, f.resource_id) for f in facts) == sorted(
            (f["policy_id"], f["resource"]["id"]) for f in first_doc["findings"] if f["status"] == "fail"
        )
    assert "1 new failure(s), 1 fixed" in second.stdout

    diff = run_cli("history", "--config", config, "diff", "latest~1", "latest", "--format", "json")
    assert diff.exit_code == 0, diff.stderr
    data = json.loads(diff.stdout)
    assert data["from"]["id"] == first_doc["run"]["id"] and data["to"]["id"] == second_doc["run"]["id"]
    assert [(c["policy_id"], c["resource"]["id"]) for c in data["new_failures"]] == [CUSTOMER_DATA]
    assert [(c["policy_id"], c["resource"]["id"]) for c in data["fixed"]] == [DR_COPY]
    assert data["newly_unknown"] == []
    text = run_cli("history", "--config", config, "diff", "latest~1", "latest")
    assert "new failures: 1" in text.stdout and "acme-customer-data-eu" in text.stdout

    html = (tmp_path / "out" / "report.html").read_text()
    changes = html[html.index('id="changes"') :]
    changes = changes[: changes.index("</section>")]
    assert "acme-customer-data-eu" in changes and "acme-dr-copy" in changes
    assert "Changes since the previous run" in (tmp_path / "out" / "report.html").read_text()


def clean_estate(demo_inventory: Path) -> list[dict[str, Any]]:
    """The demo resources that can be read completely (no unknowns, no lapsed attestation) and no
    coverage gaps."""
    today = date.today().isoformat()
    return [
        r
        for r in read_records(demo_inventory)
        if r.get("record") == "resource"
        and not r["unknown"]
        and not any(e.get("attestation") and e["attestation"]["expires"] < today for e in r["evidence"])
    ]


def test_baseline_hides_only_baselined_failures(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path
) -> None:
    records = clean_estate(demo_inventory)
    inventory = write_records(tmp_path / "estate.jsonl", records)
    config = write_config(tmp_path, inventory)
    out = tmp_path / "out"

    assert run_cli("audit", "--config", config).exit_code == 1
    created = run_cli(
        "baseline", "create", "--findings", out / "findings.json", "--output", tmp_path / "baseline.yaml"
    )
    assert created.exit_code == 0, created.stderr
    failing = {
        (f["policy_id"], f["resource"]["id"])
        for f in findings(out / "findings.json")["findings"]
        if f["status"] == "fail"
    }
    entries = yaml.safe_load((tmp_path / "baseline.yaml").read_text())["entries"]
    assert {(e["policy"], e["resource"]) for e in entries} == failing and failing

    # Nothing new fails: the gate passes, and the failures are still reported, as baselined.
    second = run_cli("audit", "--config", config, "--baseline", tmp_path / "baseline.yaml")
    assert second.exit_code == 0, second.stderr
    document = findings(out / "findings.json")
    fails = [f for f in document["findings"] if f["status"] == "fail"]
    assert {(f["policy_id"], f["resource"]["id"]) for f in fails} == failing
    assert all(f.get("baselined") is True for f in fails)
    assert not any(f.get("baselined") for f in document["findings"] if f["status"] != "fail")
    assert document["run"]["gate"]["baseline"]["baselined"] == len(failing)
    assert json.loads((out / "report.json").read_text())["findings"] == document["findings"]
    listed = json.loads(run_cli("history", "--config", config, "list", "--format", "json").stdout)
    assert listed[0]["counts"]["baselined"] == len(failing) and listed[0]["exit_code"] == 0

    # A same-named container in another subscription, and a newly broken bucket: not hidden.
    exports = next(r for r in records if r["provider"] == "azure" and r["name"] == "exports")
    twin = json.loads(json.dumps(exports))
    twin["account"] = "0f0f0f0f-1111-2222-3333-444444444444"
    twin["storage_account"] = "acmeother"
    twin["id"] = exports["id"].replace(exports["account"], twin["account"]).replace("acmelegacy", "acmeother")
    records.append(twin)
    edit_record(records, "acme-customer-data-eu", break_customer_data)
    write_records(inventory, records)
    third = run_cli("audit", "--config", config, "--baseline", tmp_path / "baseline.yaml")
    assert third.exit_code == 1, third.stderr
    document = findings(out / "findings.json")
    new = {
        (f["policy_id"], f["resource"]["id"])
        for f in document["findings"]
        if f["status"] == "fail" and not f.get("baselined")
    }
    twin_fails = {k for k in new if k[1] == twin["id"]}
    assert twin_fails and {k[0] for k in twin_fails} == {k[0] for k in failing if k[1] == exports["id"]}
    assert new == twin_fails | {CUSTOMER_DATA}
    assert document["run"]["gate"]["failures"] == len(new)


def test_baseline_create_rejects_a_non_findings_file(tmp_path: Path, run_cli: RunCli) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"nope": 1}')
    result = run_cli("baseline", "create", "--findings", bad, "--output", tmp_path / "b.yaml")
    assert result.exit_code == 2 and "not a findings document" in result.stderr
    broken = tmp_path / "baseline.yaml"
    broken.write_text("version: 1\nentries:\n  - policy: p.x\n    resorce: r\n")
    config = write_config(tmp_path, tmp_path / "x.jsonl")
    (tmp_path / "x.jsonl").write_text("")
    result = run_cli("audit", "--config", config, "--baseline", broken)
    assert result.exit_code == 2 and f"{broken}:3: entries.0.resource" in result.stderr


def test_secrets_never_reach_reports_logs_or_bundles(
    tmp_path: Path,
    run_cli: RunCli,
    demo_inventory: Path,
    postgres: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = postgres.new_database()
    keys = tmp_path / "keys"
    assert (
        run_cli(
            "keygen", "--private-key", keys / "signing.key", "--public-key", keys / "signing.pub"
        ).exit_code
        == 0
    )
    pem = (keys / "signing.key").read_text()
    monkeypatch.setenv("AUDITOR_DATABASE_URL", url)
    monkeypatch.setenv("AUDITOR_SIGNING_KEY", pem)
    config = write_config(
        tmp_path, demo_inventory, outputs={"formats": ["html", "json", "markdown", "sarif", "junit", "csv"]}
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 1, result.stderr

    secrets = [postgres.password, *(line for line in pem.splitlines() if "-----" not in line)]
    logs = result.stdout + result.stderr
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in files) and any(p.name == "manifest.sig" for p in files)
    for secret in secrets:
        assert secret not in logs
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    effective = json.loads(next(p for p in files if p.name == "config.json").read_text())
    assert "***" in effective["history"]["database_url"]
    assert effective["signing"]["private_key"] == "<from $AUDITOR_SIGNING_KEY>"
    # The run went to PostgreSQL, and the bundle is signed with the key from the environment.
    listed = run_cli("history", "list", "--format", "json")
    assert json.loads(listed.stdout)[0]["job"] == "test-job"
    bundle = next((tmp_path / "out" / "bundles").iterdir())
    assert run_cli("verify", bundle, "--public-key", keys / "signing.pub").exit_code == 0
    assert not (tmp_path / "out" / "history.db").exists()


def test_a_password_in_the_config_file_is_refused(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path
) -> None:
    config = write_config(
        tmp_path, demo_inventory, history={"database_url": "postgresql://u:hunter2@127.0.0.1/db"}
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2
    assert "AUDITOR_DATABASE_URL" in result.stderr and "hunter2" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ("name: x\nclouds:\n  aws:\n    profils: [a]\n", ":4", "Extra inputs"),
        ("name: x\nfail_on: severe\n", ":2", "fail_on"),
        ("name: x\nschedule:\n  interval: often\n", ":3", "duration"),
        ("name: x\noutputs:\n  formats: [docx]\n", ":3", "outputs.formats"),
        ("- a list\n", ":1", "mapping"),
    ],
)
def test_config_errors_name_file_and_line(
    tmp_path: Path, run_cli: RunCli, content: str, where: str, message: str
) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(content)
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2
    assert f"{config}{where}" in result.stderr and message in result.stderr


def test_audit_needs_a_config_or_demo(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli("audit")
    assert result.exit_code == 2 and "--demo" in result.stderr
    result = run_cli("audit", "--demo", "--config", tmp_path / "auditor.yaml")
    assert result.exit_code == 2


def fake_scan_module(
    calls: list[tuple[str, dict[str, Any], list[Path]]], estate: list[dict[str, Any]]
) -> types.ModuleType:
    """Stand-ins for the sources' scan functions: record the section they get, write that cloud's part."""
    from auditor.scan.base import ScanSummary

    module = types.ModuleType("auditor_test_fake_scanners")

    def make(cloud: str) -> Any:
        def scan(section: Any, policy_paths: list[Path], output: Path, progress: bool | None) -> ScanSummary:
            calls.append((cloud, section.model_dump(mode="json"), list(policy_paths)))
            records = [r for r in estate if r["provider"] == cloud]
            write_records(output, records)
            return ScanSummary(provider=cloud, resources=len(records))

        return scan

    module.aws = make("aws")  # type: ignore[attr-defined]
    module.gcp = make("gcp")  # type: ignore[attr-defined]
    return module


def test_audit_scans_the_configured_clouds(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from auditor import sources

    calls: list[tuple[str, dict[str, Any], list[Path]]] = []
    monkeypatch.setitem(
        sys.modules, "auditor_test_fake_scanners", fake_scan_module(calls, read_records(demo_inventory))
    )
    registry = sources._sources()
    for cloud in ("aws", "gcp"):
        fake = dataclasses.replace(registry[cloud], scan=f"auditor_test_fake_scanners:{cloud}")
        monkeypatch.setitem(registry, cloud, fake)
    policies = tmp_path / "policies"
    shutil.copytree(demo_inventory.parent.parent / "policies", policies)
    config = write_config(
        tmp_path,
        demo_inventory,
        inventories=[],
        policies=["policies"],
        clouds={
            "aws": {
                "profiles": ["prod"],
                "role": "auditor-read",
                "accounts": ["111122223333"],
                "regions": ["eu-west-1"],
            },
            "gcp": {
                "projects": ["acme-analytics-eu"],
                "api_endpoint": "http://127.0.0.1:9",
                "options": {"timeout": 5},
            },
        },
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 1, result.stderr
    by_cloud = {cloud: (section, paths) for cloud, section, paths in calls}
    aws, aws_policies = by_cloud["aws"]
    assert aws_policies == [policies]
    assert aws["profiles"] == ["prod"] and aws["role"] == "auditor-read"
    assert aws["regions"] == ["eu-west-1"] and aws["accounts"] == ["111122223333"]
    gcp, gcp_policies = by_cloud["gcp"]
    assert gcp_policies == [policies]
    assert gcp["projects"] == ["acme-analytics-eu"] and gcp["api_endpoint"] == "http://127.0.0.1:9"
    assert gcp["options"] == {"timeout": 5}
    document = findings(tmp_path / "out" / "findings.json")
    assert {f["resource"]["provider"] for f in document["findings"]} == {"aws", "gcp"}
    assert document["run"]["audit"]["inventory_sources"] == ["scan:aws", "scan:gcp"]
    assert (tmp_path / "out" / "bundles").is_dir()
    bundle = next((tmp_path / "out" / "bundles").iterdir())
    assert (bundle / "policies" / "1-policies" / "residency.yaml").is_file()

    config = write_config(
        tmp_path, demo_inventory, clouds={"gcp": {"projects": ["p"], "options": {"fail": True}}}
    )
    failed = run_cli("audit", "--config", config)
    assert failed.exit_code == 2 and "clouds.gcp" in failed.stderr
    assert len(list((tmp_path / "out" / "bundles").iterdir())) == 1  # the failed run left no bundle
    assert not list((tmp_path / "out").glob(".run-*"))


# --- incomplete runs, bad input, leftovers of killed runs ------------------------------------------


def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere (no keys, no profile files, no instance metadata) and every
    endpoint an unused loopback port: the AWS scanner can reach nothing."""
    import socket

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


def test_audit_without_credentials_records_the_run_and_says_why(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_aws_credentials(monkeypatch, tmp_path)
    aws = {"accounts": ["111122223333"], "role": "auditor-read", "options": {"max-attempts": 1}}
    config = write_config(tmp_path, demo_inventory, inventories=[], clouds={"aws": aws})
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 3, result.stderr
    assert last_line(result).startswith(
        "incomplete: 0 resources evaluated; 1 coverage gap: aws 111122223333 "
    )
    # The record that the run happened: findings, every report, a bundle and a history entry.
    out = tmp_path / "out"
    document = findings(out / "findings.json")
    assert document["run"]["gate"]["exit_code"] == 3 and document["run"]["gate"]["nothing_evaluated"]
    assert [g["account"] for g in document["run"]["coverage"]["gaps"]] == ["111122223333"]
    for name in ("report.html", "report.json", "summary.md"):
        assert (out / name).is_file(), name
    assert len(list((out / "bundles").iterdir())) == 1
    listed = json.loads(run_cli("history", "--config", config, "list", "--format", "json").stdout)
    assert [r["exit_code"] for r in listed] == [3]

    # --allow-empty accepts the emptiness, not the gap; both switches together make it 0.
    empty_ok = run_cli("audit", "--config", config, "--allow-empty")
    assert empty_ok.exit_code == 3, empty_ok.stderr
    assert last_line(empty_ok).startswith("incomplete: 1 coverage gap: aws 111122223333 ")
    both = run_cli("audit", "--config", config, "--allow-empty", "--allow-incomplete")
    assert both.exit_code == 0, both.stderr
    assert "incomplete" not in both.stdout + both.stderr


def test_audit_of_an_empty_inventory_is_incomplete_unless_allowed(tmp_path: Path, run_cli: RunCli) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    config = write_config(tmp_path, empty)
    result = run_cli("audit", "--config", config, "--allow-incomplete")
    assert result.exit_code == 3, result.stderr
    assert last_line(result) == "incomplete: 0 resources evaluated (the inventory holds no resources)"
    assert findings(tmp_path / "out" / "findings.json")["run"]["gate"]["exit_code"] == 3

    # A baseline recomputes the gate: nothing evaluated stays incomplete.
    created = run_cli(
        "baseline",
        "create",
        "--findings",
        tmp_path / "out" / "findings.json",
        "--output",
        tmp_path / "b.yaml",
    )
    assert created.exit_code == 0, created.stderr
    baselined = run_cli("audit", "--config", config, "--baseline", tmp_path / "b.yaml")
    assert baselined.exit_code == 3, baselined.stderr
    assert findings(tmp_path / "out" / "findings.json")["run"]["gate"]["exit_code"] == 3

    assert run_cli("audit", "--config", config, "--allow-empty").exit_code == 0
    config = write_config(tmp_path, empty, allow_empty=True)
    allowed = run_cli("audit", "--config", config)
    assert allowed.exit_code == 0, allowed.stderr
    assert findings(tmp_path / "out" / "findings.json")["run"]["gate"]["allow_empty"] is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"waivers": "missing-waivers.yaml"}, "waivers file not found", id="waivers-missing"),
        pytest.param({"baseline": "missing-baseline.yaml"}, "baseline file not found", id="baseline-missing"),
        pytest.param({"params": {"zoen": "eu"}}, "zoen", id="unknown-param"),
        pytest.param({"policies": ["no-such-policies"]}, "not found", id="policies-missing"),
        pytest.param({"inventories": ["no-such.jsonl"]}, "inventory file not found", id="inventory-missing"),
        pytest.param({"inventories": []}, "nothing to audit", id="nothing-to-audit"),
        pytest.param(
            {"clouds": {"aws": {"options": {"max-attempts": 99}}}}, "clouds.aws", id="scanner-option"
        ),
        pytest.param(
            {"clouds": {"gcp": {"projects": ["p"], "tls_policy": "no-tls.yaml"}}},
            "clouds.gcp.tls_policy: file not found: no-tls.yaml",
            id="tls-policy-missing",
        ),
        pytest.param({"signing": {"private_key": "no.key"}}, "signing key", id="signing-key-missing"),
        pytest.param(
            {"attestations": ["no-attestations.yaml"]},
            "attestations file not found",
            id="attestations-missing",
        ),
    ],
)
def test_config_errors_write_nothing(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path, extra: dict[str, Any], message: str
) -> None:
    config = write_config(
        tmp_path, demo_inventory, history={"database_url": f"sqlite:///{tmp_path / 'db' / 'h.db'}"}, **extra
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "out").exists()  # no output directory
    assert not (tmp_path / "db").exists()  # and no history database


def test_bad_inventory_line_found_midway_leaves_nothing(tmp_path: Path, run_cli: RunCli) -> None:
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text('{"record": "resource", "provider": "aws"\n')
    config = write_config(tmp_path, inventory, outputs={"directory": "out/nested"})
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 2, result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_input_keeps_an_existing_output_directory(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path
) -> None:
    config = write_config(tmp_path, demo_inventory)
    assert run_cli("audit", "--config", config).exit_code == 1
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text('{"record": "resource"\n')
    result = run_cli("audit", "--config", write_config(tmp_path, inventory))
    assert result.exit_code == 2, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before
    listed = json.loads(run_cli("history", "--config", config, "list", "--format", "json").stdout)
    assert len(listed) == 1


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=60)
    return child.pid


def test_leftovers_of_a_killed_run_are_removed_on_the_next_run(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path
) -> None:
    from auditor.atomicfile import owner_tag

    out = tmp_path / "out"
    (out / "bundles").mkdir(parents=True)
    dead, live = owner_tag(dead_pid()), owner_tag(os.getppid())
    hour_ago = 2 * 3600
    stale = {
        f".report.html.{dead}.abcd1234.tmp": 0,  # its process is gone
        f".findings.json.{dead}.k2m9_x0q.tmp": 0,
        ".summary.md.abcd1234.tmp": hour_ago,  # no owner tag (older version): untouched for 2 hours
        f".run-0123456789ab.{dead}.partial/inventory.jsonl": 0,  # a bundle's staging directory
        f"bundles/.20260101T060000Z-1a2b3c4d.tar.gz.{dead}.abcd1234.tmp": 0,
        f".scans-{dead}.abcd1234/aws.jsonl": 0,
        ".findings.abcd1234.spool": hour_ago,
    }
    kept = {
        f".report.html.{live}.abcd1234.tmp": 0,  # a live process may still be writing it
        f".report.html.{dead.split('-')[0]}-another-host.abcd1234.tmp": 0,  # recent, pid not checkable
        ".summary.md.efgh5678.tmp": 0,  # no owner tag and recent
        f".findings.csv.{dead}.abcd1234.tmp": 0,  # csv is not one of this job's outputs
        ".report.html.notes": hour_ago,  # foreign files, whatever their age
        "notes.txt": hour_ago,
        f".run-0123456789ab.{dead}.keep/file": 0,
    }
    now = time.time()
    for name, age in {**stale, **kept}.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left over")
        os.utime(path, (now - age - 5, now - age - 5))
        if path.parent != out and path.parent != out / "bundles":
            os.utime(path.parent, (now - age - 5, now - age - 5))

    result = run_cli("audit", "--config", write_config(tmp_path, demo_inventory))
    assert result.exit_code == 1, result.stderr
    for name in stale:
        top = out / name.split("/")[0] if not name.startswith("bundles/") else out / name
        assert not top.exists(), name
    for name in kept:
        assert (out / name).exists(), name
    assert "temporary file(s) left by killed runs" in result.stderr
    # This run's own temporaries are gone too: only its outputs and what it must keep remain.
    assert not list(out.glob(f".*{owner_tag()}*"))


def test_atomic_output_names_its_owner_and_never_removes_fresh_files(tmp_path: Path) -> None:
    from auditor.atomicfile import atomic_output, owner_tag, remove_stale_temps

    target = tmp_path / "report.html"
    started = time.time()
    with atomic_output(target) as handle:
        handle.write(b"x")
        (temp,) = tmp_path.glob(".report.html.*.tmp")
        assert f".report.html.{owner_tag()}." in temp.name
        # A temporary touched after the cleaning run started is never stale, even of a dead pid.
        fresh = tmp_path / f".report.html.{owner_tag(dead_pid())}.abcd1234.tmp"
        fresh.write_text("new")
        assert remove_stale_temps(target, started=started) == []
    assert target.read_bytes() == b"x" and fresh.exists() and not temp.exists()


def test_audit_applies_attestations_and_bundles_the_file(tmp_path: Path, run_cli: RunCli) -> None:
    plan = Path(__file__).resolve().parents[2] / "fixtures" / "iac" / "terraform" / "gcp" / "plan.json"
    inventory = tmp_path / "tf.jsonl"
    scanned = run_cli("scan", "terraform", plan, "-o", inventory)
    assert scanned.exit_code == 0, scanned.stderr
    attestations = tmp_path / "attestations.yaml"
    attestations.write_text(
        "attestations:\n"
        "  - attribute: transport.min_tls_version\n"
        '    value: "1.2"\n'
        "    scope: {source: gcp, resources: [acme-eu-*]}\n"
        "    attested_by: secops@acme.example\n"
        "    attested_on: 2026-10-01\n"
        "    reference: TICKET-812\n"
        "    expires: 2099-12-31\n"
    )
    config = write_config(
        tmp_path,
        inventory,
        attestations=[str(attestations)],
        outputs={"directory": "out", "bundle": "directory"},
    )
    result = run_cli("audit", "--config", config, "--policy", "transport.tls-minimum")
    assert result.exit_code == 3, result.stderr  # the buckets nobody attested stay unknown
    document = findings(tmp_path / "out" / "findings.json")
    statuses = {f["resource"]["name"]: f["status"] for f in document["findings"]}
    assert statuses["acme-eu-analytics"] == "pass"
    assert statuses["acme-eur5"] == "error"
    bundled = list((tmp_path / "out").rglob("attestations/1-attestations.yaml"))
    assert len(bundled) == 1 and bundled[0].read_text() == attestations.read_text()

    attestations.write_text(attestations.read_text().replace('value: "1.2"', "value: 1.2"))
    bad = run_cli("audit", "--config", config)
    assert bad.exit_code == 2
    assert f"{attestations}:3" in bad.stderr and "does not fit" in bad.stderr


def test_the_job_reads_back_its_own_findings_however_large(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The size limit guards reading someone else's findings file; the job streams its own document
    # to its reports whatever its size (a million resources in the inline form is about 6 GB).
    monkeypatch.setattr(findings_stream, "MAX_FINDINGS_BYTES", 10_000)
    result = run_cli("audit", "--config", write_config(tmp_path, demo_inventory))
    assert result.exit_code == 1, result.stderr
    findings_file = tmp_path / "out" / "findings.json"
    assert findings_file.stat().st_size > 10_000
    assert "acme-customer-data-eu" in (tmp_path / "out" / "report.html").read_text()
    report = run_cli("report", "--findings", findings_file, "--format", "html", "-o", tmp_path / "r.html")
    assert report.exit_code == 2 and "larger than 4 GiB" in report.stderr
