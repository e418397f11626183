"""AWS scanner against broken answers: every call it makes x every fault of tests/fault_proxy.py.

moto_server answers; the fault-injecting proxy breaks the answers of one operation. A session hook
routes only that operation to the proxy (it rewrites the request's URL in botocore's
``before-send``; the request still goes over HTTP and the proxy relays moto's real answer before
breaking it), so the other calls of the same scan, STS and KMS included, are answered normally.

Every case asserts: no traceback, no lost bucket (in the inventory, or covered by a gap), no
`pass` for a policy that reads the broken attribute (`auditor check` on the written inventory),
the attribute unknown with the right code, and the raw answer in the evidence, bounded.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import pytest
from botocore.awsrequest import AWSPreparedRequest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.inventory import dump_record, read_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws_accounts import AccountSource
from auditor.scan.aws_calls import BODY_LIMIT
from auditor.scan.base import AttributeNeeds
from tests.fault_proxy import FAULT_KINDS, GARBLE, FaultKind, FaultProxy, FaultRule, fault_proxy

from .conftest import MOTO_SERVER, _free_port, _wait_ready, fake_aws_env
from .estate import ACCOUNT, EU, SLOW_DOWN, answer_with, arn, http_answer, list_buckets_xml, location_xml
from .helpers import ScanResult, run, storage_policies

TAGGED = "fa-eu"  # eu-west-1: CMK, TLS-deny policy, opt-in without consent, replicates to the US
DEST = "fa-dest-us"  # us-east-1: the replication destination
BUCKETS = (TAGGED, DEST)
TIMEOUTS = {"connect_timeout": 0.5, "read_timeout": 0.4}
BODY_FAULTS: tuple[FaultKind, ...] = ("empty", "truncated", "garbled", "short_read")

# Each call the scanner makes -> the attribute it feeds on TAGGED, and the findings of TAGGED that
# must become `error` when it breaks (their status with a good answer is in GOOD_STATUSES).
FEEDS: dict[str, tuple[str, dict[str, str]]] = {
    "s3.GetBucketLocation": ("location", {"residency.data-in-zone": "error"}),
    "s3.GetBucketReplication": ("location.replicas", {"residency.data-in-zone": "error"}),
    "s3.HeadBucket": ("location.regions", {"residency.data-in-zone": "error"}),
    "s3.GetBucketEncryption": (
        "encryption",
        {
            "encryption.at-rest-aes256": "error",
            "encryption.customer-managed-key": "error",
            "residency.key-in-zone": "error",
        },
    ),
    "kms.DescribeKey": (
        "encryption.key_management",
        {"encryption.customer-managed-key": "error", "residency.key-in-zone": "error"},
    ),
    "s3.GetBucketPolicy": ("transport.bucket_policy", {"transport.plaintext-refused": "error"}),
    "s3.GetBucketTagging": (
        "tags",
        {"training.ai-training-consent": "error", "encryption.customer-managed-key": "error"},
    ),
    "s3.GetPublicAccessBlock": ("access", {}),  # no shipped policy reads `access`
}
_LOCATION = frozenset({"location.regions"})
_ENCRYPTION = frozenset(
    {"encryption.enabled", "encryption.algorithm", "encryption.key_management", "encryption.key_id"}
    | {"encryption.key_location", "tags.data-class"}
)
# What the matrix scans read for each call: the attributes of the findings it breaks (fewer calls,
# so 70 scans stay fast); `test_one_broken_call_leaves_the_rest_readable` reads everything.
NEEDS: dict[str, AttributeNeeds] = {
    "s3.GetBucketLocation": AttributeNeeds(_LOCATION),
    "s3.GetBucketReplication": AttributeNeeds(_LOCATION),
    "s3.HeadBucket": AttributeNeeds(_LOCATION),
    "s3.GetBucketEncryption": AttributeNeeds(_ENCRYPTION),
    "kms.DescribeKey": AttributeNeeds(_ENCRYPTION),
    "s3.GetBucketPolicy": AttributeNeeds(frozenset({"transport.plaintext_refused"})),
    "s3.GetBucketTagging": AttributeNeeds(_ENCRYPTION | {"tags.ai-training", "tags.ai-training-consent"}),
    "s3.GetPublicAccessBlock": AttributeNeeds(frozenset({"access"})),
}
GOOD_STATUSES = {
    "residency.data-in-zone": "fail",  # the replica in us-east-1
    "residency.key-in-zone": "pass",
    "encryption.at-rest-aes256": "pass",
    "encryption.customer-managed-key": "pass",
    "transport.plaintext-refused": "pass",
    "training.ai-training-consent": "fail",
}
FAULT_CODE = {
    "empty": UnknownCode.ERROR,
    "truncated": UnknownCode.ERROR,
    "garbled": UnknownCode.ERROR,
    "short_read": UnknownCode.ERROR,
    "reset": UnknownCode.ERROR,
    "hang": UnknownCode.TIMEOUT,
    "status": UnknownCode.THROTTLED,
}


# --- the estate, the proxy, routing -----------------------------------------------------------------


def build_fault_estate() -> str:
    """Two buckets covering every call; returns the CMK's ARN."""
    session = boto3.Session(region_name="us-east-1")
    key = session.client("kms", region_name=EU).create_key(Description="eu cmk")["KeyMetadata"]["Arn"]
    us = session.client("s3", region_name="us-east-1")
    us.create_bucket(Bucket=DEST)
    us.put_bucket_versioning(Bucket=DEST, VersioningConfiguration={"Status": "Enabled"})
    eu = session.client("s3", region_name=EU)
    eu.create_bucket(Bucket=TAGGED, CreateBucketConfiguration={"LocationConstraint": EU})
    eu.put_bucket_versioning(Bucket=TAGGED, VersioningConfiguration={"Status": "Enabled"})
    eu.put_bucket_replication(
        Bucket=TAGGED,
        ReplicationConfiguration={
            "Role": f"arn:aws:iam::{ACCOUNT}:role/replication",
            "Rules": [{"ID": "all", "Status": "Enabled", "Prefix": "", "Destination": {"Bucket": arn(DEST)}}],
        },
    )
    eu.put_bucket_encryption(
        Bucket=TAGGED,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
            ]
        },
    )
    eu.put_bucket_policy(Bucket=TAGGED, Policy=json.dumps(_large_tls_policy()))
    eu.put_bucket_tagging(
        Bucket=TAGGED,
        Tagging={
            "TagSet": [
                {"Key": "ai-training", "Value": "opt-in"},
                {"Key": "data-class", "Value": "restricted"},
            ]
        },
    )
    eu.put_public_access_block(
        Bucket=TAGGED,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    return str(key)


def _large_tls_policy() -> dict[str, Any]:
    # Larger than 2 x BODY_LIMIT, so even half of it (a truncated answer) must be cut in the evidence.
    deny = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn(TAGGED), f"{arn(TAGGED)}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    readers = [
        {
            "Sid": f"Reader{i:03d}",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/reader-{i:03d}"},
            "Action": "s3:GetObject",
            "Resource": f"{arn(TAGGED)}/shared/{i:03d}/*",
        }
        for i in range(30)
    ]
    return {"Version": "2012-10-17", "Statement": [deny, *readers]}


