"""AWS scanner over one estate (one bucket per case of the issue) in moto in-process.

The estate is built once per module; each test scans it with the needs and hooks it is about.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from moto import mock_aws

from auditor.model import UnknownCode
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds

from .conftest import fake_aws_env
from .estate import ACCOUNT, EU, Estate, answer_with, build_estate, http_answer, list_buckets_xml
from .helpers import ScanResult, run

SHIPPED_NEEDS = AttributeNeeds(
    frozenset(
        {
            "location.regions",
            "encryption.enabled",
            "encryption.algorithm",
            "encryption.key_management",
            "encryption.key_id",
            "encryption.key_location",
            "transport.plaintext_refused",
            "transport.min_tls_version",
            "tags.ai-training",
            "tags.ai-training-consent",
            "tags.data-class",
        }
    )
)


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """The estate in a module-wide moto (other tests' mocks never see it)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake_aws_env(monkeypatch, tmp_path_factory.mktemp("aws"))
        with mock_aws():
            yield build_estate(boto3.Session(region_name="us-east-1"))


@pytest.fixture(scope="module")
def full_scan(estate: Estate, catalog: ZoneCatalog) -> ScanResult:
    """The estate scanned with every attribute needed."""
    return run(catalog)


# --- transport ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bucket", "refused", "by", "tls", "tls_by"),
    [
        ("tls-full-deny", True, "bucket-policy:Sid=DenyInsecureTransport", "1.2", "provider-floor"),
        ("tls-boolifexists", True, "bucket-policy:Sid=DenyInsecureTransport", "1.2", "provider-floor"),
        ("tls-putobject-only", False, None, "1.2", "provider-floor"),
        ("tls-one-principal", False, None, "1.2", "provider-floor"),
        ("tls-prefix", False, None, "1.2", "provider-floor"),
        ("tls-version-only", False, None, "1.3", "bucket-policy:Sid=DenyOldTls"),
        ("tls-allow-secure", False, None, "1.2", "provider-floor"),
        ("tls-notprincipal", False, None, "1.2", "provider-floor"),
        ("plain-use1", False, None, "1.2", "provider-floor"),
    ],
)
def test_transport_from_the_bucket_policy(
    full_scan: ScanResult, bucket: str, refused: bool, by: str | None, tls: str, tls_by: str
) -> None:
    record = full_scan.buckets[bucket]
    assert record.transport is not None
    assert record.transport.plaintext_refused is refused
    assert record.transport.plaintext_refused_by == by
    assert record.transport.min_tls_version == tls
    assert record.transport.min_tls_enforced_by == tls_by
    assert record.transport.provider_floor is not None
    assert record.transport.provider_floor.source.startswith("https://aws.amazon.com/blogs/security/")
    assert (record.transport.bucket_policy is None) is (bucket == "plain-use1")
    assert "transport.plaintext_refused" not in record.unknown


# --- encryption -----------------------------------------------------------------------------------


def test_encryption_variants(estate: Estate, full_scan: ScanResult) -> None:
    result = full_scan
    enc = {name: r.encryption for name, r in result.buckets.items()}
    assert enc["sse-s3"] is not None and enc["sse-s3"].model_dump(exclude={"provider_default", "source"}) == {
        "enabled": True,
        "algorithm": "AES256",
        "scheme": "SSE-S3",
        "key_management": "provider-managed",
        "key_id": None,
        "key_location": None,
    }
    cmk = enc["sse-kms-cmk"]
    assert cmk is not None
    assert (cmk.scheme, cmk.algorithm, cmk.key_management) == ("SSE-KMS", "AES256", "customer-managed")
    assert (cmk.key_id, cmk.key_location) == (estate.keys["eu"], EU)
    default = enc["sse-kms-default"]
    assert default is not None
    assert (default.scheme, default.key_management, default.key_id) == ("SSE-KMS", "provider-managed", None)
    alias = enc["sse-kms-aws-alias"]
    assert alias is not None and (alias.key_management, alias.key_id) == ("provider-managed", "alias/aws/s3")
    bare = enc["sse-kms-bare-id"]
    assert bare is not None and bare.key_management == "customer-managed"
    assert bare.key_id == f"arn:aws:kms:{EU}:{ACCOUNT}:key/{estate.keys['eu-bare']}"
    assert bare.key_location == EU
    dsse = enc["sse-dsse-cmk"]
    assert dsse is not None and (dsse.scheme, dsse.key_management) == ("DSSE-KMS", "customer-managed")
    oregon = enc["oregon-cmk"]
    assert oregon is not None and oregon.key_location == "us-west-2"
    # One DescribeKey per distinct key (eu used by two buckets, eu-bare, us): never for aws/s3.
    assert result.calls["kms:DescribeKey"] == 3


def test_no_encryption_configuration_is_explicitly_absent(full_scan: ScanResult) -> None:
    record = full_scan.buckets["plain-use1"]
    assert record.encryption is not None
    assert record.encryption.enabled is False
    assert record.encryption.algorithm is None and record.encryption.provider_default is False
    assert "encryption" not in record.unknown
    (evidence,) = [e for e in record.evidence if e.call == "s3:GetBucketEncryption"]
    assert evidence.error is not None and evidence.error.startswith(
        "ServerSideEncryptionConfigurationNotFoundError"
    )
    assert "default-encryption-faq.html" in evidence.response["auditor_note"]


