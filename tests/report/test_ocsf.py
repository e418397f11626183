"""OCSF output: every event of the demo estate validates against the OCSF schema of the version the
events declare, one event per finding with the counts of the findings, error and waived findings
keep their status, evidence and controls are carried, and nothing secret-looking leaves.

The schema is the OCSF 1.5.0 Compliance Finding class (2003) with the `cloud` profile, as JSON Schema
draft 2020-12 with every object embedded: generated with the PyPI package ocsf-json-schema 1.2.0
(`OcsfJsonSchemaEmbedded(get_ocsf_schema("1.5.0")).get_class_schema("compliance_finding",
profiles=["cloud"])`) from the OCSF schema server's export of 1.5.0 that the package ships
(ocsf_json_schema/ocsf/1.5.0.json, sha256 e1630511...e441f), written with sorted keys.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
from click.testing import CliRunner
from py_ocsf_models import OCSF_VERSION

from auditor.cli import cli
from auditor.document import load_document
from auditor.report.base import FORMATS, ReportInput, render_to_file
from auditor.report.ocsf import MAX_EVIDENCE, MAX_EVIDENCE_BYTES, REDACTED, OcsfRenderer
from auditor.report.view import report_frameworks

from .conftest import hostile_record, run_check, typed
from .test_formats import by_status, find

SCHEMA = Path(__file__).with_name("ocsf-1.5.0-compliance_finding-cloud.schema.json")
# what must never reach an output raw: C0 (not tab/newline), DEL, C1, bidi marks
LIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# values shaped like credentials: AWS key ids, PEM private keys, SAS signatures, bearer tokens
SECRET_LOOKING = re.compile(
    r"(?:AKIA|ASIA)[A-Z0-9]{16}|PRIVATE KEY-----|[?&]sig=[^&\s\"]+|Bearer\s+\S{8,}|AccountKey="
)


def ocsf_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    assert (
        schema["$id"]
        == f"https://schema.ocsf.io/schema/{OCSF_VERSION}/classes/compliance_finding?profiles=cloud"
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def events_of(document: dict[str, Any], tmp_path: Path, *frameworks: str) -> list[dict[str, Any]]:
    out = tmp_path / "findings.ocsf.jsonl"
    render_to_file("ocsf", ReportInput(document=typed(document), frameworks=list(frameworks)), out)
    lines = out.read_bytes().splitlines()
    assert all(line.strip() for line in lines)  # JSON Lines: one event a line, no blank lines
    return [json.loads(line) for line in lines]


def fingerprint(finding: dict[str, Any]) -> str:
    return hashlib.sha256(f"{finding['policy_id']}\0{finding['resource']['id']}".encode()).hexdigest()


def event_of(events: list[dict[str, Any]], finding: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in events if e["finding_info"]["uid"] == fingerprint(finding))


def test_every_event_validates_against_the_schema_of_its_version(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    events = events_of(demo_doc, tmp_path)
    validator = ocsf_validator()
    errors = [
        f"event {i}: {e.json_path}: {e.message}"
        for i, ev in enumerate(events)
        for e in validator.iter_errors(ev)
    ]
    assert errors == []
    assert {(e["metadata"]["version"], e["class_uid"], e["category_uid"], e["type_uid"]) for e in events} == {
        (OCSF_VERSION, 2003, 2, 200301)
    }
    assert all(e["metadata"]["profiles"] == ["cloud"] for e in events)
    run = demo_doc["run"]
    assert {json.dumps(e["metadata"]["product"], sort_keys=True) for e in events} == {
        json.dumps(
            {"name": "auditor", "vendor_name": "auditor", "version": run["tool"]["version"]}, sort_keys=True
        )
    }
    assert {e["metadata"]["correlation_uid"] for e in events} == {run["id"]}


def test_the_schema_check_is_not_vacuous(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    event = events_of(demo_doc, tmp_path)[0]
    validator = ocsf_validator()
    broken = {
        "class_uid": lambda e: e.update(class_uid=2004),
        "cloud": lambda e: e.pop("cloud"),
        "status_id": lambda e: e["compliance"].update(status_id=7),
        "extra": lambda e: e["resources"][0].update(owner_team="x"),
        "resource": lambda e: e["resources"][0].pop("uid") and e["resources"][0].pop("name"),
    }
    for name, breaks in broken.items():
        changed = copy.deepcopy(event)
        breaks(changed)
        assert list(validator.iter_errors(changed)), name


def test_one_event_per_finding_with_the_counts_of_the_findings(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    events = events_of(demo_doc, tmp_path)
    assert len(events) == len(demo_doc["findings"]) == demo_doc["run"]["counts"]["findings"]
    assert Counter(e["status_code"] for e in events) == Counter(demo_doc["run"]["counts"]["by_status"])
    assert len({e["finding_info"]["uid"] for e in events}) == len(events)
    assert len({e["metadata"]["uid"] for e in events}) == len(events)
    # the compliance status is what the policy found: a waived finding's underlying status
    compliance = {"pass": (1, "Pass"), "fail": (3, "Fail"), "error": (2, "Warning")}
    for finding, event in zip(demo_doc["findings"], events, strict=True):
        assert event["finding_info"]["uid"] == fingerprint(finding)
        assert event["status_code"] == event["compliance"]["status_code"] == finding["status"]
        assert (event["compliance"]["status_id"], event["compliance"]["status"]) == compliance[
            finding["underlying_status"]
        ]
        assert event["unmapped"]["underlying_status"] == finding["underlying_status"]
    by_policy = Counter((e["compliance"]["control"], e["status_code"]) for e in events)
    for policy in demo_doc["run"]["policies"]:
        assert {s: n for s, n in policy["counts"].items() if n} == {
            s: by_policy[(policy["id"], s)] for s in policy["counts"] if by_policy[(policy["id"], s)]
        }


def test_error_and_waived_findings_keep_their_status(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    events = events_of(demo_doc, tmp_path)
    undecided = by_status(demo_doc, "error")
    waived = by_status(demo_doc, "waived")
    assert undecided and waived
    for finding in undecided:
        event = event_of(events, finding)
        assert (event["status_code"], event["status_id"], event["status"]) == ("error", 1, "New")
        assert event["compliance"]["status_id"] == 2  # Warning: no result, information missing
        assert all(reason in event["status_detail"] for reason in finding["reasons"])
        assert event["unmapped"]["reasons"] == finding["reasons"]
        # what to do so it can be decided comes first, then the policy's own fix
        assert event["remediation"]["desc"].startswith("To decide it: ")
    denied = find(demo_doc, "error", name="acme-audit-trail")
    assert "grant s3:GetEncryptionConfiguration" in event_of(events, denied)["remediation"]["desc"]
    for finding in waived:
        event = event_of(events, finding)
        waiver = finding["waiver"]
        assert (event["status_code"], event["status_id"], event["status"]) == ("waived", 3, "Suppressed")
        assert event["compliance"]["status_code"] == "waived"
        assert waiver["id"] in event["status_detail"] and waiver["justification"] in event["status_detail"]
        assert event["unmapped"]["waiver"]["id"] == waiver["id"]
    assert {event_of(events, f)["compliance"]["status"] for f in waived} == {
        {"fail": "Fail", "error": "Warning", "pass": "Pass"}[f["underlying_status"]] for f in waived
    }
    passed = event_of(events, by_status(demo_doc, "pass")[0])
    assert (passed["status_code"], passed["compliance"]["status_id"]) == ("pass", 1)


def test_evidence_controls_resource_and_remediation_are_carried(
    demo_doc: dict[str, Any], tmp_path: Path
) -> None:
    events = events_of(demo_doc, tmp_path)
    labels = {f.name: f.label for f in report_frameworks(ReportInput(document=typed(demo_doc)))}
    assert labels  # the shipped frameworks
    for finding, event in zip(demo_doc["findings"], events, strict=True):
        expected = [f"{labels[name]} {c}" for name in labels for c in finding["controls"].get(name, [])]
        assert event["compliance"].get("requirements", []) == expected
        assert set(event["compliance"].get("standards", [])) == {r.rsplit(" ", 1)[0] for r in expected}
        # the evidence items, in full here (the demo's answers are small)
        assert sorted(e["name"] for e in event.get("evidences", [])) == sorted(
            e["call"] for e in finding["evidence"]
        )

    failed = find(demo_doc, "fail", name="acme-dr-copy")
    event = event_of(events, failed)
    resource = failed["resource"]
    assert event["resources"] == [
        {
            "uid": resource["id"],
            "name": resource["name"],
            "type": resource["kind"],
            "region": resource["regions"][0],
            # the rest of the resource as the findings JSON has it: provider, account, every region
            # (and where the resource has them, its owner and AI fields)
            "data": {k: v for k, v in resource.items() if k not in ("id", "name", "kind")},
        }
    ]
    assert {"provider", "account", "regions"} <= set(event["resources"][0]["data"])
    assert event["cloud"]["account"]["uid"] == resource["account"]
    assert event["cloud"]["provider"] == "AWS" and event["cloud"]["region"] == resource["regions"][0]
    replication = next(e for e in event["evidences"] if e["name"] == "s3:GetBucketReplication")
    item = next(e for e in failed["evidence"] if e["call"] == "s3:GetBucketReplication")
    assert replication["api"] == {"operation": "s3:GetBucketReplication"}
    assert replication["data"]["response"] == item["response"]
    assert replication["data"]["at"] == item["at"] and replication["data"]["attributes"] == item["attributes"]
    assert event["unmapped"]["observed"] == failed["observed"]
    assert event["start_time"] <= event["end_time"] <= event["time"]

    policy = next(p for p in demo_doc["run"]["policies"] if p["id"] == failed["policy_id"])
    assert (
        event["compliance"]["control"] == policy["id"] and event["finding_info"]["title"] == policy["title"]
    )
    assert event["remediation"]["desc"] == policy["remediation"]["aws"]  # the resource's own cloud
    assert event["remediation"]["references"] == policy["references"]
    assert event["compliance"]["control_parameters"] == [{"name": "zone", "value": "eu"}]
    assert (event["severity_id"], event["severity"]) == (5, "Critical")

    # --framework limits the controls to the frameworks asked for
    gdpr_only = event_of(events_of(demo_doc, tmp_path, "gdpr"), failed)
    assert gdpr_only["compliance"]["standards"] == ["GDPR"]
    assert gdpr_only["compliance"]["requirements"] == [f"GDPR {c}" for c in failed["controls"]["gdpr"]]


def test_evidence_is_bounded_and_secrets_never_leave(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    planted = {
        "aws_key_id": "AKIAIOSFODNN7EXAMPLE",
        "secret_value": "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY",
        "sas": "https://acct.blob.core.windows.net/c?sv=2022-11-02&sig=Zm9vYmFyYmF6cXV4%3D",
        "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAexample\n-----END RSA PRIVATE KEY-----",
        "account_key": "c2VjcmV0LWFjY291bnQta2V5LXZhbHVlLTEyMzQ1Ng==",
    }
    failed = find(demo_doc, "fail", name="acme-dr-copy")
    extra = [
        {
            "call": f"s3:Extra{i}",
            "at": "2026-11-24T06:00:01Z",
            "attributes": ["tags"],
            "request": {"Bucket": "acme-dr-copy"},
            "response": {"Blob": "x" * (2 * MAX_EVIDENCE_BYTES), "Note": planted["aws_key_id"]},
            "error": None,
        }
        for i in range(MAX_EVIDENCE + 3)
    ]
    failed["evidence"][0]["response"] = {
        "LocationConstraint": "eu-central-1",
        "Settings": {"Region": "eu-central-1", "SecretAccessKey": planted["secret_value"]},
        "PrimaryAccountKey": planted["account_key"],
        "Endpoint": planted["sas"],
        "Certificate": planted["pem"],
    }
    failed["evidence"].extend(extra)
    out = tmp_path / "findings.ocsf.jsonl"
    render_to_file("ocsf", ReportInput(document=typed(demo_doc)), out)
    text = out.read_text()
    for name, value in planted.items():
        assert value not in text and json.dumps(value)[1:-1] not in text, name
    assert SECRET_LOOKING.findall(text) == []

    event = event_of([json.loads(line) for line in text.splitlines()], failed)
    assert [f"{e.json_path}: {e.message}" for e in ocsf_validator().iter_errors(event)] == []
    # the deciding evidence first, then the rest up to the bound; what was left out is counted
    assert [e["name"] for e in event["evidences"][:2]] == ["s3:GetBucketLocation", "s3:GetBucketReplication"]
    assert len(event["evidences"]) == MAX_EVIDENCE
    assert event["unmapped"]["evidence_omitted"] == len(failed["evidence"]) - MAX_EVIDENCE
    location = event["evidences"][0]["data"]["response"]
    assert location["LocationConstraint"] == "eu-central-1"  # what decided is still there
    assert (
        location["Settings"] == {"Region": "eu-central-1", "SecretAccessKey": REDACTED}
        and location["PrimaryAccountKey"] == REDACTED
    )
    assert location["Endpoint"] == location["Certificate"] == REDACTED
    cut = event["evidences"][2]["data"]["response"]
    assert cut["truncated"] is True and cut["bytes"] > MAX_EVIDENCE_BYTES >= len(cut["excerpt"])


def test_the_demo_estate_has_no_secret_looking_value(demo_doc: dict[str, Any], tmp_path: Path) -> None:
    events = events_of(demo_doc, tmp_path)
    assert SECRET_LOOKING.findall(json.dumps(events)) == []
    assert REDACTED not in json.dumps(events)  # nothing in the demo's answers looked secret


def test_events_are_written_one_at_a_time(demo_doc: dict[str, Any]) -> None:
    """Each event is written when it is made: no list of events, however many findings."""
    writes: list[int] = []

    class Recorder(io.BytesIO):
        def write(self, data: Any) -> int:
            writes.append(len(data))
            return super().write(data)

    out = Recorder()
    OcsfRenderer().render(ReportInput(document=typed(demo_doc)), out)
    assert len(writes) == 2 * len(demo_doc["findings"])  # each event, then its newline
    assert max(writes) < 64 * 1024


def test_hostile_text_is_visible_not_live(tmp_path: Path) -> None:
    record = hostile_record()
    record["name"] = "invoice\u202efdp.exe"
    record["id"] = "arn:aws:s3:::invoice\u202efdp.exe"
    inventory = tmp_path / "inventory.jsonl"
    inventory.write_text(json.dumps(record) + "\n")
    findings = tmp_path / "findings.json"
    run_check(inventory, findings)
    out = tmp_path / "findings.ocsf.jsonl"
    render_to_file("ocsf", ReportInput(document=load_document(findings)), out)
    text = out.read_text()
    assert (
        LIVE.findall(text) == []
        and LIVE.findall(json.dumps([json.loads(line) for line in text.splitlines()])) == []
    )
    assert "invoice<U+202E>fdp.exe" in text


def test_report_and_audit_demo_write_ocsf(tmp_path: Path, demo_findings_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        cli, ["report", "--findings", str(demo_findings_path), "--format", "ocsf", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(out.read_bytes().splitlines()) == len(load_document(demo_findings_path).findings)

    demo = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["audit", "--demo", "--output-dir", str(demo)])
    assert result.exit_code in (1, 3), result.output  # the demo estate has failures
    written = demo / FORMATS["ocsf"].file_name
    assert written.name == "findings.ocsf.jsonl"
    events = [json.loads(line) for line in written.read_bytes().splitlines()]
    document = load_document(demo / "findings.json")
    assert len(events) == len(document.findings)
    validator = ocsf_validator()
    assert [e.message for event in events for e in validator.iter_errors(event)] == []
