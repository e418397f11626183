"""The Azure source: its section of auditor.yaml, one unit per subscription, its section of the
zone catalog, its registration.

Importing this module imports no Azure SDK: the scanner (`auditor.scan.azure`) is named, not imported.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import ProviderCatalog, ZoneCatalog
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection


class AzureOptions(RetryScopedOptions):
    """`auditor scan azure` options a section may set under `options:` (besides the shared ones)."""

    # The shared retry/timeout settings the scanner honours (azure-core retries count attempts).
    retry_source: ClassVar[str] = "azure"
    retry_used: ClassVar[frozenset[str]] = frozenset(
        {"max_attempts", "timeout", "connect_timeout", "retry_backoff", "retry_after_max"}
    )

    container_page_size: int | None = Field(None, ge=1, le=5000)


class AzureCloud(SourceSection):
    """Azure: which subscriptions to scan, and the endpoints (sovereign clouds)."""

    scan_options_model: ClassVar[type[ScanOptions]] = AzureOptions
    file_fields: ClassVar[tuple[str, ...]] = ("ca_bundle",)

    subscriptions: list[str] = Field(min_length=1)
    arm_endpoint: str | None = None
    blob_endpoint_template: str | None = None
    ca_bundle: Path | None = None
    blob_credential: Literal["token", "shared-key", "none"] | None = None

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per subscription."""
        for subscription in dict.fromkeys(self.subscriptions):
            yield subscription, self.model_copy(update={"subscriptions": [subscription]})


class AzureCatalog(ProviderCatalog):
    """The `azure:` section of the zone catalog: regions with their pairs, and the redundancy SKUs."""

    geo_redundant_skus: list[str] = Field(default_factory=list)
    local_skus: list[str] = Field(default_factory=list)


SOURCE = Source(
    name="azure",
    label="Azure",
    section=AzureCloud,
    scan="auditor.scan.azure:scan_section",
    command="auditor.scan.azure:command",
    order=30,
    catalog=AzureCatalog,
)


def paired_region(catalog: ZoneCatalog, region: str) -> str | None:
    """The paired (geo-secondary) region of an Azure region, or None if it has none."""
    found = catalog.section("azure", AzureCatalog).regions.get(region.lower())
    return found.pair if found else None


def is_geo_redundant(catalog: ZoneCatalog, sku: str) -> bool:
    """Whether a storage account SKU replicates to the paired region."""
    return sku.lower() in {s.lower() for s in catalog.section("azure", AzureCatalog).geo_redundant_skus}