@pytest.fixture(scope="module")
def estate_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server of this module's own holding the fault estate, built once and only read.

    Its own server, because the shared one is reset by every test that uses `moto_server`.
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, process, time.monotonic() + 30)
        with pytest.MonkeyPatch.context() as monkeypatch:
            fake_aws_env(monkeypatch, tmp_path_factory.mktemp("aws-faults"))
            monkeypatch.setenv("AWS_ENDPOINT_URL", url)
            build_fault_estate()
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def upstream(estate_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fault estate's server, with every boto3 client pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", estate_url)
    return estate_url


@pytest.fixture(scope="module")
def estate_proxy(estate_url: str) -> Iterator[FaultProxy]:
    """One fault proxy in front of the fault estate for the module (stopping one takes ~0.5 s)."""
    with fault_proxy(estate_url, hang_seconds=5) as started:
        yield started


@pytest.fixture
def proxy(estate_proxy: FaultProxy, upstream: str) -> Iterator[FaultProxy]:
    """The estate's fault proxy, without rules or counts."""
    estate_proxy.clear()
    yield estate_proxy
    estate_proxy.clear()


@pytest.fixture
def server_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the shared moto_server (for tests that build their own state)."""
    with fault_proxy(moto_server, hang_seconds=5) as started:
        yield started


def route(proxy: FaultProxy, upstream: str, *events: str) -> Callable[[boto3.Session], None]:
    """A session hook sending only the requests of `events` (e.g. 's3.GetBucketTagging') via `proxy`."""

    def reroute(request: AWSPreparedRequest, **_: Any) -> None:
        request.url = request.url.replace(upstream, proxy.url, 1)

    def hook(session: boto3.Session) -> None:
        # One botocore data loader for every session: loading the service models again for each
        # of the ~100 scans of this module costs more than the scans.
        session._session.register_component("data_loader", _LOADER)
        for event in events:
            session.events.register(f"before-send.{event}", reroute)

    return hook


_LOADER = botocore.loaders.create_loader()


def check_statuses(tmp_path: Path, result: ScanResult) -> dict[tuple[str, str], str]:
    """`auditor check` (zone eu) on the scan's records: status by (policy, bucket)."""
    inventory = tmp_path / "faults.jsonl"
    with inventory.open("wb") as handle:
        for record in [*result.buckets.values(), *result.gaps]:
            handle.write(dump_record(record))
    outcome = CliRunner().invoke(
        cli,
        ["check", "--inventory", str(inventory), "--param", "zone=eu", "--format", "json"],
        catch_exceptions=False,
    )
    assert outcome.exit_code in (0, 1, 3), outcome.output
    document = json.loads(outcome.stdout)
    return {
        (f["policy_id"], f["resource"]["id"].rsplit(":", 1)[-1]): f["status"] for f in document["findings"]
    }


def assert_nothing_lost(result: ScanResult) -> None:
    """Every bucket of the estate is in the inventory, or a gap covers its account's listing."""
    covered = {gap.account for gap in result.gaps if gap.scope in ("account", "buckets")}
    for name in BUCKETS:
        assert name in result.buckets or covered, f"{name} lost without a gap"


def assert_bounded_evidence(record: StorageResource, call: str, fault: FaultKind) -> None:
    """The evidence of a malformed answer carries its raw body, cut at BODY_LIMIT."""
    broken = [e for e in record.evidence if e.call == call and e.error]
    assert broken, f"no failed {call} evidence on {record.name}"
    for evidence in broken:
        assert evidence.error is not None and evidence.error.startswith("malformed answer")
        assert isinstance(evidence.response, dict)
        assert len(evidence.response["body"]) <= BODY_LIMIT
        assert evidence.response["body_truncated"] is (evidence.response["body_bytes"] > BODY_LIMIT)
        assert len(evidence.model_dump_json()) < 4 * BODY_LIMIT
        if fault == "garbled":
            assert evidence.response["body"] == GARBLE.decode("utf-8", errors="replace")
        if fault == "empty":
            assert (evidence.response["body"], evidence.response["body_bytes"]) == ("", 0)


# --- every call x every fault -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("event", sorted(FEEDS))
def test_broken_answer_to_one_call(
    event: str, fault: FaultKind, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog, tmp_path: Path
) -> None:
    proxy.add(FaultRule(fault, status=503, body=b""))
    started = time.monotonic()
    result = run(catalog, NEEDS[event], hook=route(proxy, upstream, event), max_attempts=1, **TIMEOUTS)
    assert time.monotonic() - started < 20
    assert proxy.hits[0] >= 1, f"{event} never reached the proxy"
    assert result.gaps == [] and sorted(result.buckets) == sorted(BUCKETS)

    record = result.buckets[TAGGED]
    path, broken = FEEDS[event]
    statuses = check_statuses(tmp_path, result)
    if event == "s3.HeadBucket" and fault in BODY_FAULTS:
        # A HEAD answer has no body to break: the proxy relays its status and headers intact.
        assert record.location is not None and record.location.regions == [EU, "us-east-1"]
        assert path not in record.unknown
        assert statuses[("residency.data-in-zone", TAGGED)] == "fail"
        return
    assert_broken(record, event, fault)
    for policy, status in broken.items():
        assert statuses[(policy, TAGGED)] == status, (policy, statuses)


def assert_broken(record: StorageResource, event: str, fault: FaultKind) -> None:
    """The attribute `event` feeds is unknown with the fault's code, and the evidence says why."""
    path = FEEDS[event][0]
    unknown = record.unknown_reason(path)
    assert unknown is not None and unknown.code == FAULT_CODE[fault], record.unknown
    service, operation = event.split(".")
    assert f"{service}:{operation}" in unknown.reason
    if fault in BODY_FAULTS:
        assert "malformed answer" in unknown.reason
        assert_bounded_evidence(record, f"{service}:{operation}", fault)


@pytest.mark.parametrize(
    ("event", "fault"),
    [
        ("s3.GetBucketTagging", "empty"),
        ("s3.GetBucketPolicy", "truncated"),
        ("kms.DescribeKey", "garbled"),
        ("s3.GetBucketReplication", "hang"),
        ("s3.GetBucketEncryption", "short_read"),
    ],
)
def test_one_broken_call_leaves_the_rest_readable(
    event: str, fault: FaultKind, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog, tmp_path: Path
) -> None:
    proxy.add(FaultRule(fault))
    result = run(catalog, hook=route(proxy, upstream, event), max_attempts=1, **TIMEOUTS)
    record = result.buckets[TAGGED]
    assert_broken(record, event, fault)
    statuses = check_statuses(tmp_path, result)
    broken = FEEDS[event][1]
    expected = {policy: broken.get(policy, status) for policy, status in GOOD_STATUSES.items()}
    assert {policy: statuses[(policy, TAGGED)] for policy in GOOD_STATUSES} == expected


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize(
    ("event", "scope"), [("s3.ListBuckets", "buckets"), ("sts.GetCallerIdentity", "account")]
)
def test_broken_listing_is_a_gap(
    event: str, scope: str, fault: FaultKind, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog
) -> None:
    proxy.add(FaultRule(fault, status=503))
    result = run(catalog, hook=route(proxy, upstream, event), max_attempts=1, **TIMEOUTS)
    assert result.buckets == {}
    (gap,) = result.gaps
    # The account id is known once STS answered; before that, the credentials are named.
    expected_account = ACCOUNT if scope == "buckets" else "profile:default"
    assert (gap.account, gap.scope, gap.code) == (expected_account, scope, FAULT_CODE[fault])
    service, operation = event.split(".")
    assert gap.reason.endswith(f"({service}:{operation})")
    if fault in BODY_FAULTS:
        assert gap.reason.startswith("malformed answer")
        assert len(gap.reason) < 1000
    assert_nothing_lost(result)


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("event", ["sts.AssumeRole", "organizations.ListAccounts"])
def test_broken_account_calls_are_gaps(
    event: str, fault: FaultKind, server_proxy: FaultProxy, moto_server: str, catalog: ZoneCatalog
) -> None:
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=DEST)
    if event == "sts.AssumeRole":
        source = AccountSource(role="Auditor", accounts=("222222222222",))
        expected = ("222222222222", "account")
    else:
        boto3.client("organizations", region_name="us-east-1").create_organization(FeatureSet="ALL")
        source = AccountSource(role="OrganizationAccountAccessRole", organization=True)
        expected = (ACCOUNT, "organization")
    server_proxy.add(FaultRule(fault, status=503))
    result = run(
        catalog,
        AttributeNeeds(frozenset({"tags.owner"})),
        hook=route(server_proxy, moto_server, event),
        source=source,
        max_attempts=1,
        **TIMEOUTS,
    )
    (gap,) = result.gaps
    assert (gap.account, gap.scope, gap.code) == (*expected, FAULT_CODE[fault])
    assert event.replace(".", ":") in gap.reason
    assert result.buckets == {}  # the management account's bucket is behind the failed listing


