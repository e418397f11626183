"""The test estate (one bucket per case) and recorded answers for what moto gets wrong.

`build_estate` works the same in-process (under `mock_aws`) and against moto_server (with
AWS_ENDPOINT_URL set). `answer_with` registers a botocore `before-send` hook that returns a recorded
HTTP answer instead of sending the request, for the cases moto does not model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

ACCOUNT = "123456789012"
EU = "eu-west-1"


def arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


def _deny(bucket: str, **overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn(bucket), f"{arn(bucket)}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    statement.update(overrides)
    return {"Version": "2012-10-17", "Statement": [statement]}


# Bucket -> policy: each transport subtlety of the foundation issue.
POLICIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "tls-full-deny": _deny,
    "tls-boolifexists": lambda b: _deny(b, Condition={"BoolIfExists": {"aws:SecureTransport": "false"}}),
    "tls-putobject-only": lambda b: _deny(b, Action="s3:PutObject"),
    "tls-one-principal": lambda b: _deny(b, Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"}),
    "tls-prefix": lambda b: _deny(b, Resource=[arn(b), f"{arn(b)}/logs/*"]),
    "tls-version-only": lambda b: _deny(
        b, Sid="DenyOldTls", Condition={"NumericLessThan": {"s3:TlsVersion": "1.3"}}
    ),
    "tls-allow-secure": lambda b: _deny(
        b, Sid="AllowTls", Effect="Allow", Condition={"Bool": {"aws:SecureTransport": "true"}}
    ),
    "tls-notprincipal": lambda b: {
        "Version": "2012-10-17",
        "Statement": [
            {
                key: value
                for key, value in {
                    **_deny(b)["Statement"][0],
                    "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                }.items()
                if key != "Principal"
            }
        ],
    },
}


@dataclass
class Estate:
    """What `build_estate` made: key ARNs and the bucket names by case."""

    keys: dict[str, str] = field(default_factory=dict)
    buckets: list[str] = field(default_factory=list)


def _bucket(session: boto3.Session, name: str, region: str, estate: Estate) -> Any:
    s3 = session.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    estate.buckets.append(name)
    return s3


def _sse(s3: Any, name: str, algorithm: str, key: str | None = None) -> None:
    default: dict[str, str] = {"SSEAlgorithm": algorithm}
    if key:
        default["KMSMasterKeyID"] = key
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": default}]},
    )


def _replicate(s3: Any, name: str, destination: str) -> None:
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(
        Bucket=name,
        ReplicationConfiguration={
            "Role": f"arn:aws:iam::{ACCOUNT}:role/replication",
            "Rules": [
                {"ID": "all", "Status": "Enabled", "Prefix": "", "Destination": {"Bucket": arn(destination)}}
            ],
        },
    )


def build_estate(session: boto3.Session) -> Estate:
    """One bucket per case of the issue, in several regions including us-east-1."""
    estate = Estate()
    kms_eu = session.client("kms", region_name=EU)
    estate.keys["eu"] = kms_eu.create_key(Description="eu cmk")["KeyMetadata"]["Arn"]
    estate.keys["eu-bare"] = kms_eu.create_key(Description="eu cmk by id")["KeyMetadata"]["KeyId"]
    kms_us = session.client("kms", region_name="us-west-2")
    estate.keys["us"] = kms_us.create_key(Description="us cmk")["KeyMetadata"]["Arn"]

    _bucket(session, "plain-use1", "us-east-1", estate)
    for name, policy in POLICIES.items():
        s3 = _bucket(session, name, EU, estate)
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy(name)))
        _sse(s3, name, "AES256")

    _sse(_bucket(session, "sse-s3", EU, estate), "sse-s3", "AES256")
    _sse(_bucket(session, "sse-kms-cmk", EU, estate), "sse-kms-cmk", "aws:kms", estate.keys["eu"])
    _sse(_bucket(session, "sse-kms-default", EU, estate), "sse-kms-default", "aws:kms")
    _sse(_bucket(session, "sse-kms-aws-alias", EU, estate), "sse-kms-aws-alias", "aws:kms", "alias/aws/s3")
    _sse(
        _bucket(session, "sse-kms-bare-id", EU, estate), "sse-kms-bare-id", "aws:kms", estate.keys["eu-bare"]
    )
    _sse(_bucket(session, "sse-dsse-cmk", EU, estate), "sse-dsse-cmk", "aws:kms:dsse", estate.keys["eu"])
    _sse(_bucket(session, "oregon-cmk", "us-west-2", estate), "oregon-cmk", "aws:kms", estate.keys["us"])

    for name, region in (("repl-dest-eu", "eu-central-1"), ("repl-dest-us", "us-east-1")):
        s3 = _bucket(session, name, region, estate)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    _replicate(_bucket(session, "repl-in-zone", EU, estate), "repl-in-zone", "repl-dest-eu")
    _replicate(_bucket(session, "repl-out-of-zone", EU, estate), "repl-out-of-zone", "repl-dest-us")
    _replicate(_bucket(session, "repl-missing-dest", EU, estate), "repl-missing-dest", "no-such-destination")

    s3 = _bucket(session, "tags-variants", EU, estate)
    s3.put_bucket_tagging(
        Bucket="tags-variants",
        Tagging={
            "TagSet": [
                {"Key": "AI_Training", "Value": "Opt-In"},
                {"Key": "AI-Training-Consent", "Value": "DPA-2025-17"},
                {"Key": "Data_Class", "Value": "restricted"},
            ]
        },
    )
    s3 = _bucket(session, "tags-training-no-consent", EU, estate)
    s3.put_bucket_tagging(
        Bucket="tags-training-no-consent", Tagging={"TagSet": [{"Key": "ai-training", "Value": "opt-in"}]}
    )
    _bucket(session, "sydney-bucket", "ap-southeast-2", estate)
    return estate


# --- recorded answers -----------------------------------------------------------------------------


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def http_answer(
    request: AWSPreparedRequest, status: int, body: bytes, headers: dict[str, str] | None = None
) -> AWSResponse:
    """A recorded HTTP answer to `request`."""
    return AWSResponse(
        request.url, status, {"content-type": "application/xml", **(headers or {})}, _Body(body)
    )


def answer_with(
    session: boto3.Session,
    event: str,
    respond: Callable[[AWSPreparedRequest], AWSResponse | None],
) -> None:
    """Answer requests of `event` (e.g. 's3.GetBucketLocation') with `respond` (None = send as usual)."""

    def handler(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        return respond(request)

    session.events.register(f"before-send.{event}", handler)


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class Throttle:
    """Answers the first `n` requests of an operation with 503 SlowDown (thread-safe)."""

    def __init__(self, n: int) -> None:
        self.remaining = n
        self.sent = 0
        self._lock = threading.Lock()

    def __call__(self, request: AWSPreparedRequest) -> AWSResponse | None:
        with self._lock:
            self.sent += 1
            if self.remaining <= 0:
                return None
            self.remaining -= 1
        return http_answer(request, 503, SLOW_DOWN)


def list_buckets_xml(entries: list[tuple[str, str]], token: str | None) -> bytes:
    """A ListBuckets answer as real S3 gives it: BucketRegion per entry, ContinuationToken to page."""
    items = "".join(
        f"<Bucket><Name>{name}</Name><CreationDate>2024-01-01T00:00:00.000Z</CreationDate>"
        f"<BucketRegion>{region}</BucketRegion></Bucket>"
        for name, region in entries
    )
    more = f"<ContinuationToken>{token}</ContinuationToken>" if token else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Owner><ID>owner</ID></Owner><Buckets>{items}</Buckets>{more}</ListAllMyBucketsResult>"
    ).encode()


def location_xml(value: str) -> bytes:
    """A GetBucketLocation answer carrying `value` (e.g. the legacy 'EU')."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{value}</LocationConstraint>'
    ).encode()


