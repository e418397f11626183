"""The inventory model: tri-state attributes, tag folding, JSONL round trips and bad lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.errors import InputError
from auditor.inventory import parse_record, read_inventory, write_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode, attribute_paths, normalize_tag_key

BASE: dict[str, Any] = {
    "provider": "aws",
    "kind": "bucket",
    "account": "1",
    "name": "b",
    "id": "arn:aws:s3:::b",
}


def test_group_not_collected_is_unknown_not_absent() -> None:
    resource = StorageResource.model_validate(BASE)
    reason = resource.unknown_reason("encryption.algorithm")
    assert reason is not None and reason.code is UnknownCode.NOT_COLLECTED


def test_unknown_parent_path_covers_leaves() -> None:
    resource = StorageResource.model_validate(
        {**BASE, "unknown": {"encryption": {"code": "access_denied", "reason": "denied"}}}
    )
    reason = resource.unknown_reason("encryption.key_location")
    assert reason is not None and reason.code is UnknownCode.ACCESS_DENIED


def test_collected_group_must_set_every_leaf() -> None:
    # Leaving a leaf out would silently read as "absent": it is rejected instead.
    with pytest.raises(ValueError, match="key_location"):
        StorageResource.model_validate(
            {
                **BASE,
                "encryption": {
                    "enabled": True,
                    "algorithm": "AES256",
                    "scheme": "SSE-S3",
                    "key_management": None,
                    "key_id": None,
                },
            }
        )


@pytest.mark.parametrize(
    ("key", "folded"),
    [("AI_Training", "ai-training"), ("ai-training", "ai-training"), ("DATA-class", "data-class")],
)
def test_tag_keys_fold(key: str, folded: str) -> None:
    assert normalize_tag_key(key) == folded


def _read(record: dict[str, Any]) -> StorageResource:
    resource = parse_record(json.dumps(record), "x:1")
    assert isinstance(resource, StorageResource)
    return resource


def test_s3_transport_is_derived_from_the_bucket_policy() -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    }
    transport = {
        "plaintext_refused": False,
        "plaintext_refused_by": None,
        "min_tls_version": "1.2",
        "min_tls_enforced_by": "provider-floor",
        "bucket_policy": policy,
    }
    # The verdict is derived where records come in (the inventory reader), not by the model.
    resource = _read({**BASE, "transport": transport})
    assert resource.transport is not None and resource.transport.plaintext_refused is True


def test_unreadable_bucket_policy_makes_plaintext_unknown() -> None:
    transport = {
        "plaintext_refused": None,
        "plaintext_refused_by": None,
        "min_tls_version": "1.2",
        "min_tls_enforced_by": "provider-floor",
        "bucket_policy": None,
    }
    resource = _read(
        {
            **BASE,
            "transport": transport,
            "unknown": {"transport.bucket_policy": {"code": "access_denied", "reason": "x"}},
        }
    )
    assert resource.unknown_reason("transport.plaintext_refused") is not None


def test_jsonl_round_trip(tmp_path: Path) -> None:
    records = [
        StorageResource.model_validate({**BASE, "tags": {"a": "1"}}),
        CoverageGap(
            provider="aws", account="2", scope="account", code=UnknownCode.ACCESS_DENIED, reason="no"
        ),
    ]
    path = tmp_path / "inv.jsonl"
    assert write_inventory(path, records) == 2
    back = list(read_inventory(path))
    assert [r.model_dump() for r in back] == [r.model_dump() for r in records]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"provider": "aws", "kind": "bucket"', "invalid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"provider": "ibm", "kind": "bucket", "account": "1", "name": "b", "id": "x"}', "provider"),
        (
            '{"provider": "aws", "kind": "bucket", "account": "1", "name": "b", "id": "x", "colour": "red"}',
            "colour",
        ),
    ],
)
def test_bad_lines_name_the_line(line: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as caught:
        parse_record(line, "inv.jsonl:7")
    assert caught.value.where == "inv.jsonl:7"


def test_attribute_paths_cover_the_model() -> None:
    paths = attribute_paths()
    assert {
        "location.regions",
        "encryption.key_location",
        "transport.min_tls_version",
        "tags",
        "name",
    } <= paths
    assert "location.nope" not in paths


def test_partial_unknown_round_trips_and_whole_ones_keep_their_shape(tmp_path: Path) -> None:
    location = {
        "raw": "eu-west-1",
        "type": "region",
        "primary": "eu-west-1",
        "regions": ["eu-west-1"],
        "replicas": [],
    }
    resource = StorageResource.model_validate(
        {
            **BASE,
            "location": location,
            "unknown": {
                "location.regions": {"code": "access_denied", "reason": "replica", "partial": "members"},
                "tags": {"code": "throttled", "reason": "slow"},
            },
        }
    )
    assert resource.unknown["location.regions"].partial == "members"
    assert resource.unknown["tags"].partial is None
    path = tmp_path / "inv.jsonl"
    write_inventory(path, [resource])
    line = path.read_text()
    assert '"partial":"members"' in line.replace(" ", "")
    assert line.count("partial") == 1  # entries without partial knowledge serialize as before
    (back,) = list(read_inventory(path))
    assert back.model_dump() == resource.model_dump()
    # Partial knowledge is visible through unknown_reason; the path is still unknown.
    reason = back.unknown_reason("location.regions")
    assert reason is not None and reason.partial == "members"


def test_partial_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="partial"):
        StorageResource.model_validate(
            {**BASE, "unknown": {"location.regions": {"code": "error", "reason": "x", "partial": "some"}}}
        )


def test_a_gap_without_evidence_serializes_as_before_and_one_with_evidence_round_trips() -> None:
    from datetime import UTC, datetime

    from auditor.inventory import dump_record
    from auditor.model import Evidence

    at = datetime(2026, 1, 2, tzinfo=UTC)
    bare = CoverageGap(
        provider="aws", account="1", scope="buckets", code=UnknownCode.ERROR, reason="r", at=at
    )
    assert list(json.loads(dump_record(bare))) == [
        "record",
        "provider",
        "account",
        "scope",
        "code",
        "reason",
        "at",
    ]
    failed = Evidence(call="s3:ListBuckets", at=at, attributes=[], response={"body": "<x"}, error="bad")
    gap = bare.model_copy(update={"evidence": [failed]})
    line = dump_record(gap)
    assert json.loads(line)["evidence"][0]["response"] == {"body": "<x"}
    again = parse_record(line, "test")
    assert isinstance(again, CoverageGap) and again.evidence == [failed]
    assert parse_record(dump_record(bare), "test") == bare
