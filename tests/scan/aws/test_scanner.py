"""AWS scanner against moto in-process: every case of the issue, one bucket per case."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ReadTimeoutError
from moto.core import set_initial_no_auth_action_count

from auditor.errors import InputError
from auditor.model import UnknownCode
from auditor.policy.zones import ZoneCatalog
from auditor.scan import aws as aws_module
from auditor.scan.aws_accounts import AccountSource, read_accounts_file
from auditor.scan.base import AttributeNeeds

from .estate import (
    ACCOUNT,
    EU,
    Estate,
    Throttle,
    answer_with,
    build_small_estate,
    describe_key_json,
    http_answer,
    location_xml,
)
from .helpers import IAM_SETUP_ACTIONS, ScanResult, restricted_user, run

pytestmark = pytest.mark.usefixtures("aws")


def small_estate() -> Estate:
    return build_small_estate(boto3.Session(region_name="us-east-1"))


# --- what moto gets wrong, answered as AWS does ---------------------------------------------------


def test_aws_s3_alias_key_manager_quirk(catalog: ZoneCatalog) -> None:
    # moto reports KeyManager=CUSTOMER for aws/s3 (real S3: AWS): fix the backend as AWS would answer.
    from moto.kms.models import kms_backends

    kms = boto3.client("kms", region_name=EU)
    key_arn = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["Arn"]
    kms_backends[ACCOUNT][EU].keys[key_arn.rsplit("/", 1)[1]].key_manager = "AWS"
    s3 = boto3.client("s3", region_name=EU)
    s3.create_bucket(Bucket="by-managed-arn", CreateBucketConfiguration={"LocationConstraint": EU})
    s3.put_bucket_encryption(
        Bucket="by-managed-arn",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}
            ]
        },
    )
    record = run(catalog).buckets["by-managed-arn"]
    assert record.encryption is not None
    assert (record.encryption.key_management, record.encryption.key_id) == ("provider-managed", key_arn)
    assert record.encryption.key_location is None


def test_legacy_eu_location_constraint(catalog: ZoneCatalog) -> None:
    # moto refuses the legacy `EU` constraint; real S3 still returns it for old eu-west-1 buckets.
    boto3.client("s3", region_name=EU).create_bucket(
        Bucket="legacy-eu", CreateBucketConfiguration={"LocationConstraint": EU}
    )

    def hook(session: boto3.Session) -> None:
        answer_with(
            session,
            "s3.GetBucketLocation",
            lambda request: (
                http_answer(request, 200, location_xml("EU")) if "legacy-eu" in request.url else None
            ),
        )

    location = run(catalog, hook=hook).buckets["legacy-eu"].location
    assert location is not None and (location.raw, location.primary, location.regions) == ("EU", EU, [EU])


def test_list_buckets_full_page_without_token_is_relisted(
    catalog: ZoneCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto truncates at MaxBuckets without a ContinuationToken: the scanner must not lose the rest.
    monkeypatch.setattr(aws_module, "LIST_PAGE_SIZE", 3)
    s3 = boto3.client("s3", region_name="us-east-1")
    names = [f"page-bucket-{i}" for i in range(7)]
    for name in names:
        s3.create_bucket(Bucket=name)
    result = run(catalog, AttributeNeeds(frozenset({"tags.owner"})))
    assert sorted(result.buckets) == names
    assert result.calls["s3:ListBuckets"] == 2


# --- failures: denied, throttled, timeouts --------------------------------------------------------


def scan_as_denied(
    deny: dict[str, str], monkeypatch: pytest.MonkeyPatch, scan: Callable[[], ScanResult]
) -> ScanResult:
    """Build the small estate, then scan it as an IAM user whose policy adds the `deny` statement."""

    @set_initial_no_auth_action_count(IAM_SETUP_ACTIONS)
    def scenario() -> ScanResult:
        for name, value in restricted_user([deny]).items():
            monkeypatch.setenv(name, value)
        small_estate()
        return scan()

    return scenario()


def test_access_denied_on_one_call_for_one_bucket(
    catalog: ZoneCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny = {"Effect": "Deny", "Action": "s3:GetBucketPolicy", "Resource": "arn:aws:s3:::tls-full-deny"}

    result = scan_as_denied(deny, monkeypatch, lambda: run(catalog))
    denied = result.buckets["tls-full-deny"]
    assert denied.transport is not None
    assert denied.transport.plaintext_refused is None and denied.transport.bucket_policy is None
    for path in ("transport.bucket_policy", "transport.plaintext_refused"):
        assert denied.unknown[path].code == UnknownCode.ACCESS_DENIED
        assert "s3:GetBucketPolicy" in denied.unknown[path].reason
    assert denied.encryption is not None and denied.encryption.enabled is True  # the other calls were read
    other = result.buckets["tls-boolifexists"]
    assert other.transport is not None and other.transport.plaintext_refused is True and other.unknown == {}


def test_describe_key_denied_leaves_key_facts_unknown(
    catalog: ZoneCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny = {"Effect": "Deny", "Action": "kms:DescribeKey", "Resource": "*"}

    record = scan_as_denied(deny, monkeypatch, lambda: run(catalog)).buckets["sse-kms-cmk"]
    assert record.encryption is not None
    assert record.encryption.enabled is True and record.encryption.key_management is None
    assert record.unknown["encryption.key_management"].code == UnknownCode.ACCESS_DENIED
    assert record.unknown["encryption.key_location"].code == UnknownCode.ACCESS_DENIED


def test_throttling_answered_by_retries(catalog: ZoneCatalog) -> None:
    small_estate()
    throttle = Throttle(3)
    result = run(catalog, hook=lambda s: answer_with(s, "s3.GetBucketTagging", throttle), max_attempts=5)
    assert result.buckets["tags-variants"].tags is not None
    assert all("tags" not in r.unknown for r in result.buckets.values())
    assert throttle.sent == len(result.buckets) + 3  # three retried attempts, one logical call each
    assert result.calls["s3:GetBucketTagging"] == len(result.buckets)


def test_throttling_after_retries_is_unknown(catalog: ZoneCatalog) -> None:
    small_estate()
    throttle = Throttle(10_000)
    result = run(catalog, hook=lambda s: answer_with(s, "s3.GetBucketTagging", throttle), max_attempts=2)
    record = result.buckets["tags-variants"]
    assert record.tags is None
    assert record.unknown["tags"].code == UnknownCode.THROTTLED
    assert record.unknown["tags"].reason.startswith("SlowDown:")
    assert record.encryption is not None  # only the throttled call is unknown
    assert throttle.sent == 2 * len(result.buckets)


def test_timeout_is_unknown(catalog: ZoneCatalog) -> None:
    small_estate()

    def timeout(request: AWSPreparedRequest) -> AWSResponse:
        raise ReadTimeoutError(endpoint_url=request.url)

    result = run(catalog, hook=lambda s: answer_with(s, "s3.GetBucketEncryption", timeout), max_attempts=1)
    record = result.buckets["tls-full-deny"]
    assert record.encryption is None
    assert record.unknown["encryption"].code == UnknownCode.TIMEOUT


def test_location_denied_leaves_location_unknown(
    catalog: ZoneCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    deny = {"Effect": "Deny", "Action": "s3:GetBucketLocation", "Resource": "arn:aws:s3:::sydney-bucket"}

    result = scan_as_denied(deny, monkeypatch, lambda: run(catalog, regions=["ap-southeast-2"]))
    # Its region is unknown, so --regions cannot exclude it: it is scanned, never silently dropped.
    record = result.buckets["sydney-bucket"]
    assert record.location is None and record.unknown["location"].code == UnknownCode.ACCESS_DENIED
    assert list(result.buckets) == ["sydney-bucket"]


def test_public_access_block(catalog: ZoneCatalog) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="blocked")
    s3.create_bucket(Bucket="open")
    flags = dict.fromkeys(aws_module.PUBLIC_ACCESS_FLAGS, True)
    s3.put_public_access_block(Bucket="blocked", PublicAccessBlockConfiguration=flags)
    result = run(catalog, AttributeNeeds(frozenset({"access"})))
    blocked, open_ = result.buckets["blocked"].access, result.buckets["open"].access
    assert blocked is not None and blocked.public_access_blocked is True and blocked.detail == flags
    assert open_ is not None and (open_.public_access_blocked, open_.detail) == (False, None)
    assert "s3:GetBucketTagging" not in result.calls


# --- accounts -------------------------------------------------------------------------------------


READ_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:*"], "Resource": "*"}],
}


def _bucket_in(account: str, name: str) -> None:
    sts = boto3.client("sts", region_name="us-east-1")
    credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/Auditor", RoleSessionName="setup")[
        "Credentials"
    ]
    boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).create_bucket(Bucket=name)


def test_account_whose_role_cannot_be_assumed(catalog: ZoneCatalog, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = {
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": "arn:aws:iam::222222222222:role/Auditor",
    }

    # Setup: the user, then, still unauthenticated, a bucket and the role (with its policy) in 222222222222.
    @set_initial_no_auth_action_count(IAM_SETUP_ACTIONS + 5)
    def scenario() -> ScanResult:
        keys = restricted_user([allowed])
        _bucket_in("222222222222", "in-222")
        iam_222 = _iam_in("222222222222")
        iam_222.create_role(RoleName="Auditor", AssumeRolePolicyDocument="{}")
        iam_222.put_role_policy(RoleName="Auditor", PolicyName="read", PolicyDocument=json.dumps(READ_ALL))
        for name, value in keys.items():
            monkeypatch.setenv(name, value)
        source = AccountSource(role="Auditor", accounts=("222222222222", "333333333333"))
        return run(catalog, AttributeNeeds(frozenset({"tags.owner"})), source=source)

    result = scenario()
    (gap,) = result.gaps
    assert (gap.account, gap.scope, gap.code) == ("333333333333", "account", UnknownCode.ACCESS_DENIED)
    assert "sts:AssumeRole" in gap.reason
    assert list(result.buckets) == ["in-222"] and result.buckets["in-222"].account == "222222222222"


def _iam_in(account: str) -> Any:
    credentials = boto3.client("sts", region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/Setup", RoleSessionName="setup"
    )["Credentials"]
    return boto3.client(
        "iam",
        region_name="us-east-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def test_organization_accounts(catalog: ZoneCatalog) -> None:
    org = boto3.client("organizations", region_name="us-east-1")
    org.create_organization(FeatureSet="ALL")
    member = org.create_account(AccountName="member", Email="m@example.com")["CreateAccountStatus"][
        "AccountId"
    ]
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="in-management")
    _bucket_in(member, "in-member")
    source = AccountSource(role="OrganizationAccountAccessRole", organization=True)
    result = run(catalog, AttributeNeeds(frozenset({"tags.owner"})), source=source)
    assert result.gaps == []
    assert {n: r.account for n, r in result.buckets.items()} == {
        "in-management": ACCOUNT,
        "in-member": member,
    }
    assert result.calls["organizations:ListAccounts"] == 1
    assert result.calls["sts:AssumeRole"] == 1  # the management account is scanned with its own credentials


def test_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.txt"
    path.write_text("# prod\n111111111111\n\n222222222222  # eu\n111111111111\n")
    assert read_accounts_file(path) == ("111111111111", "222222222222")
    path.write_text("11111111111x\n")
    with pytest.raises(InputError, match=r"accounts.txt:1: '11111111111x' is not a 12-digit"):
        read_accounts_file(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accounts": ("111111111111",)}, "need --role-arn"),
        ({"role": "Auditor", "accounts": ("1" * 12,), "organization": True}, "not both"),
        ({"role": "Auditor"}, "needs --accounts or --organization"),
        ({"role": "arn:aws:iam::111111111111:role/A", "organization": True}, "needs '{account_id}'"),
        ({"role": "Auditor", "organization": True, "profiles": ("a", "b")}, "at most one --profile"),
    ],
)
def test_account_source_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("{", r"\{").replace("}", r"\}")):
        AccountSource(**kwargs)


def test_recorded_key_manager_answer(catalog: ZoneCatalog) -> None:
    # The same quirk as above through a recorded DescribeKey answer (the way the server tests do it).
    estate = small_estate()

    def hook(session: boto3.Session) -> None:
        answer_with(
            session,
            "kms.DescribeKey",
            lambda request: http_answer(request, 200, describe_key_json(estate.keys["eu"], "AWS")),
        )

    record = run(catalog, AttributeNeeds(frozenset({"encryption.key_management"})), hook=hook).buckets[
        "sse-kms-cmk"
    ]
    assert record.encryption is not None and record.encryption.key_management == "provider-managed"
