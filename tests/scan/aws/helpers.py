"""Running the AWS scanner in tests, and IAM enforcement in moto."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from auditor.model import CoverageGap, StorageResource
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


def run(
    catalog: ZoneCatalog,
    needs: AttributeNeeds | None = None,
    hook: SessionHook | None = None,
    **options: Any,
) -> ScanResult:
    """Scan with the given needs (default: everything) and collect the records."""
    scanner = AwsScanner(needs or AttributeNeeds.everything(), catalog, 4, session_hook=hook, **options)
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