# --- retries ------------------------------------------------------------------------------------------


# Throttling answers as each protocol words them (S3 rest-xml, KMS json, STS query).
THROTTLED_BODIES = {
    "s3": SLOW_DOWN,
    "kms": b'{"__type":"ThrottlingException","message":"Rate exceeded"}',
    "sts": (
        b'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
    ),
}


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("event", ["s3.GetBucketTagging", "kms.DescribeKey", "sts.GetCallerIdentity"])
def test_transient_errors_are_retried(
    event: str, status: int, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog
) -> None:
    body = THROTTLED_BODIES[event.split(".")[0]]
    rule = proxy.add(FaultRule("status", status=status, times=1, body=body, headers={"Retry-After": "0"}))
    result = run(catalog, hook=route(proxy, upstream, event), max_attempts=3, **TIMEOUTS)
    assert proxy.hits_of(rule) == 1
    record = result.buckets[TAGGED]
    assert record.unknown == {} and result.gaps == []
    assert record.tags == {"ai-training": "opt-in", "data-class": "restricted"}
    assert record.encryption is not None and record.encryption.key_location == EU
    # One logical call each (the retry is not counted again), one more request on the wire.
    logical = result.calls[event.replace(".", ":")]
    assert len(proxy.requests) == logical + 1


def test_garbled_s3_answer_once_is_retried(proxy: FaultProxy, upstream: str, catalog: ZoneCatalog) -> None:
    # botocore retries an S3 200 whose body is not XML (it may be a cut stream): a transient fault.
    rule = proxy.add(FaultRule("garbled", times=1))
    result = run(catalog, hook=route(proxy, upstream, "s3.GetBucketTagging"), max_attempts=3, **TIMEOUTS)
    assert proxy.hits_of(rule) == 1 and len(proxy.requests) == len(BUCKETS) + 1
    assert all("tags" not in r.unknown for r in result.buckets.values())