# --- location and replication ---------------------------------------------------------------------


def test_regions_including_us_east_1(full_scan: ScanResult) -> None:
    buckets = full_scan.buckets
    plain = buckets["plain-use1"].location
    assert plain is not None and (plain.raw, plain.primary, plain.regions) == ("", "us-east-1", ["us-east-1"])
    sydney = buckets["sydney-bucket"].location
    assert sydney is not None and (sydney.raw, sydney.type, sydney.primary) == (
        "ap-southeast-2",
        "region",
        "ap-southeast-2",
    )
    assert buckets["repl-dest-eu"].location is not None
    assert buckets["repl-dest-eu"].location.primary == "eu-central-1"


def test_replication_in_and_out_of_zone(full_scan: ScanResult) -> None:
    buckets = full_scan.buckets
    inside = buckets["repl-in-zone"].location
    assert inside is not None and inside.regions == [EU, "eu-central-1"]
    assert [(r.kind, r.region, r.target) for r in inside.replicas] == [
        ("replication", "eu-central-1", "arn:aws:s3:::repl-dest-eu")
    ]
    outside = buckets["repl-out-of-zone"].location
    assert outside is not None and outside.regions == [EU, "us-east-1"]
    missing = buckets["repl-missing-dest"]
    assert missing.location is not None and missing.location.replicas[0].region is None
    assert missing.unknown["location.regions"].code == UnknownCode.ERROR
    assert "HeadBucket" in missing.unknown["location.regions"].reason
    assert "location.regions" not in buckets["repl-in-zone"].unknown


# --- tags, call budget ----------------------------------------------------------------------------


def test_tag_key_variants(full_scan: ScanResult) -> None:
    record = full_scan.buckets["tags-variants"]
    assert record.tags == {
        "AI_Training": "Opt-In",
        "AI-Training-Consent": "DPA-2025-17",
        "Data_Class": "restricted",
    }
    assert record.normalized_tags == {
        "ai-training": "Opt-In",
        "ai-training-consent": "DPA-2025-17",
        "data-class": "restricted",
    }
    assert full_scan.buckets["plain-use1"].tags == {}


def test_only_tagging_when_policies_read_only_tags(estate: Estate, catalog: ZoneCatalog) -> None:
    needs = AttributeNeeds(frozenset({"tags.ai-training", "tags.ai-training-consent"}))
    result = run(catalog, needs)
    n = len(estate.buckets)
    assert result.calls == {"sts:GetCallerIdentity": 1, "s3:ListBuckets": 1, "s3:GetBucketTagging": n}
    record = result.buckets["tags-variants"]
    assert record.tags is not None and record.location is None and record.encryption is None
    assert record.transport is None and record.unknown == {}
    assert [e.call for e in record.evidence] == ["s3:GetBucketTagging"]


def test_four_calls_per_bucket_when_list_buckets_gives_the_region(
    estate: Estate, catalog: ZoneCatalog
) -> None:
    # Real S3's ListBuckets pages with a ContinuationToken and names each bucket's region; moto does
    # neither, so the listing is a recorded answer over the buckets moto holds.
    regions = {name: run_region for name, run_region in _regions_of(estate.buckets)}
    entries = sorted(regions.items())
    pages = [entries[:10], entries[10:]]

    def listing(request: AWSPreparedRequest) -> AWSResponse:
        second = "continuation-token=page2" in request.url
        return http_answer(
            request, 200, list_buckets_xml(pages[1] if second else pages[0], None if second else "page2")
        )

    result = run(catalog, SHIPPED_NEEDS, hook=lambda s: answer_with(s, "s3.ListBuckets", listing))
    assert sorted(result.buckets) == sorted(regions)
    calls = result.calls
    n = len(regions)
    assert calls["s3:ListBuckets"] == 2
    assert "s3:GetBucketLocation" not in calls
    per_bucket = sum(v for k, v in calls.items() if k.startswith("s3:Get"))
    assert per_bucket == 4 * n
    assert calls["kms:DescribeKey"] == 3
    location = result.buckets["sydney-bucket"].location
    assert location is not None and location.raw == "ap-southeast-2"
    assert result.buckets["sydney-bucket"].evidence[0].call == "s3:ListBuckets"


def _regions_of(buckets: list[str]) -> Iterator[tuple[str, str]]:
    s3 = boto3.client("s3", region_name="us-east-1")
    for name in buckets:
        yield name, s3.head_bucket(Bucket=name)["BucketRegion"]


def test_regions_option_skips_other_regions(estate: Estate, catalog: ZoneCatalog) -> None:
    result = run(catalog, AttributeNeeds(frozenset({"tags.owner"})), regions=["eu-central-1", "us-west-2"])
    assert sorted(result.buckets) == ["oregon-cmk", "repl-dest-eu"]
    assert result.scanner.skipped_by_region == 22
    assert result.buckets["oregon-cmk"].location is None  # located for the filter, not collected
