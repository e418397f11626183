"""The CloudFormation source: templates read as the S3 buckets a stack would create.

Its records carry provider "aws" (origin "cloudformation"), so the shipped policies, the zone
catalog's `aws:` regions and the bucket-policy analysis apply to them unchanged. Importing this
module imports no YAML or AWS code: the scanner (`auditor.scan.cloudformation`) is named.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.scan.aws_source import ACCOUNT_ID, REGION_PATTERN
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection


class CloudFormationOptions(RetryScopedOptions):
    """`auditor scan cloudformation` options: the shared ones; it makes no API call, so no retries."""

    retry_source: ClassVar[str] = "cloudformation"
    retry_used: ClassVar[frozenset[str]] = frozenset()


class CloudFormationSection(SourceSection):
    """CloudFormation: the templates of one stack, where it is deployed, its parameter values."""

    scan_options_model: ClassVar[type[ScanOptions]] = CloudFormationOptions
    file_fields: ClassVar[tuple[str, ...]] = ("templates", "parameters")

    templates: list[Path] = Field(min_length=1, description="Template files (YAML or JSON).")
    region: str = Field(description="The stack's region (AWS::Region).")
    account: str | None = Field(None, description="The 12-digit account (AWS::AccountId).")
    stack_name: str | None = Field(None, description="The stack's name (AWS::StackName).")
    parameters: Path | None = Field(None, description="Parameter values (AWS CLI JSON list or a map).")

    def check(self) -> None:
        """Options, the region code and the account id as the scanner would refuse them."""
        super().check()
        if not REGION_PATTERN.match(self.region.lower()):
            raise ValueError(f"region: '{self.region}' is not an AWS region code such as eu-west-1")
        if self.account is not None and not ACCOUNT_ID.match(self.account):
            raise ValueError(f"account: '{self.account}' is not a 12-digit AWS account id")

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit: the stack's templates are read together (a bucket may replicate to another's)."""
        yield self.account or "unknown", self


SOURCE = Source(
    name="cloudformation",
    label="CloudFormation",
    section=CloudFormationSection,
    scan="auditor.scan.cloudformation:scan_section",
    command="auditor.scan.cloudformation:command",
    order=60,
    provider=False,
)
