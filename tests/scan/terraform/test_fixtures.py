"""Every fixture plan, scanned and checked with the shipped policies: the verdicts per policy per resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.model import UnknownCode
from tests.scan.terraform.helpers import FIXTURES, findings, records, scan, verdicts

P, F, E = "pass", "fail", "error"
POLICIES = (
    "encryption.at-rest-aes256",
    "encryption.customer-managed-key",
    "residency.data-in-zone",
    "residency.key-in-zone",
    "training.ai-training-consent",
    "transport.plaintext-refused",
    "transport.tls-minimum",
)


def table(rows: dict[str, tuple[str, ...]]) -> dict[tuple[str, str], str]:
    """Expected statuses: address -> one status per POLICIES entry ('-' when out of scope)."""
    return {
        (policy, address): status
        for address, statuses in rows.items()
        for policy, status in zip(POLICIES, statuses, strict=True)
        if status != "-"
    }


def test_aws_v5_split_resources_modules_and_unknowns(tmp_path: Path) -> None:
    expected = table(
        {
            #                                          at-rest cmk res-data res-key training plaintext tls
            'aws_s3_bucket.data["orders"]': (P, E, P, P, P, P, P),
            'aws_s3_bucket.data["invoices"]': (P, E, P, P, P, E, P),
            "module.logs.aws_s3_bucket.logs": (P, "-", F, "-", F, F, P),
            "module.logs.aws_s3_bucket.replica": (P, "-", F, "-", P, F, P),
            "module.logs.module.archive.aws_s3_bucket.archive": (P, "-", P, "-", P, F, P),
            "aws_s3_bucket.scratch[0]": (P, "-", F, "-", P, F, P),
        }
    )
    assert verdicts(tmp_path, "aws-v5") == expected


def test_aws_v3_inline_blocks_older_format_and_prior_state(tmp_path: Path) -> None:
    expected = table(
        {
            # the key is not declared in the plan: who manages it is unknown
            "aws_s3_bucket.reports": (P, E, P, E, P, P, P),
            "aws_s3_bucket.dr": (P, "-", P, "-", P, F, P),
            "aws_s3_bucket.plain": (P, "-", P, "-", P, F, P),
        }
    )
    assert verdicts(tmp_path, "aws-v3") == expected


def test_gcp_locations_cmek_and_labels(tmp_path: Path) -> None:
    expected = table(
        {
            "google_storage_bucket.eu_multi": (P, "-", P, "-", P, F, E),
            "google_storage_bucket.eu_dual": (P, P, P, P, P, F, E),
            "google_storage_bucket.eur5": (P, "-", F, "-", P, F, E),
            "google_storage_bucket.training": (P, "-", F, "-", F, F, E),
        }
    )
    assert verdicts(tmp_path, "gcp") == expected


def test_azure_accounts_and_containers(tmp_path: Path) -> None:
    expected = table(
        {
            'azurerm_storage_container.sg["invoices"]': (P, "-", F, "-", P, P, F),
            'azurerm_storage_container.sg["models"]': (P, "-", F, "-", P, P, F),
            "azurerm_storage_account.eu": (P, E, P, P, P, P, P),
        }
    )
    assert verdicts(tmp_path, "azure") == expected


def test_azure_grs_pair_leaves_the_zone(tmp_path: Path) -> None:
    statuses = verdicts(tmp_path, "azure", "zone=sg")
    assert statuses[("residency.data-in-zone", 'azurerm_storage_container.sg["invoices"]')] == F
    found = records(tmp_path, str(FIXTURES / "azure" / "plan.json"))
    location = found['azurerm_storage_container.sg["invoices"]'].location
    assert location is not None and location.regions == ["southeastasia", "eastasia"]
    assert [r.kind for r in location.replicas] == ["geo-secondary"]


def test_records_identity_and_resolution(tmp_path: Path) -> None:
    plan = FIXTURES / "aws-v5" / "plan.json"
    found = records(tmp_path, str(plan))
    # deleted resources and data sources are not audited
    assert "aws_s3_bucket.old" not in found and all("data." not in a for a in found)
    orders = found['aws_s3_bucket.data["orders"]']
    assert orders.id == f'{plan}#aws_s3_bucket.data["orders"]'
    assert (orders.provider, orders.origin, orders.name, orders.account) == (
        "aws",
        "terraform",
        "acme-orders-eu",
        "111122223333",
    )
    assert orders.tags == {"owner": "platform", "data-class": "restricted"}
    assert orders.encryption is not None
    assert (orders.encryption.scheme, orders.encryption.key_management, orders.encryption.key_location) == (
        "DSSE-KMS",
        "customer-managed",
        "eu-west-1",
    )
    assert orders.transport is not None and orders.transport.plaintext_refused_by == (
        "bucket-policy:Sid=DenyInsecureTransport"
    )
    logs = found["module.logs.aws_s3_bucket.logs"]
    assert logs.location is not None and logs.location.regions == ["eu-west-1", "us-east-1"]
    assert logs.location.replicas[0].target == "arn:aws:s3:::acme-logs-replica-us"
    # no encryption declared: S3's documented default, as the deployed bucket reports it
    assert logs.encryption is not None and logs.encryption.model_dump() == {
        "enabled": True,
        "algorithm": "AES256",
        "scheme": "SSE-S3",
        "key_management": "provider-managed",
        "key_id": None,
        "key_location": None,
        "provider_default": True,
        "source": "https://docs.aws.amazon.com/AmazonS3/latest/userguide/default-encryption-faq.html",
    }
    # inherited provider (a key naming the module), aliased provider passed into the module
    assert found["module.logs.module.archive.aws_s3_bucket.archive"].location.primary == "eu-west-1"  # type: ignore[union-attr]
    assert found["module.logs.aws_s3_bucket.replica"].location.primary == "us-east-1"  # type: ignore[union-attr]
    scratch = found["aws_s3_bucket.scratch[0]"]
    assert scratch.name == "aws_s3_bucket.scratch[0]"  # bucket_prefix: the name is known after apply


def test_unknown_after_apply_is_error_with_its_code(tmp_path: Path) -> None:
    result, inventory = scan(tmp_path, str(FIXTURES / "aws-v5" / "plan.json"))
    assert result.exit_code == 0
    (finding,) = [
        f
        for f in findings(inventory, "zone=eu")
        if f["policy_id"] == "transport.plaintext-refused"
        and f["resource"]["id"].endswith('data["invoices"]')
    ]
    assert finding["status"] == "error"
    assert UnknownCode.NOT_KNOWN_UNTIL_APPLY.value in str(finding["observed"]) + str(finding["message"])
    invoices = records(tmp_path, str(FIXTURES / "aws-v5" / "plan.json"))['aws_s3_bucket.data["invoices"]']
    assert invoices.unknown["transport.bucket_policy"].code is UnknownCode.NOT_KNOWN_UNTIL_APPLY


def test_evidence_locations_with_and_without_source_root(tmp_path: Path) -> None:
    plan = FIXTURES / "aws-v5" / "plan.json"
    plain = records(tmp_path, str(plan))["module.logs.module.archive.aws_s3_bucket.archive"]
    (evidence,) = plain.evidence
    assert evidence.call == "terraform:plan"
    assert evidence.request == {"address": "module.logs.module.archive.aws_s3_bucket.archive"}
    assert evidence.location is not None
    assert (evidence.location.file, evidence.location.line) == (str(plan), None)

    mapped = records(tmp_path, str(plan), "--source-root", str(FIXTURES / "aws-v5"))
    lines = {
        (e.location.address, e.location.file, e.location.line)
        for record in mapped.values()
        for e in record.evidence
        if e.location is not None
    }
    assert ("module.logs.module.archive.aws_s3_bucket.archive", "modules/archive/main.tf", 3) in lines
    assert ("module.logs.aws_s3_bucket.logs", "modules/logs/main.tf", 11) in lines
    assert ('aws_s3_bucket.data["orders"]', "main.tf", 36) in lines
    assert ("aws_kms_key.data", "main.tf", 31) in lines
    assert ("aws_s3_bucket_policy.tls", "main.tf", 57) in lines

    # With the repository root given, paths are shown from it (what code scanning resolves).
    from_repo = records(
        tmp_path,
        str(plan),
        "--source-root",
        str(FIXTURES / "aws-v5"),
        "--repository-root",
        str(FIXTURES.parent.parent.parent),
    )
    shown = {
        (e.location.address, e.location.file, e.location.line)
        for record in from_repo.values()
        for e in record.evidence
        if e.location is not None
    }
    assert ("aws_kms_key.data", "fixtures/iac/terraform/aws-v5/main.tf", 31) in shown


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"format_version": "1.2", "resource_changes": [', ":1: not valid JSON"),
        ("", ":1: not valid JSON"),
        ("[1, 2]", ": expected a JSON object, found an array"),
        ('{"hello": "world"}', ": format_version: missing or not a version"),
        ('{"version": 4, "resources": []}', ": a raw state file"),
        ('{"format_version": "1.2", "resource_changes": {}}', ": resource_changes: expected a JSON array"),
        (
            '{"format_version": "1.2", "resource_changes": [{"address": "a.b", "type": "a", "name": "b", '
            '"change": {"actions": ["create"], "after": "x"}}]}',
            ": resource_changes[0].change.after: expected a JSON object, found a string",
        ),
        ('{"format_version": "2.0", "resource_changes": []}', ": format_version: 2.0 is not supported"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result, inventory = scan(tmp_path, str(bad))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}"), lines
    assert message in lines[0]
    assert not inventory.exists()


def test_retry_settings_are_refused(tmp_path: Path) -> None:
    result, inventory = scan(tmp_path, str(FIXTURES / "gcp" / "plan.json"), "--timeout", "5")
    assert result.exit_code == 2 and "terraform scans do not use --timeout" in result.stderr
    assert not inventory.exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("truncated.json", "truncated.json:3: not valid JSON"),
        ("not-a-plan.json", "not-a-plan.json: format_version: missing"),
        ("raw-state.json", "raw-state.json: a raw state file"),
    ],
)
def test_bad_fixture_files(tmp_path: Path, name: str, message: str) -> None:
    result, inventory = scan(tmp_path, str(FIXTURES / "bad" / name))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert message in line
    assert not inventory.exists()
