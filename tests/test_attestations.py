"""Attestations: loaded with file:line errors, fill only what was not observed, expire into `error`."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from auditor.attestations import attest, expire_attestations, load_attestations
from auditor.errors import InputError
from auditor.model import StorageResource, Training, Unknown, UnknownCode

REPO = Path(__file__).resolve().parents[1]
GCP_PLAN = REPO / "fixtures" / "iac" / "terraform" / "gcp" / "plan.json"
AT = datetime(2026, 11, 1, tzinfo=UTC)

TLS_ENTRY = """\
attestations:
  - id: ATT-TLS
    attribute: transport.min_tls_version
    value: "1.2"
    scope: {source: gcp, accounts: [acme-*], resources: [acme-eu-*]}
    attested_by: secops@acme.example
    attested_on: 2026-10-01
    reference: "gcloud org-policies describe gcp.restrictTLSVersion, TICKET-812"
    expires: 2027-03-31
"""

TRAINING_ENTRY = """\
attestations:
  - id: ATT-SHARING
    attribute: training.provider_may_train
    value: false
    scope: {source: aws, kinds: [ai-settings]}
    attested_by: dpo@acme.example
    attested_on: 2026-10-01
    reference: DPA-2026-014 s.4
    expires: 2026-12-31
"""


def _file(tmp_path: Path, text: str, name: str = "attestations.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _settings(**fields: Any) -> StorageResource:
    base: dict[str, Any] = {
        "provider": "aws",
        "kind": "ai-settings",
        "account": "111122223333",
        "name": "111122223333",
        "id": "arn:aws:organizations::111122223333:ai-settings",
    }
    return StorageResource.model_validate(base | fields)


@pytest.mark.parametrize(
    ("entry", "line", "message"),
    [
        ("    attribute: training.nonsense\n", 3, "is not an attribute an attestation can set"),
        ("    attribute: location\n", 3, "is not an attribute an attestation can set"),
        (
            "    attribute: transport.min_tls_version\n    value: 1.2\n",
            4,
            "does not fit transport.min_tls_version",
        ),
        ("    attribute: training.provider_may_train\n    value: null\n", 4, "null is not one"),
    ],
)
def test_a_bad_entry_is_an_input_error_at_its_line(
    tmp_path: Path, entry: str, line: int, message: str
) -> None:
    text = "attestations:\n  - id: X\n" + entry
    if "value:" not in entry:
        text += "    value: false\n"
    text += (
        "    scope: {source: aws}\n    attested_by: a@b\n    attested_on: 2026-01-01\n"
        "    reference: R\n    expires: 2026-12-31\n"
    )
    path = _file(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_attestations([path])
    assert str(caught.value).startswith(f"{path}:{line}:")
    assert message in str(caught.value)


def test_scope_errors_name_the_problem(tmp_path: Path) -> None:
    unknown_source = _file(tmp_path, TRAINING_ENTRY.replace("source: aws", "source: nowhere"), "a.yaml")
    with pytest.raises(InputError, match="unknown source 'nowhere'"):
        load_attestations([unknown_source])
    wrong_kind = _file(tmp_path, TRAINING_ENTRY.replace("kinds: [ai-settings]", "kinds: [bucket]"), "b.yaml")
    with pytest.raises(InputError, match="bucket do not carry 'training'"):
        load_attestations([wrong_kind])
    backwards = _file(
        tmp_path, TRAINING_ENTRY.replace("expires: 2026-12-31", "expires: 2026-01-01"), "c.yaml"
    )
    with pytest.raises(InputError, match="is before attested_on"):
        load_attestations([backwards])


def test_an_attestation_fills_an_unknown_value_and_keeps_its_evidence(tmp_path: Path) -> None:
    path = _file(tmp_path, TRAINING_ENTRY)
    record = _settings(
        training=Training(provider_may_train=None, decided_by=None, setting=None),
        unknown={"training.provider_may_train": Unknown(code=UnknownCode.NOT_SUPPORTED, reason="no API")},
    )
    assert attest(record, load_attestations([path]), AT) == 1
    assert record.training is not None
    assert record.training.provider_may_train is False
    assert record.training.decided_by == "attestation"
    assert record.training.setting == "DPA-2026-014 s.4"
    assert record.unknown == {}
    (evidence,) = record.evidence
    assert evidence.call == "attestation"
    assert evidence.attestation is not None and evidence.attestation.id == "ATT-SHARING"
    assert evidence.location is not None and evidence.location.file == str(path)
    assert evidence.location.line == 2
    assert record.evidence_json()[0]["attestation"]["expires"] == "2026-12-31"


def test_an_observed_value_is_never_overridden(tmp_path: Path) -> None:
    record = _settings(
        training=Training(provider_may_train=True, decided_by="organization-policy", setting="optIn")
    )
    assert attest(record, load_attestations([_file(tmp_path, TRAINING_ENTRY)]), AT) == 0
    assert record.training is not None and record.training.provider_may_train is True
    assert record.evidence == []


def test_a_group_not_collected_is_created_with_the_other_leaves_unknown(tmp_path: Path) -> None:
    denied = Unknown(code=UnknownCode.ACCESS_DENIED, reason="AccessDenied")
    record = _settings(unknown={"training": denied})
    attest(record, load_attestations([_file(tmp_path, TRAINING_ENTRY)]), AT)
    assert record.training is not None and record.training.provider_may_train is False
    assert "training" not in record.unknown
    assert "training.provider_may_train" not in record.unknown
    assert record.unknown_reason("training.provider_may_train") is None


def test_scope_globs_and_kinds_select_records(tmp_path: Path) -> None:
    attestations = load_attestations([_file(tmp_path, TRAINING_ENTRY)])
    other_provider = _settings(provider="gcp")
    assert attest(other_provider, attestations, AT) == 0
    other_kind = _settings(kind="ai-endpoint")
    assert attest(other_kind, attestations, AT) == 0


def test_an_expired_attestation_is_unknown_at_check_time(tmp_path: Path) -> None:
    record = _settings()
    attest(record, load_attestations([_file(tmp_path, TRAINING_ENTRY)]), AT)
    expire_attestations(record, date(2026, 12, 31))  # the last valid day
    assert record.unknown_reason("training.provider_may_train") is None
    expire_attestations(record, date(2027, 1, 1))
    reason = record.unknown_reason("training.provider_may_train")
    assert reason is not None and reason.code is UnknownCode.EXPIRED
    assert "ATT-SHARING" in reason.reason and "2026-12-31" in reason.reason


def _auditor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auditor.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def _statuses(findings: Path, policy: str) -> dict[str, str]:
    document = json.loads(findings.read_text())
    return {f["resource"]["name"]: f["status"] for f in document["findings"] if f["policy_id"] == policy}


def test_scan_attestations_then_check_before_and_after_expiry(tmp_path: Path) -> None:
    inventory = tmp_path / "tf.jsonl"
    attestations = _file(tmp_path, TLS_ENTRY)
    scanned = _auditor(
        "scan", "terraform", str(GCP_PLAN), "-o", str(inventory), "--attestations", str(attestations)
    )
    assert scanned.returncode == 0, scanned.stderr
    assert "attested: 2 values" in scanned.stdout
    records = [json.loads(line) for line in inventory.read_text().splitlines()]
    attested = {r["name"] for r in records if any("attestation" in e for e in r["evidence"])}
    assert attested == {"acme-eu-analytics", "acme-eu-dual"}

    findings = tmp_path / "findings.json"
    valid = _auditor(
        "check", "--inventory", str(inventory), "--policy", "transport.tls-minimum", "--today", "2027-03-31",
        "--format", "json", "-o", str(findings),
    )  # fmt: skip
    assert valid.returncode in (0, 1, 3), valid.stderr
    statuses = _statuses(findings, "transport.tls-minimum")
    assert statuses["acme-eu-analytics"] == "pass"
    assert statuses["acme-eur5"] == "error"  # not attested: still unknown

    expired = _auditor(
        "check", "--inventory", str(inventory), "--policy", "transport.tls-minimum", "--today", "2027-04-01",
        "--format", "json", "-o", str(findings),
    )  # fmt: skip
    assert expired.returncode == 3, expired.stderr
    statuses = _statuses(findings, "transport.tls-minimum")
    assert statuses["acme-eu-analytics"] == "error"
    document = json.loads(findings.read_text())
    (finding,) = [
        f for f in document["findings"]
        if f["resource"]["name"] == "acme-eu-analytics" and f["policy_id"] == "transport.tls-minimum"
    ]  # fmt: skip
    assert "expired on 2027-03-31" in json.dumps(finding)


def test_a_bad_attestation_file_stops_the_scan_before_anything_is_written(tmp_path: Path) -> None:
    inventory = tmp_path / "tf.jsonl"
    bad = _file(tmp_path, TLS_ENTRY.replace('value: "1.2"', "value: 1.2"))
    result = _auditor("scan", "terraform", str(GCP_PLAN), "-o", str(inventory), "--attestations", str(bad))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "does not fit transport.min_tls_version" in result.stderr
    assert not inventory.exists()
    assert list(tmp_path.iterdir()) == [bad]
