"""The AWS source: its section of auditor.yaml, its units of work (one per account), its section of
the zone catalog, its registration.

Importing this module imports no AWS SDK: the scanner (`auditor.scan.aws`) is named, not imported,
and listing an organization's accounts imports boto3 only when a plan needs it.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from auditor.model import CoverageGap, ProviderTlsFloor, Transport, UnknownCode
from auditor.policy.zones import ProviderCatalog, ZoneCatalog
from auditor.scan.aws_absent import ABSENT_CODES as ABSENT_CODES  # declared for the reports
from auditor.scan.aws_bucket_policy import apply_bucket_policy
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection

if TYPE_CHECKING:
    from auditor.permissions import CallSpec, Grant

ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


# The TLS minimum AWS enforces on every endpoint, and where that is documented.
TLS_FLOOR = ProviderTlsFloor(
    version="1.2",
    since=date(2023, 12, 31),
    source="https://aws.amazon.com/blogs/security/tls-1-2-required-for-aws-endpoints/",
)
# The four settings of an S3 public access block, as GetPublicAccessBlock names them.
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


class AwsOptions(RetryScopedOptions):
    """`auditor scan aws` options a section may set under `options:` (besides the shared ones)."""

    # The shared retry/timeout settings botocore can honour (retry backoff is botocore's own).
    retry_source: ClassVar[str] = "aws"
    retry_used: ClassVar[frozenset[str]] = frozenset({"max_attempts", "timeout", "connect_timeout"})

    retry_mode: Literal["standard", "adaptive"] = "standard"
    verify_region: bool = False


class AwsCloud(SourceSection):
    """AWS: which accounts to scan. Credentials come from the boto3 chain, never from this file."""

    scan_options_model: ClassVar[type[ScanOptions]] = AwsOptions

    profiles: list[str] = Field(default_factory=list, description="Named profiles to scan.")
    role: str | None = Field(None, description="Role ARN (template with {account_id}) or name to assume.")
    accounts: list[str] = Field(default_factory=list, description="Account ids to assume `role` into.")
    organization: bool = Field(False, description="Assume `role` into every ACTIVE organization account.")
    regions: list[str] = Field(
        default_factory=list, description="Only buckets and Bedrock resources in these regions."
    )

    def check(self) -> None:
        """Options, account ids and region codes as the scanner would refuse them."""
        super().check()
        for account in self.accounts:
            if not ACCOUNT_ID.match(account):
                raise ValueError(f"accounts: '{account}' is not a 12-digit AWS account id")
        for value in self.regions:
            for region in (r.strip().lower() for r in value.split(",") if r.strip()):
                if not REGION_PATTERN.match(region):
                    raise ValueError(f"regions: '{region}' is not an AWS region code such as eu-west-1")

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per account (listed, or of the organization), per profile, or the one role ARN."""
        if self.organization or self.accounts:
            listed = self.accounts if self.accounts else list(self._organization_accounts())
            if not listed:  # never a silent pass: an organization with nothing to scan is a gap
                yield _empty_organization_gap()
            for account in dict.fromkeys(listed):
                if isinstance(account, CoverageGap):
                    yield account
                    continue
                yield account, self.model_copy(update={"accounts": [account], "organization": False})
            return
        if self.role:  # one full role ARN: one account
            yield (self.role.split(":")[4] if self.role.count(":") >= 5 else self.role), self
            return
        for profile in self.profiles or [""]:
            yield profile or "default", self.model_copy(update={"profiles": [profile] if profile else []})

    def _organization_accounts(self) -> Iterator[str | CoverageGap]:
        """The ACTIVE accounts of the organization, listed on the planning host with the base profile."""
        from auditor.scan.aws_accounts import AccountResolver, AccountSource, client_config
        from auditor.scan.base import CallCounter

        source = AccountSource(profiles=tuple(self.profiles), role=self.role, organization=True)
        resolver = AccountResolver(source, client_config(4, "standard", 5, 5.0, 30.0), CallCounter())
        return resolver.organization_account_ids()


