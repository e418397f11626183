"""The ARM template source: Azure storage as declared in ARM templates (and Bicep compiled to them).

Its records are of provider "azure" with origin "arm", so every policy, the zone catalog's Azure
section and the reports apply to them unchanged. Importing this module imports no Azure SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection


class ArmOptions(RetryScopedOptions):
    """`auditor scan arm` options a section may set under `options:`: no retry setting (no API call)."""

    retry_source: ClassVar[str] = "arm"
    retry_used: ClassVar[frozenset[str]] = frozenset()


class ArmSection(SourceSection):
    """ARM templates: the files, their parameters, and the deployment scope they are evaluated for."""

    scan_options_model: ClassVar[type[ScanOptions]] = ArmOptions
    file_fields: ClassVar[tuple[str, ...]] = ("templates", "parameters")

    templates: list[Path] = Field(min_length=1)
    parameters: Path | None = None
    location: str | None = None
    subscription: str | None = None
    resource_group: str | None = None

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit: the templates share their parameters file."""
        yield self.subscription or "unknown", self


SOURCE = Source(
    name="arm",
    label="ARM templates",
    section=ArmSection,
    scan="auditor.scan.arm:scan_section",
    command="auditor.scan.arm:command",
    order=70,
    provider=False,
)