@pytest.mark.parametrize(("status", "code"), [(429, UnknownCode.THROTTLED), (500, UnknownCode.ERROR)])
def test_persistent_errors_after_retries(
    status: int, code: UnknownCode, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog
) -> None:
    proxy.add(FaultRule("status", status=status, headers={"Retry-After": "0"}))
    result = run(catalog, hook=route(proxy, upstream, "s3.GetBucketTagging"), max_attempts=2, **TIMEOUTS)
    assert len(proxy.requests) == 2 * len(BUCKETS)  # every attempt spent
    for record in result.buckets.values():
        assert record.tags is None and record.unknown["tags"].code == code
        assert (
            str(status) in record.unknown["tags"].reason
            and "s3:GetBucketTagging" in record.unknown["tags"].reason
        )


def test_hang_ends_with_timeout(proxy: FaultProxy, upstream: str, catalog: ZoneCatalog) -> None:
    proxy.add(FaultRule("hang"))
    started = time.monotonic()
    result = run(catalog, hook=route(proxy, upstream, "s3.GetBucketPolicy"), max_attempts=2, **TIMEOUTS)
    # Two attempts of 0.4 s each per bucket (plus at most one backoff), not the proxy's 5 s hang.
    assert time.monotonic() - started < 4.5
    record = result.buckets[TAGGED]
    assert record.unknown["transport.bucket_policy"].code == UnknownCode.TIMEOUT
    assert record.unknown["transport.plaintext_refused"].code == UnknownCode.TIMEOUT
    assert record.tags is not None  # the rest of the bucket was read