class AwsCatalog(ProviderCatalog):
    """The `aws:` section of the zone catalog: regions, and location constraints that are not one."""

    location_aliases: dict[str, str] = Field(default_factory=dict)

    def reference_errors(self) -> Iterator[str]:
        yield from super().reference_errors()
        for alias, target in self.location_aliases.items():
            if target not in self.regions:
                yield f"location alias '{alias}' names unknown region '{target}'"


def _empty_organization_gap() -> CoverageGap:
    return CoverageGap(
        provider="aws",
        account="organization",
        scope="organization",
        code=UnknownCode.ERROR,
        reason="organizations:ListAccounts listed no ACTIVE account",
        at=datetime.now(UTC),
    )


SOURCE = Source(
    name="aws",
    label="AWS",
    section=AwsCloud,
    scan="auditor.scan.aws:scan_section",
    command="auditor.scan.aws:command",
    normalize=apply_bucket_policy,
    order=10,
    hashed_when_unset=True,
    catalog=AwsCatalog,
)


def region_of_location(catalog: ZoneCatalog, raw: str | None) -> str:
    """GetBucketLocation's LocationConstraint to a region: empty is us-east-1, 'EU' eu-west-1."""
    value = raw or ""
    return catalog.section("aws", AwsCatalog).location_aliases.get(value, value.lower() or "us-east-1")


