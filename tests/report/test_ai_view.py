"""AI services in every report: at rest and processing side by side, training with what decided it,
and attested values marked as such in every format."""

from __future__ import annotations

import csv
import io
import json
import re
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from auditor.cli import cli
from auditor.report.base import ReportInput, render_to_file
from auditor.report.view import ai_residency, build_view, place_text, training_words
from auditor.scan.aws_ai import AI_OPT_OUT_POLICIES, CHECKED_ON

from .conftest import DEMO_INVENTORY, typed

ATTESTED_SETTINGS = "openai:organization/org-AcmeDemo7Q2x/settings"
LAPSED_SETTINGS = "openai:organization/org-AcmeLabs3k9P/settings"


def render(name: str, document: dict[str, Any], tmp_path: Path, inventory: Path | None = None) -> str:
    out = tmp_path / f"report.{name}"
    render_to_file(name, ReportInput(document=typed(document), inventory_path=inventory), out)
    return out.read_text()


def rows_by_id(demo_doc: dict[str, Any], inventory: Path | None = None) -> dict[str, Any]:
    view = build_view(ReportInput(document=typed(demo_doc), inventory_path=inventory))
    return {row.resource_id: row for row in view.ai.rows}


def test_ai_view_lists_every_ai_resource_once_with_at_rest_and_processing(demo_doc: dict[str, Any]) -> None:
    ai_ids = {f["resource"]["id"] for f in demo_doc["findings"] if f["resource"]["kind"].startswith("ai-")}
    rows = rows_by_id(demo_doc)
    assert set(rows) == ai_ids
    project = next(r for r in rows.values() if r.name == "eu-support-assistant")
    # OpenAI's EU geography: Switzerland is outside zone eu, the other 30 countries folded as inside
    assert [m.region for m in project.at_rest.listed] == ["ch"] and project.at_rest.inside_folded == 30
    assert project.processing.state == "out" and project.training is None
    assert place_text(project.processing, "eu") == "ch (outside eu), 30 more regions inside eu"
    deployment = next(r for r in rows.values() if r.name == "gpt-4o-global")
    assert not deployment.at_rest.applies and [m.label for m in deployment.processing.listed] == [
        "any region"
    ]
    assert deployment.processing.state == "out"  # any region: no zone contains it
    agent = next(r for r in rows.values() if r.name == "claims-agent")
    assert agent.processing.state == "unknown" and "bedrock:GetInferenceProfile" in (
        agent.processing.unknown or ""
    )
    assert agent.status == "error"
    # worst first: failures before errors before passes
    statuses = [r.status for r in rows.values()]
    order = {"fail": 0, "error": 1, "waived": 2, "pass": 3}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)


def test_training_says_observed_default_or_attested(demo_doc: dict[str, Any]) -> None:
    rows = rows_by_id(demo_doc)
    opted_out = rows["aws:organizations::111122223333:effective-policy/AISERVICES_OPT_OUT_POLICY"].training
    assert (opted_out.verdict, opted_out.basis, opted_out.decided_by) == (
        "may not train",
        "observed",
        "organization-policy",
    )
    no_policy = rows["aws:organizations::444455556666:effective-policy/AISERVICES_OPT_OUT_POLICY"].training
    assert (no_policy.verdict, no_policy.basis) == ("may train", "default")
    assert (no_policy.source, no_policy.as_of) == (AI_OPT_OUT_POLICIES, CHECKED_ON.isoformat())
    attested = rows[ATTESTED_SETTINGS]
    assert (attested.training.verdict, attested.training.basis) == ("may not train", "attested")
    assert attested.attestations and "dpo@acme.example" in attested.attestations[0]
    lapsed = rows[LAPSED_SETTINGS].training
    assert lapsed.verdict == "unknown" and lapsed.unknown and lapsed.unknown.startswith("expired:")
    assert training_words(lapsed).startswith("unknown (expired:")


def test_the_inventory_adds_resources_that_got_no_finding(demo_doc: dict[str, Any]) -> None:
    without = ai_residency(typed(demo_doc).findings, None)
    rows = rows_by_id(demo_doc, DEMO_INVENTORY)
    archived = next(r for r in rows.values() if r.name == "2025-hackathon")
    assert archived.status == "archived" and archived.resource_id not in {r.resource_id for r in without.rows}
    assert [m.label for m in archived.processing.listed] == ["any region"]