# --- what an empty answer is not -------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_account_without_buckets_is_not_a_gap(catalog: ZoneCatalog) -> None:
    # `<Buckets/>` is a real account with no bucket: no resource and no gap (an empty BODY is a gap).
    hook = route_to_recorded("s3.ListBuckets", list_buckets_xml([], None))
    result = run(catalog, AttributeNeeds(frozenset({"tags.owner"})), hook=hook)
    assert (result.buckets, result.gaps) == ({}, [])
    plain = run(catalog, AttributeNeeds(frozenset({"tags.owner"})))  # moto's own empty listing
    assert (plain.buckets, plain.gaps) == ({}, [])


@pytest.mark.usefixtures("aws")
def test_location_constraint_element_versus_empty_body(catalog: ZoneCatalog) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="loc-element")
    s3.create_bucket(Bucket="loc-empty")

    def hook(session: boto3.Session) -> None:
        answer_with(
            session,
            "s3.GetBucketLocation",
            lambda r: http_answer(r, 200, location_xml("") if "loc-element" in r.url else b""),
        )

    result = run(catalog, AttributeNeeds(frozenset({"location.primary"})), hook=hook)
    element = result.buckets["loc-element"].location
    assert element is not None and (element.raw, element.primary) == ("", "us-east-1")
    empty = result.buckets["loc-empty"]
    assert empty.location is None
    assert empty.unknown["location"].code == UnknownCode.ERROR
    assert empty.unknown["location"].reason == "malformed answer: empty body (s3:GetBucketLocation)"