# --- the call table: every API call the scanner makes, what it feeds, the IAM actions it needs -----
# The single source of `auditor permissions aws` and of the table in docs/scanners/aws.md. S3's IAM
# action names differ from some operation names: "Required permissions for Amazon S3 API
# operations", https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html
# (tests/scan/aws/test_permission_table.py checks the table against the scanner's calls).
BUCKET: tuple[str, ...] = ("bucket",)
# The Bedrock kinds listed per region (their listings run in the account's enabled regions).
BEDROCK_REGIONAL: tuple[str, ...] = ("ai-inference-profile", "ai-agent", "ai-invocation-log")
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": "sts:GetCallerIdentity",
        "permissions": (),
        "always": True,
        "when": "once per account session: the account id and the partition of `id`",
        "note": "AWS authorizes it for every identity: "
        "https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html",
    },
    {
        "operation": "sts:AssumeRole",
        "permissions": ("sts:AssumeRole",),
        "options": ("role-arn",),
        "holder": "caller",
        "when": "once per account, on its read role, with the base credentials",
    },
    {
        "operation": "organizations:ListAccounts",
        "permissions": ("organizations:ListAccounts",),
        "options": ("organization",),
        "holder": "caller",
        "when": "once per page of accounts, in the management or delegated administrator account",
    },
    {
        "operation": "s3:ListBuckets",
        "kinds": BUCKET,
        "permissions": ("s3:ListAllMyBuckets",),
        "always": True,
        "when": "once per page of 1,000 buckets per account",
    },
    {
        "operation": "s3:GetBucketLocation",
        "kinds": BUCKET,
        "permissions": ("s3:GetBucketLocation",),
        "feeds": ("location",),
        "options": ("regions",),
        "when": "per bucket when ListBuckets gave no `BucketRegion` (or `--verify-region`)",
    },
    {
        "operation": "s3:GetBucketReplication",
        "kinds": BUCKET,
        "permissions": ("s3:GetReplicationConfiguration",),
        "feeds": ("location.regions", "location.replicas"),
        "when": "per bucket",
    },
    {
        "operation": "s3:HeadBucket",
        "kinds": BUCKET,
        "permissions": ("s3:ListBucket",),
        "feeds": ("location.regions", "location.replicas"),
        "when": "per distinct replication destination",
        "note": "S3's documented permission for HeadBucket; real S3's 403 still names the region in "
        "`x-amz-bucket-region`, which the scanner reads",
    },
    {
        "operation": "s3:GetBucketEncryption",
        "kinds": BUCKET,
        "permissions": ("s3:GetEncryptionConfiguration",),
        "feeds": ("encryption",),
        "when": "per bucket",
    },
    {
        "operation": "kms:DescribeKey",
        "kinds": BUCKET,
        "permissions": ("kms:DescribeKey",),
        "feeds": ("encryption.key_management", "encryption.key_location"),
        "when": "per distinct KMS key other than `aws/s3`",
        "note": "a key in another account also needs its key policy to allow it",
    },
    {
        "operation": "s3:GetBucketPolicy",
        "kinds": BUCKET,
        "permissions": ("s3:GetBucketPolicy",),
        "feeds": ("transport",),
        "when": "per bucket",
    },
    {
        "operation": "s3:GetPublicAccessBlock",
        "kinds": BUCKET,
        "permissions": ("s3:GetBucketPublicAccessBlock",),
        "feeds": ("access",),
        "when": "per bucket",
    },
    {
        "operation": "s3:GetBucketTagging",
        "kinds": BUCKET,
        "permissions": ("s3:GetBucketTagging",),
        "feeds": ("tags",),
        "when": "per bucket",
    },
    # Bedrock and the AI services opt-out policy (auditor/scan/aws_ai.py, docs/scanners/aws-bedrock.md).
    # IAM actions: "Actions defined by Amazon Bedrock" (Bedrock Agents' operations are `bedrock:`
    # actions), https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonbedrock.html
    {
        "operation": "ec2:DescribeRegions",
        "permissions": ("ec2:DescribeRegions",),
        "always": True,
        "kinds": BEDROCK_REGIONAL,
        "when": "once per account: the enabled regions the Bedrock listings run in (with `--regions`, "
        "those of them it names)",
    },
    {
        "operation": "bedrock:ListInferenceProfiles",
        "permissions": ("bedrock:ListInferenceProfiles",),
        "always": True,
        "kinds": ("ai-inference-profile",),
        "when": "per region, once per page of application inference profiles (`typeEquals=APPLICATION`)",
    },
    {
        "operation": "bedrock:ListTagsForResource",
        "permissions": ("bedrock:ListTagsForResource",),
        "feeds": ("tags",),
        "kinds": ("ai-inference-profile",),
        "when": "per application inference profile",
    },
    {
        "operation": "bedrock-agent:ListAgents",
        "permissions": ("bedrock:ListAgents",),
        "always": True,
        "kinds": ("ai-agent",),
        "when": "per region, once per page of agents",
    },
    {
        "operation": "bedrock-agent:GetAgent",
        "permissions": ("bedrock:GetAgent",),
        "feeds": ("processing",),
        "kinds": ("ai-agent",),
        "when": "per agent: its `foundationModel`",
    },
    {
        "operation": "bedrock:GetInferenceProfile",
        "permissions": ("bedrock:GetInferenceProfile",),
        "feeds": ("processing",),
        "kinds": ("ai-agent",),
        "when": "per distinct inference profile (system profile id or profile ARN) agents name, per region",
    },
    {
        "operation": "bedrock-agent:ListTagsForResource",
        "permissions": ("bedrock:ListTagsForResource",),
        "feeds": ("tags",),
        "kinds": ("ai-agent",),
        "when": "per agent",
    },
    {
        "operation": "bedrock:GetModelInvocationLoggingConfiguration",
        "permissions": ("bedrock:GetModelInvocationLoggingConfiguration",),
        "always": True,
        "kinds": ("ai-invocation-log",),
        "when": "once per region",
    },
    {
        "operation": "organizations:DescribeEffectivePolicy",
        "permissions": ("organizations:DescribeEffectivePolicy",),
        "feeds": ("training",),
        "kinds": ("ai-settings",),
        "when": "once per account, from the account's own session (no `TargetId`)",
        "note": "any account of an organization may call it for itself: "
        "https://docs.aws.amazon.com/organizations/latest/APIReference/API_DescribeEffectivePolicy.html",
    },
)

READ_ROLE = "AuditorRead"