def describe_key_json(key_arn: str, manager: str) -> bytes:
    """A KMS DescribeKey answer for `key_arn` with the given KeyManager."""
    key_id = key_arn.rsplit("/", 1)[-1]
    return json.dumps(
        {
            "KeyMetadata": {
                "AWSAccountId": ACCOUNT,
                "KeyId": key_id,
                "Arn": key_arn,
                "Enabled": True,
                "KeyManager": manager,
                "KeyState": "Enabled",
                "KeySpec": "SYMMETRIC_DEFAULT",
            }
        }
    ).encode()


def build_small_estate(session: boto3.Session) -> Estate:
    """Five buckets for the failure tests: two transport cases, a CMK, tags, one outside Europe."""
    estate = Estate()
    estate.keys["eu"] = session.client("kms", region_name=EU).create_key()["KeyMetadata"]["Arn"]
    for name in ("tls-full-deny", "tls-boolifexists"):
        s3 = _bucket(session, name, EU, estate)
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(POLICIES[name](name)))
        _sse(s3, name, "AES256")
    _sse(_bucket(session, "sse-kms-cmk", EU, estate), "sse-kms-cmk", "aws:kms", estate.keys["eu"])
    s3 = _bucket(session, "tags-variants", EU, estate)
    s3.put_bucket_tagging(
        Bucket="tags-variants", Tagging={"TagSet": [{"Key": "AI_Training", "Value": "opt-out"}]}
    )
    _bucket(session, "sydney-bucket", "ap-southeast-2", estate)
    return estate