def route_to_recorded(event: str, body: bytes) -> Callable[[boto3.Session], None]:
    def hook(session: boto3.Session) -> None:
        answer_with(session, event, lambda r: http_answer(r, 200, body))

    return hook


# --- encryption rules without a default --------------------------------------------------------------

# GetBucketEncryption as real S3 answers for a bucket whose only rule sets BucketKeyEnabled.
RULE_WITHOUT_DEFAULT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Rule><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"
)


@pytest.mark.usefixtures("aws")
def test_encryption_rule_without_default_is_not_configured(catalog: ZoneCatalog, tmp_path: Path) -> None:
    boto3.client("s3", region_name=EU).create_bucket(
        Bucket="bucket-key-only", CreateBucketConfiguration={"LocationConstraint": EU}
    )
    result = run(
        catalog,
        AttributeNeeds(frozenset({"encryption.enabled", "encryption.algorithm"})),
        hook=route_to_recorded("s3.GetBucketEncryption", RULE_WITHOUT_DEFAULT),
    )
    record = result.buckets["bucket-key-only"]
    assert record.encryption is not None
    assert (record.encryption.enabled, record.encryption.algorithm, record.encryption.scheme) == (
        False,
        None,
        None,
    )
    assert "encryption" not in record.unknown
    (evidence,) = [e for e in record.evidence if e.call == "s3:GetBucketEncryption"]
    assert evidence.response["ServerSideEncryptionConfiguration"] == {"Rules": [{"BucketKeyEnabled": True}]}
    assert "2023-01-05" in evidence.response["auditor_note"]
    assert check_statuses(tmp_path, result)[("encryption.at-rest-aes256", "bucket-key-only")] == "fail"


# --- partial knowledge of location.regions ---------------------------------------------------------


def test_replication_unreadable_keeps_the_primary_as_a_known_member(
    proxy: FaultProxy, upstream: str, catalog: ZoneCatalog, tmp_path: Path
) -> None:
    proxy.add(FaultRule("status", status=403, body=_access_denied()))
    result = run(catalog, hook=route(proxy, upstream, "s3.GetBucketReplication"), max_attempts=1)
    record = result.buckets[TAGGED]
    assert record.location is not None
    assert (record.location.regions, record.location.replicas) == ([EU], [])
    regions, replicas = record.unknown["location.regions"], record.unknown["location.replicas"]
    assert (regions.code, regions.partial) == (UnknownCode.ACCESS_DENIED, "members")
    assert (replicas.code, replicas.partial) == (UnknownCode.ACCESS_DENIED, None)
    assert check_statuses(tmp_path, result)[("residency.data-in-zone", TAGGED)] == "error"


def test_unreadable_destination_region_is_a_null_replica(
    proxy: FaultProxy, upstream: str, catalog: ZoneCatalog
) -> None:
    proxy.add(FaultRule("reset"))
    result = run(catalog, hook=route(proxy, upstream, "s3.HeadBucket"), max_attempts=1)
    location = result.buckets[TAGGED].location
    assert location is not None and location.regions == [EU]
    assert [(r.region, r.target) for r in location.replicas] == [(None, arn(DEST))]
    regions = result.buckets[TAGGED].unknown["location.regions"]
    assert (regions.code, regions.partial) == (UnknownCode.ERROR, "members")
    assert "location.replicas" not in result.buckets[TAGGED].unknown


def _access_denied() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
        b"<Message>Access Denied</Message></Error>"
    )


# --- through the CLI: exit codes, no credentials, gap naming -----------------------------------------


def scan_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[Any]]:
    inventory = tmp_path / "cli.jsonl"
    policies = storage_policies(tmp_path / "storage-policies")  # buckets only: no AI listing
    outcome = CliRunner().invoke(
        cli,
        ["scan", "aws", "--output", str(inventory), "--no-progress", "--policies", str(policies), *args],
        env=env,
        catch_exceptions=False,
    )
    return outcome.exit_code, outcome.stderr, list(read_inventory(inventory))


