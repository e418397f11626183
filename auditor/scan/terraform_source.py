"""The Terraform source: plan JSON files (`terraform show -json PLAN`) as inventory records.

Its records describe resources of the clouds' providers (an `aws_s3_bucket` is a record of
provider "aws" with origin "terraform"), so every policy, zone catalog section and remediation
applies unchanged. One unit of work per plan file. Imports nothing heavy: the scanner
(`auditor.scan.terraform`) is named, not imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection


class TerraformOptions(RetryScopedOptions):
    """`auditor scan terraform` options: it makes no API call, so no retry setting applies."""

    retry_source: ClassVar[str] = "terraform"
    retry_used: ClassVar[frozenset[str]] = frozenset()


class TerraformSection(SourceSection):
    """Terraform: the plan JSON files to read, and the directory of the `.tf` files they came from."""

    scan_options_model: ClassVar[type[ScanOptions]] = TerraformOptions
    file_fields: ClassVar[tuple[str, ...]] = ("files",)

    files: list[Path] = Field(min_length=1, description="Plan JSON files (`terraform show -json PLAN`).")
    source_root: Path | None = Field(
        None, description="Directory of the configuration: resources are mapped to their .tf file and line."
    )
    repository_root: Path | None = Field(
        None,
        description="Directory .tf paths are shown relative to (default: source_root); the repository "
        "root, so code scanning can annotate a pull request whose root module is in a subdirectory.",
    )

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per plan file."""
        for path in dict.fromkeys(self.files):
            yield str(path), self.model_copy(update={"files": [path]})


SOURCE = Source(
    name="terraform",
    label="Terraform",
    section=TerraformSection,
    scan="auditor.scan.terraform:scan_section",
    command="auditor.scan.terraform:command",
    order=50,
    provider=False,
)
