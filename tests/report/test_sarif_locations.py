"""Findings declared in a file (infrastructure as code) point into the repository in every report:
SARIF results locate the file and line (so code scanning annotates the pull request diff), the HTML,
Markdown and CSV show file:line; findings of a live scan keep the inventory location unchanged."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.check import CheckOptions, run_check
from auditor.document import FindingsDocument, load_document
from auditor.inventory import write_inventory
from auditor.model import (
    Encryption,
    Evidence,
    Location,
    SourceLocation,
    StorageResource,
    Transport,
)
from auditor.report.base import ReportInput, render_to_file
from auditor.report.sarif import source_artifact

from .test_formats import sarif_validator

AT = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
MAIN_TF = "infra/storage/main.tf"
REPLICATION_TF = "infra/storage/replication.tf"


def evidence(attributes: list[str], file: str | None = None, line: int | None = None) -> Evidence:
    """A declaration in `file` at `line` (or, without a file, a live API call)."""
    if file is None:
        return Evidence(call="storage.buckets.get", at=AT, attributes=attributes, response={"ok": True})
    return Evidence(
        call="terraform:plan",
        at=AT,
        attributes=attributes,
        location=SourceLocation(file=file, line=line, address="google_storage_bucket.b"),
    )


def bucket(name: str, regions: list[str], min_tls: str, items: list[Evidence]) -> StorageResource:
    return StorageResource(
        provider="gcp",
        kind="bucket",
        account="acme-data",
        name=name,
        id=f"gs://{name}",
        origin="terraform" if any(e.location for e in items) else None,
        location=Location(raw=regions[0], type="region", primary=regions[0], regions=regions, replicas=[]),
        encryption=Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="google-managed",
            key_management="provider-managed",
            key_id=None,
            key_location=None,
        ),
        transport=Transport(
            plaintext_refused=True,
            plaintext_refused_by="test",
            min_tls_version=min_tls,
            min_tls_enforced_by="test",
        ),
        tags={"ai-training": "opt-out"},
        evidence=items,
    )


DECLARED = bucket(
    "declared-logs",
    ["us-east1"],
    "1.0",
    [
        evidence(["location"], MAIN_TF, 12),
        evidence(["location.regions"], REPLICATION_TF, 5),
        evidence(["encryption"], MAIN_TF, 20),
        evidence(["transport"], MAIN_TF, 31),
    ],
)
LIVE = bucket("live-logs", ["us-east1"], "1.2", [evidence(["location"]), evidence(["transport"])])
UNLINED = bucket("declared-no-line", ["us-east1"], "1.2", [evidence(["location"], "modules/b/main.tf")])


def findings(tmp_path: Path, *records: StorageResource) -> tuple[FindingsDocument, Path]:
    inventory = tmp_path / "inventory.jsonl"
    write_inventory(inventory, records)
    result = run_check(CheckOptions(inventory=inventory, params={"zone": "eu"}))
    path = tmp_path / "findings.json"
    try:
        with path.open("wb") as handle:
            result.spool.write_document(handle, result.run)
    finally:
        result.spool.close()
    return load_document(path), inventory


def render(name: str, document: FindingsDocument, inventory: Path, tmp_path: Path) -> bytes:
    out = tmp_path / f"report.{name}"
    render_to_file(name, ReportInput(document=document, inventory_path=inventory), out)
    return out.read_bytes()


def results_of(log: dict[str, Any], name: str, policy: str) -> dict[str, Any]:
    return next(
        r
        for r in log["runs"][0]["results"]
        if r["ruleId"] == policy and r["locations"][0]["logicalLocations"][0]["name"] == name
    )


def test_the_location_reaches_the_findings_document(tmp_path: Path) -> None:
    document, _ = findings(tmp_path, DECLARED)
    residency = next(f for f in document.findings if f.policy_id == "residency.data-in-zone")
    assert residency.status.value == "fail"
    assert {json.dumps(e.get("location"), sort_keys=True) for e in residency.evidence} == {
        json.dumps({"file": MAIN_TF, "line": 12, "address": "google_storage_bucket.b"}, sort_keys=True),
        json.dumps({"file": REPLICATION_TF, "line": 5, "address": "google_storage_bucket.b"}, sort_keys=True),
    }


def test_sarif_points_at_the_declaring_file_and_line(tmp_path: Path) -> None:
    document, inventory = findings(tmp_path, DECLARED, LIVE, UNLINED)
    log = json.loads(render("sarif", document, inventory, tmp_path))
    assert [f"{e.json_path}: {e.message}" for e in sarif_validator().iter_errors(log)] == []

    residency = results_of(log, "declared-logs", "residency.data-in-zone")
    physical = residency["locations"][0]["physicalLocation"]
    assert physical == {
        "artifactLocation": {"uri": MAIN_TF, "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 12},
    }
    # the logical location stays the resource
    assert residency["locations"][0]["logicalLocations"] == [
        {"name": "declared-logs", "fullyQualifiedName": "gs://declared-logs", "kind": "resource"}
    ]
    # the replication declaration also decides where the data lives
    assert residency["relatedLocations"] == [
        {
            "id": 1,
            "physicalLocation": {
                "artifactLocation": {"uri": REPLICATION_TF, "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": 5},
            },
            "message": {"text": f"also declared at {REPLICATION_TF}:5 (google_storage_bucket.b)"},
        }
    ]
    assert residency["properties"]["declaredAt"][0] == f"{MAIN_TF}:12 (google_storage_bucket.b)"

    # each policy points at the declaration of the attribute it reads
    tls = results_of(log, "declared-logs", "transport.tls-minimum")
    assert tls["locations"][0]["physicalLocation"]["region"] == {"startLine": 31}
    assert "relatedLocations" not in tls

    # a file without a line: the file, no region
    unlined = results_of(log, "declared-no-line", "residency.data-in-zone")
    assert unlined["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "modules/b/main.tf", "uriBaseId": "%SRCROOT%"}
    }
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["description"]["text"]


def test_a_live_finding_keeps_the_inventory_location(tmp_path: Path) -> None:
    document, inventory = findings(tmp_path, DECLARED, LIVE)
    log = json.loads(render("sarif", document, inventory, tmp_path))
    live = results_of(log, "live-logs", "residency.data-in-zone")
    assert live["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": str(inventory.resolve().as_uri())},
                "region": {"startLine": 2},
            },
            "logicalLocations": [
                {"name": "live-logs", "fullyQualifiedName": "gs://live-logs", "kind": "resource"}
            ],
        }
    ]
    assert "relatedLocations" not in live and "declaredAt" not in live["properties"]

    # a log of live findings only is exactly as before: no source root either
    only_live, inventory = findings(tmp_path / "live", LIVE)
    log = json.loads(render("sarif", only_live, inventory, tmp_path))
    assert "originalUriBaseIds" not in log["runs"][0]


@pytest.mark.parametrize(
    ("file", "artifact"),
    [
        ("infra/main.tf", {"uri": "infra/main.tf", "uriBaseId": "%SRCROOT%"}),
        ("./infra/my dir/main.tf", {"uri": "infra/my%20dir/main.tf", "uriBaseId": "%SRCROOT%"}),
        ("infra\\win\\main.tf", {"uri": "infra/win/main.tf", "uriBaseId": "%SRCROOT%"}),
        ("a:b/x.tf", {"uri": "a%3Ab/x.tf", "uriBaseId": "%SRCROOT%"}),  # not a URI scheme
        ("templates/#1?.json", {"uri": "templates/%231%3F.json", "uriBaseId": "%SRCROOT%"}),
        ("/srv/repo/main.tf", {"uri": "file:///srv/repo/main.tf"}),
        ("C:\\repo\\main.tf", {"uri": "file:///C:/repo/main.tf"}),
    ],
)
def test_source_paths_become_uri_references(file: str, artifact: dict[str, str]) -> None:
    assert source_artifact(file) == artifact


def test_html_markdown_and_csv_show_file_and_line(tmp_path: Path) -> None:
    document, inventory = findings(tmp_path, DECLARED, LIVE)
    html = render("html", document, inventory, tmp_path).decode()
    assert f"declared at <code>{MAIN_TF}:12 (google_storage_bucket.b)</code>" in html

    markdown = render("markdown", document, inventory, tmp_path).decode()
    declared_rows = [
        line for line in markdown.splitlines() if "declared\\-logs" in line or "declared-logs" in line
    ]
    assert declared_rows and all(" at infra/storage/main.tf:" in line for line in declared_rows)
    live_rows = [line for line in markdown.splitlines() if "live" in line and "logs" in line]
    assert live_rows and all(" at " not in line.split("|")[3] for line in live_rows)

    rows = list(csv.DictReader(io.StringIO(render("csv", document, inventory, tmp_path).decode())))
    by_key = {(r["resource_name"], r["policy_id"]): r for r in rows}
    assert by_key[("declared-logs", "residency.data-in-zone")]["evidence_locations"] == (
        f"{MAIN_TF}:12 {REPLICATION_TF}:5"
    )
    assert by_key[("declared-logs", "transport.tls-minimum")]["evidence_locations"] == f"{MAIN_TF}:31"
    assert by_key[("live-logs", "residency.data-in-zone")]["evidence_locations"] == ""