def test_cli_empty_listing_is_incomplete(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add(FaultRule("empty", path=r"^/(\?|$)", method="GET"))
    code, stderr, records = scan_cli(tmp_path, "--max-attempts", "1", env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert code == 3, stderr
    (gap,) = records
    assert isinstance(gap, CoverageGap) and (gap.account, gap.scope) == (ACCOUNT, "buckets")
    assert gap.reason == "malformed answer: empty body (s3:ListBuckets)"
    # The gap keeps the failed call's evidence, raw answer included (bounded).
    (evidence,) = gap.evidence
    assert (evidence.call, evidence.attributes) == ("s3:ListBuckets", ["buckets"])
    assert evidence.response == {"http_status": 200, "body_bytes": 0, "body": "", "body_truncated": False}
    assert evidence.error == "malformed answer: empty body"


@pytest.mark.parametrize("event", ["s3.ListBuckets", "sts.GetCallerIdentity"])
def test_a_listing_gap_keeps_the_raw_answer_as_evidence(
    event: str, proxy: FaultProxy, upstream: str, catalog: ZoneCatalog
) -> None:
    proxy.add(FaultRule("garbled", status=503))
    result = run(catalog, hook=route(proxy, upstream, event), max_attempts=1, **TIMEOUTS)
    (gap,) = result.gaps
    (evidence,) = gap.evidence
    assert evidence.call == event.replace(".", ":") and evidence.error
    raw = evidence.response
    assert raw["http_status"] is not None and raw["body_bytes"] > 0  # S3's garbled 200 reads as 500
    assert len(raw["body"]) <= 4 * BODY_LIMIT
    # and the inventory line carries it
    assert json.loads(dump_record(gap))["evidence"][0]["response"] == raw


def test_cli_empty_tagging_answer_is_unknown_not_untagged(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.add(FaultRule("empty", path=r"\?tagging"))
    code, stderr, records = scan_cli(tmp_path, "--max-attempts", "1", env={"AWS_ENDPOINT_URL_S3": proxy.url})
    assert code == 0, stderr
    by_name = {r.name: r for r in records if isinstance(r, StorageResource)}
    assert sorted(by_name) == sorted(BUCKETS)
    assert by_name[TAGGED].tags is None and by_name[TAGGED].unknown["tags"].code == UnknownCode.ERROR
    (evidence,) = [e for e in by_name[TAGGED].evidence if e.call == "s3:GetBucketTagging"]
    assert evidence.response["body"] == "" and evidence.response["http_status"] == 200


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("upstream", "no_credentials")
@pytest.mark.parametrize(
    ("args", "gaps"),
    [
        ((), [("profile:default", "account")]),
        (("--profile", "audit"), [("profile:audit", "account")]),
        (("--role-arn", "arn:aws:iam::444444444444:role/Auditor"), [("444444444444", "account")]),
        (
            ("--role-arn", "Auditor", "--organization"),
            [("profile:default", "organization")],
        ),
    ],
)
def test_no_credentials_is_a_gap(args: tuple[str, ...], gaps: list[tuple[str, str]], tmp_path: Path) -> None:
    code, stderr, records = scan_cli(tmp_path, *args)
    assert code == 3, stderr
    assert all(isinstance(r, CoverageGap) for r in records)
    assert [(r.account, r.scope) for r in records] == gaps
    assert {r.code for r in records} == {UnknownCode.NO_CREDENTIALS}


@pytest.mark.usefixtures("upstream", "no_credentials")
def test_no_credentials_names_every_listed_account(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("111111111111\n222222222222\n")
    code, _, records = scan_cli(tmp_path, "--role-arn", "Auditor", "--accounts", str(accounts))
    assert code == 3
    assert [(r.account, r.code) for r in records] == [
        ("111111111111", UnknownCode.NO_CREDENTIALS),
        ("222222222222", UnknownCode.NO_CREDENTIALS),
    ]
    assert all(isinstance(r, CoverageGap) and "base credentials profile:default" in r.reason for r in records)