def iam_policy(grant: Grant) -> dict[str, Any]:
    """The read role's IAM policy document: the needed actions on every resource."""
    statement = {"Sid": "AuditorRead", "Effect": "Allow", "Action": grant.permissions(), "Resource": "*"}
    return {"Version": "2012-10-17", "Statement": [statement]}


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in textwrap.wrap(text, 96))


def _caller_text(grant: Grant) -> str:
    return f"The principal that runs auditor assumes it and needs {', '.join(grant.caller_duties())}."


def _json(grant: Grant) -> str:
    return json.dumps(iam_policy(grant), indent=2) + "\n"


def _cloudformation(grant: Grant) -> str:
    import yaml

    description = "Read-only role for `auditor scan aws`, generated by `auditor permissions aws`."
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": description,
        "Parameters": {
            "TrustedPrincipalArn": {
                "Type": "String",
                "Description": "ARN of the principal that runs auditor and assumes this role.",
            },
            "RoleName": {"Type": "String", "Default": READ_ROLE, "Description": "The --role-arn role name."},
        },
        "Resources": {
            "AuditorReadRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "RoleName"},
                    "Description": description,
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"AWS": {"Ref": "TrustedPrincipalArn"}},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    },
                    "Policies": [{"PolicyName": "auditor-read", "PolicyDocument": iam_policy(grant)}],
                },
            }
        },
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["AuditorReadRole", "Arn"]}}},
    }
    header = _comment(
        "A StackSet template: deploy it to every account of the organization (service-managed "
        "permissions, --capabilities CAPABILITY_NAMED_IAM), then scan with "
        f"`auditor scan aws --role-arn {READ_ROLE} --organization`. {_caller_text(grant)}"
    )
    return header + yaml.safe_dump(template, sort_keys=False, width=100)


def _terraform(grant: Grant) -> str:
    actions = json.dumps(grant.permissions(), indent=2).replace("\n", "\n      ")
    header = _comment(
        "Read-only role for `auditor scan aws`, generated by `auditor permissions aws` from the loaded "
        "policies: apply it in every account to scan (one module instance per account provider), then "
        f"scan with `auditor scan aws --role-arn {READ_ROLE} --organization`. {_caller_text(grant)}"
    )
    body = f"""
variable "trusted_principal_arn" {{
  description = "ARN of the principal that runs auditor and assumes this role."
  type        = string
}}

variable "role_name" {{
  description = "The --role-arn role name."
  type        = string
  default     = "{READ_ROLE}"
}}

resource "aws_iam_role" "auditor_read" {{
  name = var.role_name
  assume_role_policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Effect    = "Allow"
      Principal = {{ AWS = var.trusted_principal_arn }}
      Action    = "sts:AssumeRole"
    }}]
  }})
}}

resource "aws_iam_role_policy" "auditor_read" {{
  name = "auditor-read"
  role = aws_iam_role.auditor_read.id
  policy = jsonencode({{
    Version = "2012-10-17"
    Statement = [{{
      Sid      = "AuditorRead"
      Effect   = "Allow"
      Action   = {actions}
      Resource = "*"
    }}]
  }})
}}

output "role_arn" {{
  value = aws_iam_role.auditor_read.arn
}}
"""
    return header + body


PERMISSION_FORMATS = {"json": _json, "cloudformation": _cloudformation, "terraform": _terraform}


def s3_transport(bucket_policy: dict[str, Any] | None) -> Transport:
    """A bucket's transport before `apply_bucket_policy` reads `bucket_policy`: AWS's TLS floor.

    Pass the policy even when None: the analysis derives plaintext_refused and the TLS minimum from
    it, or makes them unknown when the record says the policy could not be read.
    """
    return Transport(
        plaintext_refused=None,
        plaintext_refused_by=None,
        min_tls_version=TLS_FLOOR.version,
        min_tls_enforced_by="provider-floor",
        provider_floor=TLS_FLOOR,
        bucket_policy=bucket_policy,
    )
