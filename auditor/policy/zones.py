"""Residency zones: which regions of each cloud lie inside a named zone (eu, uk, us, ...).

The catalog (policies/zones/catalog.yaml) lists every region with its country; a zone is a set of
countries, and a region is inside a zone when its country is. GCS multi-regions, predefined
dual-regions and Cloud KMS multi-region locations are inside a zone only when all their member
regions are. Users may add zones in `zones/*.yaml` beside their own policies.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from auditor.model import PROVIDERS, Provider
from auditor.policy.yamlfile import load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Zone(_Strict):
    """A named residency zone: a set of countries (ISO 3166-1 alpha-2)."""

    title: str
    description: str = ""
    countries: list[str]


class Region(_Strict):
    """A region with the country it lies in; Azure regions also name their paired region."""

    country: str
    city: str | None = None
    pair: str | None = None
    note: str | None = None
    verified: bool = True


class MemberSet(_Strict):
    """A location made of several regions (GCS multi-/dual-region, Cloud KMS multi-region)."""

    members: list[str]
    note: str | None = None
    verified: bool = True


class EligibleSet(_Strict):
    """A configurable dual-region code and the regions its data locations may be chosen from."""

    eligible: list[str]
    note: str | None = None


class AwsCatalog(_Strict):
    regions: dict[str, Region]
    location_aliases: dict[str, str] = Field(default_factory=dict)


class GcpCatalog(_Strict):
    regions: dict[str, Region]
    multi_regions: dict[str, MemberSet] = Field(default_factory=dict)
    dual_regions: dict[str, MemberSet] = Field(default_factory=dict)
    configurable_dual_region_codes: dict[str, EligibleSet] = Field(default_factory=dict)
    kms_locations: dict[str, MemberSet] = Field(default_factory=dict)


class AzureCatalog(_Strict):
    regions: dict[str, Region]
    geo_redundant_skus: list[str] = Field(default_factory=list)
    local_skus: list[str] = Field(default_factory=list)


class ZoneCatalog(_Strict):
    """The whole catalog; see docs/zone-catalog.md."""

    version: int = 1
    sources: list[str] = Field(default_factory=list)
    zones: dict[str, Zone]
    aws: AwsCatalog
    gcp: GcpCatalog
    azure: AzureCatalog

    @model_validator(mode="after")
    def _references_exist(self) -> ZoneCatalog:
        for name, member_set in {
            **self.gcp.multi_regions,
            **self.gcp.dual_regions,
            **self.gcp.kms_locations,
        }.items():
            for member in member_set.members:
                if member not in self.gcp.regions:
                    raise ValueError(f"gcp location '{name}' names unknown region '{member}'")
        for code, eligible in self.gcp.configurable_dual_region_codes.items():
            for member in eligible.eligible:
                if member not in self.gcp.regions:
                    raise ValueError(f"gcp dual-region code '{code}' names unknown region '{member}'")
        for name, region in self.azure.regions.items():
            if region.pair is not None and region.pair not in self.azure.regions:
                raise ValueError(f"azure region '{name}' pairs with unknown region '{region.pair}'")
        for alias, target in self.aws.location_aliases.items():
            if target not in self.aws.regions:
                raise ValueError(f"aws location alias '{alias}' names unknown region '{target}'")
        return self

    def _regions(self, provider: Provider) -> dict[str, Region]:
        return {"aws": self.aws.regions, "gcp": self.gcp.regions, "azure": self.azure.regions}[provider]

    def country_of(self, provider: Provider, region: str) -> str | None:
        """The country of a plain region, or None if the catalog does not know it."""
        found = self._regions(provider).get(region.lower())
        return found.country if found else None

    @cached_property
    def _zone_sets(self) -> dict[tuple[str, str], frozenset[str]]:
        sets: dict[tuple[str, str], frozenset[str]] = {}
        for zone_name, zone in self.zones.items():
            countries = set(zone.countries)
            for provider in PROVIDERS:
                inside = {r for r, region in self._regions(provider).items() if region.country in countries}
                if provider == "gcp":
                    # A code in several tables (KMS 'asia1' includes Seoul, GCS 'asia1' does not) is
                    # inside only if it is inside under every meaning.
                    meanings: dict[str, list[list[str]]] = {}
                    for table in (self.gcp.multi_regions, self.gcp.dual_regions, self.gcp.kms_locations):
                        for name, member_set in table.items():
                            meanings.setdefault(name, []).append(member_set.members)
                    inside.update(
                        name
                        for name, member_lists in meanings.items()
                        if name not in self.gcp.regions
                        and all(members and set(members) <= inside for members in member_lists)
                    )
                sets[(zone_name, provider)] = frozenset(inside)
        return sets

    def regions_in_zone(self, zone: str, provider: Provider) -> frozenset[str]:
        """Every location id of `provider` (lower case) that lies wholly inside `zone`."""
        return self._zone_sets[(zone, provider)]

    def zone_members(self, zone: str) -> dict[str, frozenset[str]]:
        """`regions_in_zone` for every provider."""
        return {provider: self.regions_in_zone(zone, provider) for provider in PROVIDERS}

    def zones_of(self, provider: Provider, region: str) -> list[str]:
        """The zones a location lies inside (for reports)."""
        region = region.lower()
        return [zone for zone in self.zones if region in self._zone_sets[(zone, provider)]]

    # --- normalisation helpers used by the scanners -------------------------------------------

    def aws_region_of_location(self, raw: str | None) -> str:
        """GetBucketLocation's LocationConstraint to a region: empty is us-east-1, 'EU' eu-west-1."""
        value = raw or ""
        return self.aws.location_aliases.get(value, value.lower() or "us-east-1")

    def gcs_regions(self, location: str, location_type: str, data_locations: list[str] | None) -> list[str]:
        """The regions a GCS bucket's data lives in, from location, locationType and dataLocations.

        The code alone is ambiguous ('EU' is a multi-region and a configurable dual-region code),
        so the type decides. Unknown codes come back as themselves: no zone contains them.
        """
        code = location.lower()
        kind = location_type.lower()
        if kind == "dual-region":
            if data_locations:
                return sorted({d.lower() for d in data_locations})
            predefined = self.gcp.dual_regions.get(code)
            return list(predefined.members) if predefined else [code]
        if kind == "multi-region":
            multi = self.gcp.multi_regions.get(code)
            return list(multi.members) if multi else [code]
        return [code]

    def gcp_kms_regions(self, key_location: str) -> list[str]:
        """Regions a Cloud KMS key location covers (a region, or a KMS multi-region's members)."""
        code = key_location.lower()
        member_set = self.gcp.kms_locations.get(code)
        if member_set is not None:
            return list(member_set.members) or [code]
        return [code]

    def azure_pair(self, region: str) -> str | None:
        """The paired (geo-secondary) region of an Azure region, or None if it has none."""
        found = self.azure.regions.get(region.lower())
        return found.pair if found else None

    def azure_is_geo_redundant(self, sku: str) -> bool:
        """Whether a storage account SKU replicates to the paired region."""
        return sku.lower() in {s.lower() for s in self.azure.geo_redundant_skus}


def load_zone_catalog(paths: list[Path]) -> ZoneCatalog:
    """Load the catalog from the first file, adding the `zones:` of any further files."""
    base_doc = load_yaml(paths[0])
    try:
        catalog = ZoneCatalog.model_validate(base_doc.data)
    except ValidationError as exc:
        raise base_doc.validation_error(exc) from exc
    for extra in paths[1:]:
        doc = load_yaml(extra)
        if not isinstance(doc.data, dict) or set(doc.data) - {"zones"}:
            raise doc.error((), "a user zone file holds only a 'zones:' mapping")
        for name, raw in (doc.data.get("zones") or {}).items():
            if name in catalog.zones:
                raise doc.error(("zones", name), f"zone '{name}' is already defined")
            try:
                catalog.zones[name] = Zone.model_validate(raw)
            except ValidationError as exc:
                raise doc.validation_error(exc, ("zones", name)) from exc
    catalog.__dict__.pop("_zone_sets", None)
    return catalog
