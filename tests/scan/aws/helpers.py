"""Running the AWS scanner in tests, and IAM enforcement in moto."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

from auditor.model import STORAGE_KINDS, CoverageGap, StorageResource
from auditor.policy.loader import shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws import AwsScanner
from auditor.scan.aws_accounts import SessionHook
from auditor.scan.base import AttributeNeeds


@dataclass
class ScanResult:
    """Records of one scan by bucket name, the gaps, and the scanner (for its call counts)."""

    scanner: AwsScanner
    buckets: dict[str, StorageResource] = field(default_factory=dict)
    gaps: list[CoverageGap] = field(default_factory=list)

    @property
    def calls(self) -> dict[str, int]:
        return self.scanner.calls.snapshot()


def for_buckets(needs: AttributeNeeds) -> AttributeNeeds:
    """`needs` as the needs of policies scoped to buckets alone (what the S3 tests read)."""
    if needs.by_kind is not None:
        return needs
    return AttributeNeeds(needs.paths, {"bucket": needs.paths})


def run(
    catalog: ZoneCatalog,
    needs: AttributeNeeds | None = None,
    hook: SessionHook | None = None,
    **options: Any,
) -> ScanResult:
    """Scan buckets with the given needs (default: every attribute) and collect the records.

    Needs that name no kinds are scoped to buckets (`for_buckets`): the S3 tests scan no AI
    resource; tests/scan/aws/test_ai.py scans those.
    """
    chosen = for_buckets(needs or AttributeNeeds.everything())
    scanner = AwsScanner(chosen, catalog, 4, session_hook=hook, **options)
    result = ScanResult(scanner)
    for record in scanner.scan():
        if isinstance(record, CoverageGap):
            result.gaps.append(record)
        else:
            assert record.name not in result.buckets, f"{record.name} yielded twice"
            result.buckets[record.name] = record
    return result


# Setup actions made before IAM enforcement starts (create_user, put_user_policy, create_access_key).
IAM_SETUP_ACTIONS = 3


def restricted_user(statements: list[dict[str, Any]]) -> dict[str, str]:
    """Create an IAM user with these extra statements beside 'allow s3/kms/sts'; return its keys.

    Must be the first IAM_SETUP_ACTIONS calls after auth enforcement was armed.
    """
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="auditor")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:*", "kms:*", "sts:GetCallerIdentity"], "Resource": "*"},
            *statements,
        ],
    }
    iam.put_user_policy(UserName="auditor", PolicyName="auditor", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="auditor")["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def scoped_policies(directory: Path, kinds: tuple[str, ...], source: Path | None = None) -> Path:
    """The policies of `source` (default: the shipped ones) scoped to `kinds` only, in `directory`.

    Each policy keeps only those of its scope's kinds (unnamed: the storage kinds) in `kinds`, and
    one scoped to none of them is left out; the S3 tests scan with storage kinds only (no AI
    listing), the AI tests with AI kinds only (no S3 listing).
    """
    directory.mkdir(parents=True, exist_ok=True)
    given = source or shipped_policies_dir()
    for path in [given] if given.is_file() else sorted(given.glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        kept = []
        for policy in document.get("policies", []):
            scope = policy.setdefault("scope", {})
            chosen = [kind for kind in scope.get("kinds", STORAGE_KINDS) if kind in kinds]
            if chosen:
                scope["kinds"] = chosen
                kept.append(policy)
        text = yaml.safe_dump({"policies": kept}, sort_keys=False)
        (directory / path.name).write_text(text, encoding="utf-8")
    return directory


def storage_policies(directory: Path, source: Path | None = None) -> Path:
    """`scoped_policies` for the storage kinds: what the S3 tests scan with through the CLI."""
    return scoped_policies(directory, STORAGE_KINDS, source)
