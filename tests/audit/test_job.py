"""`auditor audit` end to end: demo, drift between runs, baselines, secrets, scanner wiring, config errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import Result

from auditor.audit.config import REPORT_FILES, AuditConfig
from auditor.report import base as report_base

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
    assert "gate (fail-on info): exit 1" in audit.stderr


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
    # Every report of the second run got the first run (from the history) as `previous`.
    assert len(seen) == 3
    assert all(r.previous == first_doc for r in seen)
    assert "1 new failure(s), 1 fixed" in second.stderr

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
    """The demo resources that can be read completely (no unknowns) and no coverage gaps."""
    return [r for r in read_records(demo_inventory) if r.get("record") == "resource" and not r["unknown"]]


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
        ("name: x\noutputs:\n  formats: [pdf]\n", ":3", "outputs.formats"),
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


def fake_scanner_module(calls: list[tuple[str, list[str]]], estate: list[dict[str, Any]]) -> types.ModuleType:
    """Stand-ins for `auditor scan aws|gcp`: record their arguments, write that cloud's part of the estate."""
    module = types.ModuleType("auditor_test_fake_scanners")

    def make(cloud: str) -> click.Command:
        @click.command(cloud, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        @click.option("--output", required=True, type=click.Path(path_type=Path))
        @click.pass_context
        def command(ctx: click.Context, output: Path) -> None:
            calls.append((cloud, list(ctx.args)))
            if "--fail" in ctx.args:
                raise click.UsageError("no such option: --fail")
            write_records(output, [r for r in estate if r["provider"] == cloud])

        return command

    module.aws = make("aws")  # type: ignore[attr-defined]
    module.gcp = make("gcp")  # type: ignore[attr-defined]
    return module


def test_audit_scans_the_configured_clouds(
    tmp_path: Path, run_cli: RunCli, demo_inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from auditor import scan

    calls: list[tuple[str, list[str]]] = []
    monkeypatch.setitem(
        sys.modules, "auditor_test_fake_scanners", fake_scanner_module(calls, read_records(demo_inventory))
    )
    monkeypatch.setitem(scan.SCANNER_COMMANDS, "aws", "auditor_test_fake_scanners:aws")
    monkeypatch.setitem(scan.SCANNER_COMMANDS, "gcp", "auditor_test_fake_scanners:gcp")
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
    by_cloud = dict(calls)
    assert by_cloud["aws"][:2] == ["--policies", str(policies)]
    assert by_cloud["aws"][2:4] == ["--profile", "prod"] and "--role-arn" in by_cloud["aws"]
    assert by_cloud["aws"][by_cloud["aws"].index("--regions") + 1] == "eu-west-1"
    accounts_file = by_cloud["aws"][by_cloud["aws"].index("--accounts") + 1]
    assert not Path(accounts_file).exists()  # a temporary file, gone after the run
    gcp_args = by_cloud["gcp"]
    assert gcp_args[gcp_args.index("--project") + 1] == "acme-analytics-eu"
    assert gcp_args[gcp_args.index("--api-endpoint") + 1] == "http://127.0.0.1:9"
    assert gcp_args[gcp_args.index("--timeout") + 1] == "5"
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
