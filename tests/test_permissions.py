"""`auditor permissions`: the permissions the loaded policies need, from the scanners' call tables.

The AWS output is checked against moto_server with IAM enforcement: a user holding exactly the
generated policy reads every attribute (sufficient), and without any one of its actions at least one
attribute becomes unknown with `access_denied` (minimal).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import hcl2
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws
from moto.iam.policy_validation import IAMPolicyDocumentValidator

from auditor.cli import cli
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.permissions import Grant, PermissionTable, permission_table, permission_tables
from auditor.policy.loader import load_zones, shipped_policies_dir
from auditor.scan.aws import AwsScanner
from auditor.scan.base import AttributeNeeds
from tests.scan.aws.conftest import _free_port, _wait_ready, fake_aws_env, moto_api

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = shipped_policies_dir()
TRAINING = SHIPPED / "training.yaml"
CONTAINERS_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"

# What the shipped policies need, reviewed by hand against each scanner's docs page.
SHIPPED_PERMISSIONS = {
    "aws": [
        # Bedrock and the AI services opt-out policy (docs/scanners/aws-bedrock.md)
        "bedrock:GetAgent",
        "bedrock:GetInferenceProfile",
        "bedrock:GetModelInvocationLoggingConfiguration",
        "bedrock:ListAgents",
        "bedrock:ListInferenceProfiles",
        "ec2:DescribeRegions",
        "kms:DescribeKey",
        "organizations:DescribeEffectivePolicy",
        "s3:GetBucketLocation",
        "s3:GetBucketPolicy",
        "s3:GetBucketTagging",
        "s3:GetEncryptionConfiguration",
        "s3:GetReplicationConfiguration",
        "s3:ListAllMyBuckets",
        "s3:ListBucket",
    ],
    # gcp: the TLS minimum from the org policy; Vertex AI endpoints and the global endpoint's policy
    # (docs/scanners/gcp-vertex.md).
    "gcp": [
        "aiplatform.endpoints.list",
        "aiplatform.locations.list",
        "orgpolicy.policy.get",
        "storage.buckets.get",
        "storage.buckets.list",
    ],
    "azure": [
        "Microsoft.CognitiveServices/accounts/deployments/read",
        "Microsoft.CognitiveServices/accounts/read",
        "Microsoft.KeyVault/managedHSMs/read",
        "Microsoft.KeyVault/vaults/read",
        "Microsoft.Resources/subscriptions/resources/read",
        CONTAINERS_READ,
        "Microsoft.Storage/storageAccounts/encryptionScopes/read",
        "Microsoft.Storage/storageAccounts/read",
    ],
}
# Training policies read tags only: the tag read and the listing.
TRAINING_PERMISSIONS = {
    # aws: training.provider-opt-out lists Bedrock profiles and agents (in the enabled regions) and
    # reads the account's AI services opt-out policy.
    "aws": [
        "bedrock:ListAgents",
        "bedrock:ListInferenceProfiles",
        "ec2:DescribeRegions",
        "organizations:DescribeEffectivePolicy",
        "s3:GetBucketTagging",
        "s3:ListAllMyBuckets",
    ],
    # gcp: the listing carries labels (get: unreachable); training.provider-opt-out lists the
    # Vertex AI locations and endpoints.
    "gcp": [
        "aiplatform.endpoints.list",
        "aiplatform.locations.list",
        "storage.buckets.get",
        "storage.buckets.list",
    ],
    # azure: training.provider-opt-out lists the AI accounts and their deployments too.
    "azure": [
        "Microsoft.CognitiveServices/accounts/deployments/read",
        "Microsoft.CognitiveServices/accounts/read",
        CONTAINERS_READ,
        "Microsoft.Storage/storageAccounts/read",
    ],
}


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["permissions", *args])


def grant(name: str, *paths: Path, options: tuple[str, ...] = ()) -> Grant:
    return permission_table(name).grant(AttributeNeeds.from_policy_paths(list(paths)), options)


# --- the table and its derivation -------------------------------------------------------------------


def test_every_cloud_source_declares_a_table() -> None:
    assert list(permission_tables()) == ["aws", "gcp", "azure", "openai"]
    for name, table in permission_tables().items():
        assert table.calls and "json" in table.formats
        # A cloud writes a read role in Terraform; OpenAI has no role document, only Admin key scopes.
        assert ("terraform" in table.formats) is (name != "openai")
        operations = [call.operation for call in table.calls]
        assert len(operations) == len(set(operations)), "one row per call"


@pytest.mark.parametrize("name", ["aws", "gcp", "azure"])
def test_shipped_policies_need_the_union_the_table_gives(name: str) -> None:
    table = permission_table(name)
    needs = AttributeNeeds.from_policy_paths([SHIPPED])
    # A call serving some kinds counts when a policy is scoped to one and reads what it feeds there.
    union = {
        permission
        for call in table.calls
        if call.holder == "reader"
        and (not call.kinds or any(needs.wants_kind(kind) for kind in call.kinds))
        and (
            call.always
            or any((needs.for_kinds(*call.kinds) if call.kinds else needs).wants(path) for path in call.feeds)
        )
        for permission in call.permissions
    }
    assert grant(name, SHIPPED).permissions() == sorted(union) == SHIPPED_PERMISSIONS[name]


@pytest.mark.parametrize("name", ["aws", "gcp", "azure"])
def test_training_only_policies_need_the_tag_read_and_the_listing(name: str, tmp_path: Path) -> None:
    policies = tmp_path / "training"
    policies.mkdir()
    (policies / "training.yaml").write_text(TRAINING.read_text(encoding="utf-8"), encoding="utf-8")
    assert grant(name, policies).permissions() == TRAINING_PERMISSIONS[name]
    result = invoke(name, "--policies", str(policies))
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    listed = document.get("Statement", [{}])[0].get("Action") or document.get("includedPermissions")
    assert (listed or document.get("Actions")) == TRAINING_PERMISSIONS[name]


def test_a_scan_option_adds_the_calls_it_makes() -> None:
    assert "s3:GetBucketLocation" in grant("aws", TRAINING, options=("regions",)).permissions()
    caller = grant("aws", TRAINING, options=("role-arn", "organization")).permissions("caller")
    assert caller == ["organizations:ListAccounts", "sts:AssumeRole"]
    assert grant("aws", SHIPPED).permissions("caller") == []
    assert "sts:AssumeRole" not in grant("aws", SHIPPED, options=("role-arn",)).permissions()


def test_a_policy_reading_only_identity_needs_only_the_listing(tmp_path: Path) -> None:
    (tmp_path / "names.yaml").write_text(
        "policies:\n"
        "  - id: names.lowercase\n"
        "    title: Names are lower case\n"
        "    description: Bucket names are lower case.\n"
        "    severity: low\n"
        "    condition: {attribute: name, op: matches, value: '^[a-z0-9.-]+$'}\n"
        "    expected: a lower-case name\n",
        encoding="utf-8",
    )
    assert grant("aws", tmp_path).permissions() == ["s3:ListAllMyBuckets"]
    assert grant("gcp", tmp_path).permissions() == ["storage.buckets.list"]


# --- the command and its formats ----------------------------------------------------------------


def test_aws_json_is_a_valid_iam_policy_and_deterministic() -> None:
    first, second = invoke("aws"), invoke("aws", "--policies", str(SHIPPED))
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    document = json.loads(first.output)
    IAMPolicyDocumentValidator(first.output).validate()  # raises on an invalid document
    [statement] = document["Statement"]
    assert document["Version"] == "2012-10-17"
    assert statement["Effect"] == "Allow" and statement["Resource"] == "*"
    assert statement["Action"] == SHIPPED_PERMISSIONS["aws"]
    assert all(re.fullmatch(r"[a-z0-9]+:[A-Za-z]+", action) for action in statement["Action"])


def test_aws_cloudformation_template_creates_the_read_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_env(monkeypatch, tmp_path)
    result = invoke("aws", "--format", "cloudformation")
    assert result.exit_code == 0, result.output
    template = yaml.safe_load(result.output)
    role = template["Resources"]["AuditorReadRole"]
    assert role["Type"] == "AWS::IAM::Role"
    [inline] = role["Properties"]["Policies"]
    assert inline["PolicyDocument"]["Statement"][0]["Action"] == SHIPPED_PERMISSIONS["aws"]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"AWS": {"Ref": "TrustedPrincipalArn"}}
    assert trust["Action"] == "sts:AssumeRole"
    with mock_aws():  # CloudFormation (moto) accepts the template and makes the role with its policy
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(
            StackName="auditor-read",
            TemplateBody=result.output,
            Parameters=[
                {"ParameterKey": "TrustedPrincipalArn", "ParameterValue": "arn:aws:iam::123456789012:root"}
            ],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        iam = boto3.client("iam", region_name="us-east-1")
        assert iam.get_role(RoleName="AuditorRead")["Role"]["RoleName"] == "AuditorRead"
        made = iam.get_role_policy(RoleName="AuditorRead", PolicyName="auditor-read")["PolicyDocument"]
        # moto keeps a CloudFormation-made inline policy as the repr of the template's mapping
        made = ast.literal_eval(made) if isinstance(made, str) else made
        assert made["Statement"][0]["Action"] == SHIPPED_PERMISSIONS["aws"]


@pytest.mark.parametrize(
    ("name", "resources"),
    [
        ("aws", {"aws_iam_role", "aws_iam_role_policy"}),
        ("gcp", {"google_project_iam_custom_role", "google_project_iam_member"}),
        ("azure", {"azurerm_role_definition", "azurerm_role_assignment"}),
    ],
)
def test_terraform_parses_and_holds_the_actions(name: str, resources: set[str]) -> None:
    result = invoke(name, "--format", "terraform")
    assert result.exit_code == 0, result.output
    parsed = hcl2.loads(result.output)
    assert {kind for block in parsed["resource"] for kind in block} == resources
    for permission in SHIPPED_PERMISSIONS[name]:
        assert f'"{permission}"' in result.output
    if name == "gcp":
        [role] = [
            b["google_project_iam_custom_role"]
            for b in parsed["resource"]
            if "google_project_iam_custom_role" in b
        ]
        assert role["auditor_read"]["permissions"] == SHIPPED_PERMISSIONS["gcp"]
    if name == "azure":
        [role] = [b["azurerm_role_definition"] for b in parsed["resource"] if "azurerm_role_definition" in b]
        assert role["auditor_read"]["permissions"][0]["actions"] == SHIPPED_PERMISSIONS["azure"]
    if name == "aws":
        trust = [v for v in parsed["variable"] if "trusted_principal_arn" in v]
        assert trust, "the role trusts a principal given as a variable"


def test_gcp_custom_role_and_azure_role_definition() -> None:
    role = json.loads(invoke("gcp").output)
    assert role["includedPermissions"] == SHIPPED_PERMISSIONS["gcp"] and role["stage"] == "GA"
    definition = json.loads(invoke("azure").output)
    assert definition["IsCustom"] is True
    assert definition["Actions"] == SHIPPED_PERMISSIONS["azure"] and definition["DataActions"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuch",), "makes no cloud API calls"),
        (("gcp", "--format", "cloudformation"), "gcp writes json, terraform, markdown"),
        (("aws", "--scan-option", "nosuch"), "aws has no option 'nosuch'"),
        (("aws", "--policies", "/nonexistent/policies"), "/nonexistent/policies"),
    ],
)
def test_bad_input_is_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


# --- the docs tables are generated --------------------------------------------------------------

BLOCK = re.compile(
    r"<!-- generated by `auditor permissions (?P<name>\w+) --all --format markdown` -->\n"
    r"(?P<table>.*?)<!-- end of generated table -->",
    re.DOTALL,
)


@pytest.mark.parametrize("name", ["aws", "gcp", "azure"])
def test_docs_permission_tables_are_the_generated_ones(name: str) -> None:
    text = (ROOT / "docs" / "scanners" / f"{name}.md").read_text(encoding="utf-8")
    blocks = [m for m in BLOCK.finditer(text) if m.group("name") == name]
    assert len(blocks) == 1, f"docs/scanners/{name}.md has one generated permission table"
    result = invoke(name, "--all", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert blocks[0].group("table") == result.output, (
        f"regenerate: auditor permissions {name} --all --format markdown"
    )


# --- sufficient and minimal under moto's IAM enforcement ----------------------------------------

# moto 5.2's S3 authorizes three bucket reads as s3:ListBucket (GetBucketEncryption,
# GetBucketReplication, GetPublicAccessBlock: their query strings are missing from its ACTION_MAP)
# and HeadBucket as "s3:HeadBucket", which is no IAM action. The enforcing server below corrects
# those four entries to the mapping AWS documents ("Required permissions for Amazon S3 API
# operations", https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html);
# every other call (ListBuckets -> s3:ListAllMyBuckets, GetBucketLocation, GetBucketPolicy,
# GetBucketTagging, kms:DescribeKey) is moto's own mapping. moto allows sts:GetCallerIdentity to
# everyone, as AWS does.
ENFORCING_SERVER = """
import sys
from moto.s3 import responses
responses.ACTION_MAP["BUCKET"]["GET"].update(
    encryption="GetEncryptionConfiguration",
    replication="GetReplicationConfiguration",
    publicAccessBlock="GetBucketPublicAccessBlock",
)
responses.ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
from moto.server import main
main(sys.argv[1:])
"""
EU = "eu-west-1"
ENFORCE, RELAX = b"0", b"1000000000"


@pytest.fixture(scope="module")
def enforcing_moto() -> Iterator[str]:
    """A moto_server of this module's own on a free loopback port, with the S3 mapping corrected."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-c", ENFORCING_SERVER, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, process, time.monotonic() + 30)
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)


