"""The S3 bucket-policy transport analysis, statement by statement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.inventory import parse_record, read_inventory, write_inventory
from auditor.model import StorageResource, UnknownCode
from auditor.scan.aws_bucket_policy import analyse_bucket_policy

ARN = "arn:aws:s3:::data"


def deny(**overrides: Any) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Sid": "DenyHttp",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [ARN, f"{ARN}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    statement.update(overrides)
    return {"Version": "2012-10-17", "Statement": [statement]}


def test_full_deny_refuses_plaintext_and_names_the_statement() -> None:
    verdict = analyse_bucket_policy(deny(), ARN)
    assert verdict.plaintext_refused
    assert verdict.plaintext_refused_by == "bucket-policy:Sid=DenyHttp"


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"Action": "s3:PutObject"}, id="one-action"),
        pytest.param({"Action": ["s3:GetObject", "s3:PutObject"]}, id="some-actions"),
        pytest.param({"NotAction": "s3:GetObject", "Action": None}, id="not-action"),
        pytest.param({"Principal": {"AWS": "arn:aws:iam::1:role/x"}}, id="one-principal"),
        pytest.param({"NotPrincipal": {"AWS": "arn:aws:iam::1:root"}}, id="not-principal"),
        pytest.param({"Resource": [ARN, f"{ARN}/logs/*"]}, id="prefix"),
        pytest.param({"Resource": f"{ARN}/*"}, id="objects-only"),
        pytest.param({"Resource": ARN}, id="bucket-only"),
        pytest.param({"Resource": "arn:aws:s3:::other/*"}, id="other-bucket"),
        pytest.param(
            {"Effect": "Allow", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, id="allow-secure"
        ),
        pytest.param({"Condition": {"Bool": {"aws:SecureTransport": "true"}}}, id="deny-secure"),
        pytest.param({"Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}}, id="tls-only"),
        pytest.param({"Condition": "aws:SecureTransport=false"}, id="condition-not-a-block"),
        pytest.param({"Condition": ["Bool"]}, id="condition-a-list"),
        pytest.param(
            {
                "Condition": {
                    "Bool": {"aws:SecureTransport": "false"},
                    "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                }
            },
            id="narrowed",
        ),
    ],
)
def test_narrower_statements_do_not_refuse_plaintext(overrides: dict[str, Any]) -> None:
    policy = deny(**overrides)
    statement = policy["Statement"][0]
    for key in [k for k, v in overrides.items() if v is None]:
        del statement[key]
    assert not analyse_bucket_policy(policy, ARN).plaintext_refused


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"Condition": {"BoolIfExists": {"aws:SecureTransport": False}}}, id="bool-if-exists"),
        pytest.param({"Principal": {"AWS": ["*"]}, "Action": ["s3:*"]}, id="list-forms"),
        pytest.param({"Resource": "*"}, id="every-resource"),
        pytest.param({"Resource": "arn:aws:s3:::da*"}, id="wildcard-covering-both"),
        pytest.param({"Action": "S3:*"}, id="action-case"),
        pytest.param({"Condition": {"Bool": {"AWS:SecureTransport": ["false"]}}}, id="key-case-and-list"),
        pytest.param(
            {"Condition": {"NumericLessThanIfExists": {"s3:TlsVersion": "1.2"}}}, id="tls-if-exists"
        ),
    ],
)
def test_equivalent_spellings_refuse_plaintext(overrides: dict[str, Any]) -> None:
    assert analyse_bucket_policy(deny(**overrides), ARN).plaintext_refused


def test_policy_as_json_string_and_missing_policy() -> None:
    import json

    assert analyse_bucket_policy(json.dumps(deny()), ARN).plaintext_refused
    empty = analyse_bucket_policy(None, ARN)
    assert not empty.plaintext_refused and empty.plaintext_refused_by is None and empty.tls_floor is None


@pytest.mark.parametrize(
    ("operator", "value", "floor"),
    [
        ("NumericLessThan", "1.2", "1.2"),
        ("NumericLessThan", "1.3", "1.3"),
        ("NumericLessThanEquals", "1.1", "1.2"),
    ],
)
def test_tls_floor_from_tls_version_deny(operator: str, value: str, floor: str) -> None:
    verdict = analyse_bucket_policy(deny(Sid="Tls", Condition={operator: {"s3:TlsVersion": value}}), ARN)
    assert verdict.tls_floor == floor
    assert verdict.tls_floor_by == "bucket-policy:Sid=Tls"


def test_tls_floor_ignored_when_statement_is_narrow() -> None:
    policy = deny(Action="s3:GetObject", Condition={"NumericLessThan": {"s3:TlsVersion": "1.3"}})
    assert analyse_bucket_policy(policy, ARN).tls_floor is None


# --- the transport fields of a bucket whose policy could not be read ------------------------------

FLOOR = {"version": "1.2", "since": "2023-12-31", "source": "https://aws.amazon.com/blogs/security/"}
DENIED = {"code": "access_denied", "reason": "AccessDenied: Access Denied (s3:GetBucketPolicy)"}


def s3_resource(
    unknown: dict[str, Any], *, floor: dict[str, Any] | None = FLOOR, min_tls: str = "1.2", policy: Any = None
) -> StorageResource:
    # Read as an inventory line: where records come in, the AWS source derives the transport fields.
    return _read(
        {
            "provider": "aws",
            "kind": "bucket",
            "account": "1",
            "name": "data",
            "id": ARN,
            "transport": {
                "plaintext_refused": None,
                "plaintext_refused_by": None,
                "min_tls_version": min_tls,
                "min_tls_enforced_by": "provider-floor",
                "provider_floor": floor,
                "bucket_policy": policy,
            },
            "unknown": unknown,
        }
    )


def _read(data: dict[str, Any]) -> StorageResource:
    record = parse_record(json.dumps(data), "test.jsonl:1")
    assert isinstance(record, StorageResource)
    return record


def test_unreadable_policy_leaves_the_provider_floor_as_a_lower_bound() -> None:
    resource = s3_resource({"transport.bucket_policy": DENIED})
    assert resource.transport is not None and resource.transport.min_tls_version == "1.2"
    bound = resource.unknown["transport.min_tls_version"]
    assert (bound.code, bound.reason, bound.partial) == (
        UnknownCode.ACCESS_DENIED,
        DENIED["reason"],
        "at_least",
    )
    # What enforces the minimum, and the plaintext verdict, are wholly unknown.
    for path in (
        "transport.min_tls_enforced_by",
        "transport.plaintext_refused",
        "transport.plaintext_refused_by",
    ):
        entry = resource.unknown[path]
        assert entry.reason == DENIED["reason"] and entry.partial is None


def test_unreadable_policy_replaces_a_claimed_minimum_by_the_floor() -> None:
    # Nothing readable supports "1.3": only the floor is proven.
    resource = s3_resource({"transport.bucket_policy": DENIED}, min_tls="1.3")
    assert resource.transport is not None and resource.transport.min_tls_version == "1.2"
    assert resource.unknown["transport.min_tls_version"].partial == "at_least"


def test_unreadable_policy_without_a_floor_leaves_the_minimum_wholly_unknown() -> None:
    resource = s3_resource({"transport.bucket_policy": DENIED}, floor=None)
    entry = resource.unknown["transport.min_tls_version"]
    assert entry.partial is None and entry.code is UnknownCode.ACCESS_DENIED


def test_a_whole_unknown_transport_group_gets_no_partial_leaf() -> None:
    resource = s3_resource({"transport": DENIED})
    assert "transport.min_tls_version" not in resource.unknown
    reason = resource.unknown_reason("transport.min_tls_version")
    assert reason is not None and reason.partial is None


def test_a_minimum_unknown_entry_already_recorded_is_kept() -> None:
    scanner = {"code": "timeout", "reason": "scanner said so"}
    resource = s3_resource({"transport.bucket_policy": DENIED, "transport.min_tls_version": scanner})
    entry = resource.unknown["transport.min_tls_version"]
    assert (entry.code, entry.partial) == (UnknownCode.TIMEOUT, None)


def test_a_readable_policy_keeps_the_minimum_known() -> None:
    resource = s3_resource(
        {}, policy=deny(Sid="Tls", Condition={"NumericLessThan": {"s3:TlsVersion": "1.3"}})
    )
    assert resource.unknown == {}
    assert resource.transport is not None and resource.transport.min_tls_version == "1.3"


def test_the_lower_bound_survives_a_jsonl_round_trip(tmp_path: Path) -> None:
    resource = s3_resource({"transport.bucket_policy": DENIED})
    path = tmp_path / "inv.jsonl"
    write_inventory(path, [resource])
    line = json.loads(path.read_text())
    assert line["unknown"]["transport.min_tls_version"] == {**DENIED, "partial": "at_least"}
    assert "partial" not in line["unknown"]["transport.plaintext_refused"]
    (back,) = list(read_inventory(path))
    assert back.model_dump() == resource.model_dump()