def test_html_shows_the_ai_table_with_any_region_and_training_marks(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    html = render("html", demo_doc, tmp_path, DEMO_INVENTORY)
    table = html[html.index('id="ai-residency"') :]
    table = table[: table.index("</table>")]
    text = unescape(re.sub(r"<[^>]+>", " ", table))
    assert "At rest" in text and "Processing" in text and "Training" in text
    assert "any region" in text and "*" not in text
    assert "all 14 regions inside the zone" in text  # the EU data zone deployment, folded
    assert '<span class="badge basis-observed">observed</span>' in table
    assert '<span class="badge basis-default">default</span>' in table
    assert 'class="badge att"' in table and "archived: no finding" in text
    # the findings tables mark the attested value and show who attested it
    policy = html[html.index('id="policy-training.provider-opt-out"') :]
    assert "attested by ml-lead@acme.example" in unescape(policy)


def test_markdown_lists_ai_services_and_marks_attested_training(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    text = render("markdown", demo_doc, tmp_path)
    section = text[text.index("### AI services") : text.index("### Top failures")]
    assert "| At rest | Processing | Training |" in section
    assert "any region (outside eu)" in section
    assert "ch (outside eu), 30 more regions inside eu" in section
    assert "unknown (expired: attestation ATT-OPENAI-LABS-SHARING" in section
    # a failure whose value was attested says so
    doc = json.loads(json.dumps(demo_doc))
    settings = next(f for f in doc["findings"] if f["resource"]["id"] == ATTESTED_SETTINGS)
    settings["status"] = settings["underlying_status"] = "fail"
    doc["findings"] = [settings]
    failures = render("markdown", doc, tmp_path)
    top = failures[failures.index("### Top failures") :]
    row = next(
        line for line in top.splitlines() if "org\\-AcmeDemo7Q2x" in line or "org-AcmeDemo7Q2x" in line
    )
    assert row.startswith("| critical | training.provider-opt-out |") and row.endswith("(attested) |")


def test_csv_sarif_and_junit_mark_attested_values(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(render("csv", demo_doc, tmp_path))))
    attested = next(r for r in rows if r["resource_id"] == ATTESTED_SETTINGS)
    assert "training.provider_may_train" in attested["attested"].split()
    assert attested["training"] == "may not train (attested)"
    global_deployment = next(r for r in rows if r["resource_name"] == "gpt-4o-global")
    assert global_deployment["processing_regions"] == "*" and global_deployment["attested"] == ""
    bucket = next(r for r in rows if r["provider"] == "aws" and r["kind"] == "bucket")
    assert bucket["processing_regions"] == bucket["training"] == bucket["attested"] == ""

    # SARIF lists non-passing results: the lapsed attestation is one, the attested pass is not
    doc = json.loads(json.dumps(demo_doc))
    for finding in doc["findings"]:
        if finding["resource"]["id"] == ATTESTED_SETTINGS:
            finding["status"] = finding["underlying_status"] = "fail"
    sarif = json.loads(render("sarif", doc, tmp_path))
    results = {
        r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]: r for r in sarif["runs"][0]["results"]
    }
    assert "training.provider_may_train" in results[ATTESTED_SETTINGS]["properties"]["attested"]
    assert results[ATTESTED_SETTINGS]["properties"]["training"]["decided_by"] == "attestation"
    assert "attested" not in results[LAPSED_SETTINGS]["properties"]
    deployment = next(
        r for r in results.values() if r["locations"][0]["logicalLocations"][0]["name"] == "gpt-4o-global"
    )
    assert deployment["properties"]["processingRegions"] == ["*"]

    junit = ET.fromstring(render("junit", doc, tmp_path).encode())
    case = next(c for c in junit.iter("testcase") if c.get("name") == ATTESTED_SETTINGS)
    details = case.find("failure")
    assert details is not None and details.text is not None
    assert "training.provider_may_train = false (attested, not observed)" in details.text
    assert "training: may not train (attested)" in details.text
    assert "attested by dpo@acme.example" in details.text


def test_terminal_table_marks_a_failure_on_an_attested_value(tmp_path: Path) -> None:
    lines = []
    for line in DEMO_INVENTORY.read_text().splitlines():
        record = json.loads(line)
        if record.get("id") == ATTESTED_SETTINGS:  # attested: the provider may train (data sharing on)
            record["training"]["provider_may_train"] = True
            lines.append(json.dumps(record))
    inventory = tmp_path / "attested.jsonl"
    inventory.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["check", "--inventory", str(inventory), "--today", "2026-11-24"])
    assert result.exit_code == 1, result.output
    row = " ".join(line for line in result.output.splitlines() if "training" in line or "attested" in line)
    assert "expected false (attested)" in " ".join(row.replace("│", " ").split())
