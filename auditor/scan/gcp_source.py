"""The Google Cloud source: its section of auditor.yaml, one unit per project, its registration.

Importing this module imports no Google SDK: the scanner (`auditor.scan.gcp`) is named, not imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import ZoneCatalog
from auditor.sources import Source, SourceSection


class GcpCloud(SourceSection):
    """Google Cloud: which projects to scan, and the endpoint (Private Service Connect, emulator)."""

    file_fields: ClassVar[tuple[str, ...]] = ("tls_policy",)

    projects: list[str] = Field(min_length=1)
    api_endpoint: str | None = None
    tls_policy: Path | None = None

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per project."""
        for project in dict.fromkeys(self.projects):
            yield project, self.model_copy(update={"projects": [project]})


SOURCE = Source(
    name="gcp",
    label="Google Cloud",
    section=GcpCloud,
    scan="auditor.scan.gcp:scan_section",
    command="auditor.scan.gcp:command",
)


def bucket_regions(
    catalog: ZoneCatalog, location: str, location_type: str, data_locations: list[str] | None
) -> list[str]:
    """The regions a GCS bucket's data lives in, from location, locationType and dataLocations.

    The code alone is ambiguous ('EU' is a multi-region and a configurable dual-region code),
    so the type decides. Unknown codes come back as themselves: no zone contains them.
    """
    code = location.lower()
    kind = location_type.lower()
    if kind == "dual-region":
        if data_locations:
            return sorted({d.lower() for d in data_locations})
        predefined = catalog.gcp.dual_regions.get(code)
        return list(predefined.members) if predefined else [code]
    if kind == "multi-region":
        multi = catalog.gcp.multi_regions.get(code)
        return list(multi.members) if multi else [code]
    return [code]
