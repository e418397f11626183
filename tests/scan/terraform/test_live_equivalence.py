"""The moto test estate declared in Terraform gives the live scan's verdicts, policy by policy.

`fixtures/iac/terraform/estate/plan.json` declares the buckets of `tests/scan/aws/estate.py` as an
applied configuration (a no-op plan, every value known). Both inventories go through
`auditor check` with the shipped policies; statuses must match for every bucket and policy,
except where the emulator and real S3 differ (stated below).
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from auditor.inventory import write_inventory
from auditor.policy.loader import load_zones
from auditor.scan.base import AttributeNeeds
from tests.scan.aws.conftest import fake_aws_env
from tests.scan.aws.estate import build_estate
from tests.scan.aws.helpers import run
from tests.scan.terraform.helpers import FIXTURES, findings, scan

# moto answers GetBucketEncryption on a bucket without configuration with
# ServerSideEncryptionConfigurationNotFoundError, so the live scanner records encryption as not
# configured (docs/scanners/aws.md); real S3 answers the SSE-S3 default that the Terraform
# scanner records. The at-rest verdict of these buckets therefore differs, by design.
NO_CONFIGURATION = {
    "plain-use1",
    "repl-dest-eu",
    "repl-dest-us",
    "repl-in-zone",
    "repl-out-of-zone",
    "repl-missing-dest",
    "tags-variants",
    "tags-training-no-consent",
    "sydney-bucket",
}
EXCLUDED = {("encryption.at-rest-aes256", name) for name in NO_CONFIGURATION}


def _by_name(inventory: Path) -> dict[tuple[str, str], str]:
    return {(f["policy_id"], f["resource"]["name"]): f["status"] for f in findings(inventory, "zone=eu")}


def test_terraform_estate_matches_the_live_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(monkeypatch, tmp_path)
    with mock_aws():
        estate = build_estate(boto3.Session())
        live = run(load_zones([]), AttributeNeeds.everything())
    assert not live.gaps
    live_inventory = tmp_path / "live.jsonl"
    write_inventory(live_inventory, list(live.buckets.values()))
    result, declared_inventory = scan(tmp_path, str(FIXTURES / "estate" / "plan.json"))
    assert result.exit_code == 0, result.output

    observed, declared = _by_name(live_inventory), _by_name(declared_inventory)
    assert {name for _, name in declared} == set(estate.buckets)
    compared = {key for key in observed.keys() | declared.keys() if key not in EXCLUDED}
    differences = {
        key: (observed.get(key), declared.get(key))
        for key in compared
        if observed.get(key) != declared.get(key)
    }
    assert differences == {}
    assert len(compared) > 100  # 24 buckets x 5-7 policies each
    # The exclusions are exactly the known emulator difference, nothing else.
    for key in EXCLUDED:
        assert (observed[key], declared[key]) == ("fail", "pass")
