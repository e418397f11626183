"""AWS scanner against moto_server over real HTTP, end to end through the `auditor` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds

from .conftest import moto_api
from .estate import (
    EU,
    Throttle,
    answer_with,
    build_estate,
    build_small_estate,
    describe_key_json,
    http_answer,
    location_xml,
)
from .helpers import IAM_SETUP_ACTIONS, restricted_user, run, storage_policies

pytestmark = pytest.mark.usefixtures("moto_server")
POLICIES = Path(__file__).resolve().parents[3] / "policies"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def scan_inventory(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, exit_code: int = 0
) -> tuple[Result, dict[str, Any]]:
    inventory = tmp_path / "inv.jsonl"
    # The S3 tests scan buckets only: storage-scoped copies of the policies (tests/scan/aws/test_ai.py
    # scans the AI resources).
    if "--policies" in args:
        at = args.index("--policies") + 1
        args = (
            *args[:at],
            str(storage_policies(tmp_path / "storage-policies", Path(args[at]))),
            *args[at + 1 :],
        )
    else:
        args = ("--policies", str(storage_policies(tmp_path / "storage-policies")), *args)
    result = invoke("scan", "aws", "--output", str(inventory), "--no-progress", *args, env=env)
    assert result.exit_code == exit_code, result.output
    records: dict[str, Any] = {}
    for record in read_inventory(inventory):
        key = record.name if isinstance(record, StorageResource) else f"gap:{record.account}"
        records[key] = record
    return result, records


def check_statuses(tmp_path: Path) -> dict[tuple[str, str], str]:
    result = invoke(
        "check", "--inventory", str(tmp_path / "inv.jsonl"), "--param", "zone=eu", "--format", "json"
    )
    assert result.exit_code in (0, 1, 3), result.output
    document = json.loads(result.stdout)
    return {
        (f["policy_id"], f["resource"]["id"].rsplit(":", 1)[-1]): f["status"] for f in document["findings"]
    }


def test_end_to_end_scan_and_check(tmp_path: Path) -> None:
    estate = build_estate(boto3.Session(region_name="us-east-1"))
    result, records = scan_inventory(tmp_path)
    assert sorted(records) == sorted(estate.buckets)
    assert "API calls" in result.stdout and "s3:GetBucketTagging" in result.stdout

    def rec(name: str) -> StorageResource:
        record = records[name]
        assert isinstance(record, StorageResource)
        return record

    assert rec("plain-use1").location is not None and rec("plain-use1").location.raw == ""  # type: ignore[union-attr]
    assert rec("repl-out-of-zone").location.regions == [EU, "us-east-1"]  # type: ignore[union-attr]
    assert rec("repl-missing-dest").unknown["location.regions"].code == UnknownCode.ERROR
    assert rec("sse-kms-cmk").encryption.key_location == EU  # type: ignore[union-attr]
    assert rec("tls-version-only").transport.min_tls_version == "1.3"  # type: ignore[union-attr]
    assert rec("tags-variants").tags == {
        "AI_Training": "Opt-In",
        "AI-Training-Consent": "DPA-2025-17",
        "Data_Class": "restricted",
    }

    statuses = check_statuses(tmp_path)
    expected = {
        ("residency.data-in-zone", "plain-use1"): "fail",
        ("residency.data-in-zone", "sse-s3"): "pass",
        ("residency.data-in-zone", "repl-in-zone"): "pass",
        ("residency.data-in-zone", "repl-out-of-zone"): "fail",
        ("residency.data-in-zone", "repl-missing-dest"): "error",
        ("residency.data-in-zone", "sydney-bucket"): "fail",
        ("residency.key-in-zone", "sse-kms-cmk"): "pass",
        ("residency.key-in-zone", "oregon-cmk"): "fail",
        ("transport.plaintext-refused", "tls-full-deny"): "pass",
        ("transport.plaintext-refused", "tls-boolifexists"): "pass",
        ("transport.plaintext-refused", "tls-putobject-only"): "fail",
        ("transport.plaintext-refused", "tls-one-principal"): "fail",
        ("transport.plaintext-refused", "tls-prefix"): "fail",
        ("transport.plaintext-refused", "tls-version-only"): "fail",
        ("transport.plaintext-refused", "tls-allow-secure"): "fail",
        ("transport.plaintext-refused", "tls-notprincipal"): "fail",
        ("transport.plaintext-refused", "plain-use1"): "fail",
        ("transport.tls-minimum", "plain-use1"): "pass",
        ("transport.tls-minimum", "tls-version-only"): "pass",
        ("encryption.at-rest-aes256", "plain-use1"): "fail",
        ("encryption.at-rest-aes256", "sse-s3"): "pass",
        ("encryption.at-rest-aes256", "sse-kms-default"): "pass",
        ("encryption.at-rest-aes256", "sse-dsse-cmk"): "pass",
        ("encryption.customer-managed-key", "tags-variants"): "fail",
        ("training.ai-training-consent", "tags-variants"): "pass",
        ("training.ai-training-consent", "tags-training-no-consent"): "fail",
        ("training.ai-training-consent", "plain-use1"): "pass",
    }
    assert {key: statuses.get(key) for key in expected} == expected
    # Provider-managed keys are out of the key-in-zone scope: no finding at all.
    assert ("residency.key-in-zone", "sse-kms-default") not in statuses


def test_denied_call_gives_error_never_pass(tmp_path: Path, moto_server: str) -> None:
    deny = {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::tls-full-deny"}
    moto_api(moto_server, "reset-auth", str(IAM_SETUP_ACTIONS).encode(), "text/plain")
    keys = restricted_user([deny])
    build_small_estate(boto3.Session(region_name="us-east-1", **_lower(keys)))
    _, records = scan_inventory(tmp_path, env=keys)
    denied = records["tls-full-deny"]
    assert denied.unknown["transport.plaintext_refused"].code == UnknownCode.ACCESS_DENIED
    statuses = check_statuses(tmp_path)
    assert statuses[("transport.plaintext-refused", "tls-full-deny")] == "error"
    assert statuses[("transport.plaintext-refused", "tls-boolifexists")] == "pass"
    assert statuses[("encryption.at-rest-aes256", "tls-full-deny")] == "pass"


def _lower(keys: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in keys.items()}


def test_role_that_cannot_be_assumed_is_a_coverage_gap(tmp_path: Path, moto_server: str) -> None:
    allowed = {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": "arn:aws:iam::222222222222:role/Auditor",
    }
    moto_api(moto_server, "reset-auth", str(IAM_SETUP_ACTIONS).encode(), "text/plain")
    keys = restricted_user([allowed])
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("# the estate\n333333333333\n")
    result, records = scan_inventory(
        tmp_path,
        "--role-arn",
        "arn:aws:iam::{account_id}:role/Auditor",
        "--accounts",
        str(accounts),
        env=keys,
        exit_code=3,  # its only account failed: nothing scanned is incomplete (README, exit codes)
    )
    gap = records["gap:333333333333"]
    assert isinstance(gap, CoverageGap) and gap.code == UnknownCode.ACCESS_DENIED and gap.scope == "account"
    assert "1 coverage gaps" in result.stdout


def test_training_policies_read_only_tags(tmp_path: Path) -> None:
    estate = build_small_estate(boto3.Session(region_name="us-east-1"))
    result, records = scan_inventory(tmp_path, "--policies", str(POLICIES / "training.yaml"))
    n = len(estate.buckets)
    assert f"s3:GetBucketTagging: {n} (1.00 per resource)" in result.stdout
    assert [line for line in result.stdout.splitlines() if "s3:Get" in line or "kms:" in line] == [
        f"  s3:GetBucketTagging: {n} (1.00 per resource)"
    ]
    assert all(r.location is None and r.encryption is None for r in records.values())


def test_regions_option(tmp_path: Path) -> None:
    build_small_estate(boto3.Session(region_name="us-east-1"))
    result, records = scan_inventory(tmp_path, "--regions", "ap-southeast-2")
    assert list(records) == ["sydney-bucket"]
    assert "skipped 4 buckets outside --regions ap-southeast-2" in result.stderr


def test_bad_input_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["scan", "aws", "--output", str(tmp_path / "x"), "--regions", "europe"])
    assert result.exit_code == 2 and "not an AWS region code" in result.stderr


def test_retries_and_recorded_quirks_over_http(catalog: ZoneCatalog) -> None:
    # Throttling answered by retries, the legacy `EU` constraint and KeyManager=AWS for a key ARN,
    # with the real wire protocol for everything else.
    estate = build_small_estate(boto3.Session(region_name="us-east-1"))
    throttle = Throttle(2)

    def hook(session: boto3.Session) -> None:
        answer_with(session, "s3.GetBucketTagging", throttle)
        answer_with(
            session,
            "s3.GetBucketLocation",
            lambda r: http_answer(r, 200, location_xml("EU")) if "tags-variants" in r.url else None,
        )
        answer_with(
            session,
            "kms.DescribeKey",
            lambda r: http_answer(r, 200, describe_key_json(estate.keys["eu"], "AWS")),
        )

    result = run(catalog, AttributeNeeds.everything(), hook=hook, max_attempts=4)
    tagged = result.buckets["tags-variants"]
    assert tagged.tags == {"AI_Training": "opt-out"} and "tags" not in tagged.unknown
    assert tagged.location is not None and (tagged.location.raw, tagged.location.primary) == ("EU", EU)
    cmk = result.buckets["sse-kms-cmk"].encryption
    assert cmk is not None and cmk.key_management == "provider-managed"
    assert throttle.sent == len(estate.buckets) + 2
