"""The findings' evidence form: `auditor check --evidence inline|reference` and `outputs.evidence` in
auditor.yaml; `run.inventory_digest` and `run.evidence` in both forms."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import Result

from auditor.audit.config import AuditConfig, Outputs, load_config
from auditor.errors import InputError
from auditor.findings_stream import FindingsStream, inventory_digest

REPO = Path(__file__).resolve().parents[1]
DEMO_INVENTORY = REPO / "fixtures" / "demo-estate.jsonl"
DEMO_WAIVERS = REPO / "fixtures" / "demo-waivers.yaml"

RunCli = Callable[..., Result]


def check_json(run_cli: RunCli, output: Path, *extra: str) -> dict[str, Any]:
    result = run_cli(
        "check",
        "--inventory",
        DEMO_INVENTORY,
        "--param",
        "zone=eu",
        "--waivers",
        DEMO_WAIVERS,
        "--today",
        "2026-11-24",
        "--format",
        "json",
        "-o",
        output,
        *extra,
    )
    assert result.exit_code == 1, result.output  # the demo estate has violations
    return dict(orjson.loads(output.read_bytes()))


def test_inline_is_the_default_and_records_the_inventory_digest(tmp_path: Path, run_cli: RunCli) -> None:
    document = check_json(run_cli, tmp_path / "f.json")
    run = document["run"]
    assert run["schema_version"] == "1.6" and run["evidence"] == "inline"
    assert run["inventory_digest"] == inventory_digest(DEMO_INVENTORY)
    assert all("controls" in f and "evidence" in f and "evidence_refs" not in f for f in document["findings"])
    assert (
        check_json(run_cli, tmp_path / "g.json", "--evidence", "inline")["findings"] == document["findings"]
    )


def test_reference_form_points_at_the_inventory_evidence(tmp_path: Path, run_cli: RunCli) -> None:
    inline_path, reference_path = tmp_path / "inline.json", tmp_path / "reference.json"
    inline = check_json(run_cli, inline_path)
    reference = check_json(run_cli, reference_path, "--evidence", "reference")
    run = reference["run"]
    assert run["schema_version"] == "2.0" and run["evidence"] == "reference"
    assert run["inventory_digest"] == inline["run"]["inventory_digest"]
    assert run["counts"] == inline["run"]["counts"] and run["gate"] == inline["run"]["gate"]
    assert len(reference["findings"]) == len(inline["findings"])
    assert all("controls" not in f and "evidence" not in f for f in reference["findings"])
    assert any(f["evidence_refs"] for f in reference["findings"])
    assert reference_path.stat().st_size < inline_path.stat().st_size
    # A reader given the inventory gets every finding's evidence and controls back, as inline holds them.
    resolved = list(FindingsStream.open(reference_path, DEMO_INVENTORY).findings())
    assert [(f.evidence, f.controls) for f in resolved] == [
        (f["evidence"], f["controls"]) for f in inline["findings"]
    ]
    # The refs index the resource's evidence list in the inventory record.
    records = {
        (r["provider"], r["account"], r["id"]): r
        for r in map(orjson.loads, DEMO_INVENTORY.read_bytes().splitlines())
        if r.get("record", "resource") == "resource"
    }
    for finding in reference["findings"]:
        res = finding["resource"]
        evidence = records[(res["provider"], res["account"], res["id"])]["evidence"]
        assert [evidence[i] for i in finding["evidence_refs"]] == next(
            f["evidence"]
            for f in inline["findings"]
            if f["policy_id"] == finding["policy_id"] and f["resource"] == res
        )


def test_reference_form_refuses_another_inventory(tmp_path: Path, run_cli: RunCli) -> None:
    output = tmp_path / "reference.json"
    check_json(run_cli, output, "--evidence", "reference")
    other = tmp_path / "other.jsonl"
    other.write_bytes(DEMO_INVENTORY.read_bytes() + b"\n")
    with pytest.raises(InputError, match="not the inventory these findings were made from"):
        FindingsStream.open(output, other)


def test_an_unknown_evidence_form_is_a_usage_error(tmp_path: Path, run_cli: RunCli) -> None:
    output = tmp_path / "f.json"
    result = run_cli(
        "check", "--inventory", DEMO_INVENTORY, "--format", "json", "-o", output, "--evidence", "copy"
    )
    assert result.exit_code == 2
    assert "'copy' is not one of 'inline', 'reference'" in result.output
    assert not output.exists()


def test_the_help_names_both_forms(run_cli: RunCli) -> None:
    text = run_cli("check", "--help").output
    assert "--evidence [inline|reference]" in text and "schema 2.0" in text


# --- auditor.yaml ----------------------------------------------------------------------------------


def test_outputs_evidence_defaults_to_inline_and_keeps_digests(tmp_path: Path) -> None:
    config = AuditConfig(
        name="stable", outputs=Outputs(directory=Path("/srv/auditor/reports")), params={"zone": "eu"}
    )
    assert config.outputs.evidence == "inline"
    # The digest auditor computed for this configuration before `outputs.evidence` was added.
    assert config.digest() == "f72ccd8bdf646e11f8d46fae31e15edbed0347ce2ccca8048c68bd632c674827"
    chosen = config.model_copy(
        update={"outputs": config.outputs.model_copy(update={"evidence": "reference"})}
    )
    assert chosen.digest() != config.digest()
    assert chosen.redacted()["outputs"]["evidence"] == "reference"


def test_outputs_evidence_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "auditor.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "outputs": {"evidence": "reference"}}))
    assert load_config(path, environ={}).outputs.evidence == "reference"
    path.write_text("name: x\noutputs:\n  evidence: copies\n")
    with pytest.raises(InputError, match=r"auditor\.yaml:3: outputs\.evidence"):
        load_config(path, environ={})


def test_audit_job_writes_the_configured_form(tmp_path: Path, run_cli: RunCli) -> None:
    inventory = tmp_path / "inventory.jsonl"
    inventory.write_bytes(DEMO_INVENTORY.read_bytes())
    config = tmp_path / "auditor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "reference-job",
                "inventories": [str(inventory)],
                "params": {"zone": "eu"},
                "outputs": {"directory": str(tmp_path / "out"), "formats": ["json"], "evidence": "reference"},
            }
        )
    )
    result = run_cli("audit", "--config", config)
    assert result.exit_code == 1, result.output
    document = json.loads((tmp_path / "out" / "findings.json").read_text())
    run = document["run"]
    assert run["schema_version"] == "2.0" and run["evidence"] == "reference"
    bundles = list((tmp_path / "out" / "bundles").iterdir())
    assert run["inventory_digest"] == inventory_digest(bundles[0] / "inventory.jsonl")
    assert all("evidence_refs" in f and "evidence" not in f for f in document["findings"])
