"""Findings declared in a file (infrastructure as code) point into the repository in every report:
SARIF results locate the file and line (so code scanning annotates the pull request diff), the HTML,
Markdown and CSV show file:line. Findings of a live scan point at the rule that decided them, never
at the inventory snapshot (a file outside the repository whose lines move every run), and every
result is identified by its resource (logical location) and a fingerprint of policy and resource."""

from __future__ import annotations

import csv
import hashlib
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
    Unknown,
    UnknownCode,
)
from auditor.policy.loader import shipped_policies_dir
from auditor.report.base import ReportInput, render_to_file
from auditor.report.sarif import source_artifact

from .conftest import REPO
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


def findings(
    tmp_path: Path, *records: StorageResource, policies: list[Path] | None = None
) -> tuple[FindingsDocument, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = tmp_path / "inventory.jsonl"
    write_inventory(inventory, records)
    # the shipped policies take the zone; a custom policy directory alone declares no parameter
    params = {} if policies else {"zone": "eu"}
    result = run_check(CheckOptions(inventory=inventory, policy_paths=policies or [], params=params))
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
        {"name": "declared-logs", "fullyQualifiedName": "gs://declared-logs", "kind": "bucket"}
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


def rule_line(document: FindingsDocument, policy: str) -> int:
    """The line of `policy` in its file, as the run recorded it (`path:line`)."""
    source = next(p.source for p in document.run.policies if p.id == policy)
    return int(source.rpartition(":")[2])


def fingerprint(policy: str, resource_id: str) -> str:
    return hashlib.sha256(f"{policy}\0{resource_id}".encode()).hexdigest()


def test_a_live_finding_points_at_its_rule_not_at_the_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the repository checkout: the shipped policies are its own files here
    document, inventory = findings(tmp_path, DECLARED, LIVE)
    log = json.loads(render("sarif", document, inventory, tmp_path))
    assert [f"{e.json_path}: {e.message}" for e in sarif_validator().iter_errors(log)] == []
    live = results_of(log, "live-logs", "residency.data-in-zone")
    assert live["locations"] == [
        {
            "physicalLocation": {
                "artifactLocation": {"uri": "policies/residency.yaml", "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": rule_line(document, "residency.data-in-zone")},
            },
            "logicalLocations": [
                {"name": "live-logs", "fullyQualifiedName": "gs://live-logs", "kind": "bucket"}
            ],
        }
    ]
    assert "relatedLocations" not in live and "declaredAt" not in live["properties"]
    assert "inventory.jsonl" not in json.dumps(log)

    # the identity code scanning tracks: policy + resource, one alert per resource of a rule
    assert live["partialFingerprints"] == {
        "auditorFinding/v1": fingerprint("residency.data-in-zone", "gs://live-logs"),
        "primaryLocationLineHash": fingerprint("residency.data-in-zone", "gs://live-logs")[:16] + ":1",
    }
    declared = results_of(log, "declared-logs", "residency.data-in-zone")
    assert (
        declared["partialFingerprints"]["primaryLocationLineHash"]
        != (live["partialFingerprints"]["primaryLocationLineHash"])
    )


def test_live_locations_and_fingerprints_are_the_same_in_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another run, with the inventory in another order and another place, gives each finding the
    same location and fingerprints: a dashboard sees the same alerts, not new ones."""
    monkeypatch.chdir(REPO)
    other = bucket("other-logs", ["europe-west1"], "1.0", [evidence(["location"]), evidence(["transport"])])
    first_doc, first_inventory = findings(tmp_path / "one", LIVE, other)
    second_doc, second_inventory = findings(tmp_path / "two", other, UNLINED, LIVE)

    def anchors(document: FindingsDocument, inventory: Path) -> dict[tuple[str, str], Any]:
        log = json.loads(render("sarif", document, inventory, inventory.parent))
        return {
            (r["ruleId"], r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]): (
                r["locations"],
                r["partialFingerprints"],
            )
            for r in log["runs"][0]["results"]
        }

    first, second = anchors(first_doc, first_inventory), anchors(second_doc, second_inventory)
    shared = first.keys() & second.keys()
    assert {resource for _, resource in shared} == {"gs://live-logs", "gs://other-logs"}
    assert all(first[key] == second[key] for key in shared)


def test_a_live_finding_of_a_shipped_policy_outside_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run elsewhere than the repository (auditor installed, its policies in site-packages), a live
    finding points at the shipped policy file relative to AUDITOR_POLICIES, not at a machine path."""
    document, inventory = findings(tmp_path, LIVE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    log = json.loads(render("sarif", document, inventory, tmp_path))
    assert [f"{e.json_path}: {e.message}" for e in sarif_validator().iter_errors(log)] == []
    live = results_of(log, "live-logs", "residency.data-in-zone")
    assert live["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "residency.yaml", "uriBaseId": "AUDITOR_POLICIES"},
        "region": {"startLine": rule_line(document, "residency.data-in-zone")},
    }
    bases = log["runs"][0]["originalUriBaseIds"]
    assert list(bases) == ["AUDITOR_POLICIES"]  # no repository source here
    assert bases["AUDITOR_POLICIES"]["uri"] == shipped_policies_dir().resolve().as_uri() + "/"


def test_a_live_finding_of_a_policy_elsewhere_points_at_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = tmp_path / "custom-policies"
    custom.mkdir()
    (custom / "tls.yaml").write_text(
        "policies:\n"
        "  - id: custom.tls\n"
        "    title: TLS 1.3 only\n"
        "    description: The store refuses TLS before 1.3.\n"
        "    severity: high\n"
        "    condition: {attribute: transport.min_tls_version, op: equals, value: '1.3'}\n"
    )
    document, inventory = findings(tmp_path, LIVE, policies=[custom])
    monkeypatch.chdir(REPO)  # the custom policy is outside this checkout
    log = json.loads(render("sarif", document, inventory, tmp_path))
    assert [f"{e.json_path}: {e.message}" for e in sarif_validator().iter_errors(log)] == []
    custom_result = results_of(log, "live-logs", "custom.tls")
    assert custom_result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": (custom / "tls.yaml").resolve().as_uri()},
        "region": {"startLine": rule_line(document, "custom.tls")},
    }


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
    # the rows of the failures table, one per finding (other sections group resources per fix)
    failure_rows = markdown.split("### Top failures", 1)[1].splitlines()
    declared_rows = [line for line in failure_rows if "declared\\-logs" in line or "declared-logs" in line]
    assert declared_rows and all(" at infra/storage/main.tf:" in line for line in declared_rows)
    live_rows = [line for line in failure_rows if "live" in line and "logs" in line]
    assert live_rows and all(" at " not in line.split("|")[3] for line in live_rows)

    rows = list(csv.DictReader(io.StringIO(render("csv", document, inventory, tmp_path).decode())))
    by_key = {(r["resource_name"], r["policy_id"]): r for r in rows}
    assert by_key[("declared-logs", "residency.data-in-zone")]["evidence_locations"] == (
        f"{MAIN_TF}:12 {REPLICATION_TF}:5"
    )
    assert by_key[("declared-logs", "transport.tls-minimum")]["evidence_locations"] == f"{MAIN_TF}:31"
    assert by_key[("live-logs", "residency.data-in-zone")]["evidence_locations"] == ""


def test_an_undecided_result_says_how_to_decide_it(tmp_path: Path) -> None:
    readable = bucket("denied-logs", ["europe-west1"], "1.2", [evidence(["location"])])
    unread = {"transport.min_tls_version": Unknown(code=UnknownCode.ACCESS_DENIED, reason="403 Forbidden")}
    denied = readable.model_copy(update={"unknown": unread})
    document, inventory = findings(tmp_path, denied)
    log = json.loads(render("sarif", document, inventory, tmp_path))
    assert [f"{e.json_path}: {e.message}" for e in sarif_validator().iter_errors(log)] == []
    undecided = results_of(log, "denied-logs", "transport.tls-minimum")
    assert (undecided["kind"], undecided["level"]) == ("open", "none")
    assert "To decide it: transport.min_tls_version (access denied): grant " in undecided["message"]["text"]
    [action] = undecided["properties"]["toDecide"]
    assert (action["attribute"], action["code"]) == ("transport.min_tls_version", "access_denied")
    assert action["permissions"] and all(p in undecided["message"]["text"] for p in action["permissions"])
