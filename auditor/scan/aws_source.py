"""The AWS source: its section of auditor.yaml, its units of work (one per account), its section of
the zone catalog, its registration.

Importing this module imports no AWS SDK: the scanner (`auditor.scan.aws`) is named, not imported,
and listing an organization's accounts imports boto3 only when a plan needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar, Literal

from pydantic import Field

from auditor.model import CoverageGap, UnknownCode
from auditor.policy.zones import ProviderCatalog, ZoneCatalog
from auditor.scan.aws_bucket_policy import apply_bucket_policy
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection

ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


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
    regions: list[str] = Field(default_factory=list, description="Only buckets in these regions.")

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
    catalog=AwsCatalog,
)


def region_of_location(catalog: ZoneCatalog, raw: str | None) -> str:
    """GetBucketLocation's LocationConstraint to a region: empty is us-east-1, 'EU' eu-west-1."""
    value = raw or ""
    return catalog.section("aws", AwsCatalog).location_aliases.get(value, value.lower() or "us-east-1")