def estate_with_every_attribute() -> None:
    """Every attribute present: replication, a customer key, a bucket policy, tags, a public access block."""
    key = boto3.client("kms", region_name=EU).create_key(Description="cmk")["KeyMetadata"]["Arn"]
    s3 = boto3.client("s3", region_name=EU)
    for name, region in (("eu-data", EU), ("eu-copy", "eu-central-1")):
        boto3.client("s3", region_name=region).create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": region}
        )
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(
        Bucket="eu-data",
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [
                {
                    "ID": "all",
                    "Status": "Enabled",
                    "Prefix": "",
                    "Destination": {"Bucket": "arn:aws:s3:::eu-copy"},
                }
            ],
        },
    )
    s3.put_bucket_encryption(
        Bucket="eu-data",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
            ]
        },
    )
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::eu-data", "arn:aws:s3:::eu-data/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    s3.put_bucket_policy(Bucket="eu-data", Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    s3.put_bucket_tagging(
        Bucket="eu-data", Tagging={"TagSet": [{"Key": "data-class", "Value": "restricted"}]}
    )
    flags = dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    s3.put_public_access_block(Bucket="eu-data", PublicAccessBlockConfiguration=flags)


def _scan(needs: AttributeNeeds) -> tuple[list[StorageResource], list[CoverageGap]]:
    scanner = AwsScanner(needs, load_zones([]), 4, max_attempts=1)
    records = list(scanner.scan())
    return (
        [r for r in records if isinstance(r, StorageResource)],
        [r for r in records if isinstance(r, CoverageGap)],
    )


def _denied(resources: list[StorageResource], gaps: list[CoverageGap]) -> list[str]:
    found = [f"{g.account} {g.scope}" for g in gaps if g.code is UnknownCode.ACCESS_DENIED]
    for resource in resources:
        found += [
            f"{resource.name} {p}" for p, u in resource.unknown.items() if u.code is UnknownCode.ACCESS_DENIED
        ]
    return found


@pytest.mark.parametrize("needs_of", ["shipped policies", "every attribute"])
def test_generated_aws_policy_is_sufficient_and_minimal(
    needs_of: str, enforcing_moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", enforcing_moto)
    moto_api(enforcing_moto, "reset")
    moto_api(enforcing_moto, "reset-auth", RELAX, "text/plain")
    table: PermissionTable = permission_table("aws")
    needs = (
        AttributeNeeds.from_policy_paths([SHIPPED])
        if needs_of == "shipped policies"
        else AttributeNeeds.everything()
    )
    # Buckets only: moto implements no Bedrock listing. The AI actions are proven sufficient and
    # minimal against the recorded Bedrock server's own IAM check (tests/scan/aws/test_ai.py).
    bucket_paths = needs.for_kinds("bucket").paths
    needs = AttributeNeeds(bucket_paths, {"bucket": bucket_paths})
    generated = table.grant(needs)
    actions = generated.permissions()
    estate_with_every_attribute()
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="auditor")
    keys = iam.create_access_key(UserName="auditor")["AccessKey"]

    def scan_with(allowed: list[str]) -> tuple[list[StorageResource], list[CoverageGap]]:
        moto_api(enforcing_moto, "reset-auth", RELAX, "text/plain")
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}],
        }
        iam.put_user_policy(
            UserName="auditor", PolicyName="auditor-read", PolicyDocument=json.dumps(document)
        )
        moto_api(enforcing_moto, "reset-auth", ENFORCE, "text/plain")
        with monkeypatch.context() as user:
            user.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
            user.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
            try:
                return _scan(needs)
            finally:
                moto_api(enforcing_moto, "reset-auth", RELAX, "text/plain")

    resources, gaps = scan_with(json.loads(table.render(generated, "json"))["Statement"][0]["Action"])
    assert not gaps and sorted(r.name for r in resources) == ["eu-copy", "eu-data"]
    assert _denied(resources, gaps) == []
    assert {p: u for r in resources for p, u in r.unknown.items()} == {}, "every attribute read"
    data = next(r for r in resources if r.name == "eu-data")
    assert data.location is not None and data.location.regions == [EU, "eu-central-1"]
    assert data.encryption is not None and data.encryption.key_location == EU

    for action in actions:
        resources, gaps = scan_with([a for a in actions if a != action])
        assert _denied(resources, gaps), f"without {action} every attribute was still read"
