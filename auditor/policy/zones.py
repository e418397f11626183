"""Residency zones: which regions of each cloud lie inside a named zone (eu, uk, us, ...).

The catalog (policies/zones/catalog.yaml) lists every region with its country; a zone is a set of
countries, and a region is inside a zone when its country is. GCS multi-regions, predefined
dual-regions and Cloud KMS multi-region locations are inside a zone only when all their member
regions are. Users may add zones in `zones/*.yaml` beside their own policies.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import ClassVar

from pydantic import Field, ValidationError, model_validator

from auditor.model import Provider
from auditor.policy.yamlfile import load_yaml
from auditor.strict import StrictModel


class Zone(StrictModel):
    """A named residency zone: a set of countries (ISO 3166-1 alpha-2)."""

    title: str
    description: str = ""
    countries: list[str]


class Region(StrictModel):
    """A region with the country it lies in; Azure regions also name their paired region."""

    country: str
    city: str | None = None
    pair: str | None = None
    note: str | None = None
    verified: bool = True


class MemberSet(StrictModel):
    """A location made of several regions (GCS multi-/dual-region, Cloud KMS multi-region)."""

    members: list[str]
    note: str | None = None
    verified: bool = True


class EligibleSet(StrictModel):
    """A configurable dual-region code and the regions its data locations may be chosen from."""

    eligible: list[str]
    note: str | None = None


class ProviderCatalog(StrictModel):
    """One provider's part of the catalog (the YAML section named after the provider).

    `multi_location_tables` names the tables of locations made of several regions (a multi-region,
    a dual-region, a KMS multi-region): such a location is inside a zone only if every member is,
    and a code listed in several tables only if it is inside under every meaning.
    """

    multi_location_tables: ClassVar[tuple[str, ...]] = ()

    regions: dict[str, Region]

    def member_tables(self) -> list[dict[str, MemberSet]]:
        """The provider's multi-location tables (see `multi_location_tables`)."""
        return [getattr(self, table) for table in self.multi_location_tables]

    def reference_errors(self) -> Iterator[str]:
        """A message for each entry that names a region this provider's catalog does not list."""
        for table in self.member_tables():
            for name, member_set in table.items():
                for member in member_set.members:
                    if member not in self.regions:
                        yield f"location '{name}' names unknown region '{member}'"
        for name, region in self.regions.items():
            if region.pair is not None and region.pair not in self.regions:
                yield f"region '{name}' pairs with unknown region '{region.pair}'"


class AwsCatalog(ProviderCatalog):
    location_aliases: dict[str, str] = Field(default_factory=dict)

    def reference_errors(self) -> Iterator[str]:
        yield from super().reference_errors()
        for alias, target in self.location_aliases.items():
            if target not in self.regions:
                yield f"location alias '{alias}' names unknown region '{target}'"


class GcpCatalog(ProviderCatalog):
    # A code in several tables (KMS 'asia1' includes Seoul, GCS 'asia1' does not) is inside a
    # zone only if it is inside under every meaning.
    multi_location_tables: ClassVar[tuple[str, ...]] = ("multi_regions", "dual_regions", "kms_locations")

    multi_regions: dict[str, MemberSet] = Field(default_factory=dict)
    dual_regions: dict[str, MemberSet] = Field(default_factory=dict)
    configurable_dual_region_codes: dict[str, EligibleSet] = Field(default_factory=dict)
    kms_locations: dict[str, MemberSet] = Field(default_factory=dict)

    def reference_errors(self) -> Iterator[str]:
        yield from super().reference_errors()
        for code, eligible in self.configurable_dual_region_codes.items():
            for member in eligible.eligible:
                if member not in self.regions:
                    yield f"dual-region code '{code}' names unknown region '{member}'"


class AzureCatalog(ProviderCatalog):
    geo_redundant_skus: list[str] = Field(default_factory=list)
    local_skus: list[str] = Field(default_factory=list)


class ZoneCatalog(StrictModel):
    """The whole catalog; see docs/zone-catalog.md. Each provider's section is a `ProviderCatalog`."""

    version: int = 1
    sources: list[str] = Field(default_factory=list)
    zones: dict[str, Zone]
    aws: AwsCatalog
    gcp: GcpCatalog
    azure: AzureCatalog

    @model_validator(mode="after")
    def _references_exist(self) -> ZoneCatalog:
        for provider, section in self.providers.items():
            for problem in section.reference_errors():
                raise ValueError(f"{provider} {problem}")
        return self

    @property
    def providers(self) -> dict[str, ProviderCatalog]:
        """Each provider's section by provider name (the source names of auditor.sources)."""
        return {
            name: value
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), ProviderCatalog)
        }

    def _regions(self, provider: Provider) -> dict[str, Region]:
        return self.providers[provider].regions

    def country_of(self, provider: Provider, region: str) -> str | None:
        """The country of a plain region, or None if the catalog does not know it."""
        found = self._regions(provider).get(region.lower())
        return found.country if found else None

    @cached_property
    def _zone_sets(self) -> dict[tuple[str, str], frozenset[str]]:
        sets: dict[tuple[str, str], frozenset[str]] = {}
        for zone_name, zone in self.zones.items():
            countries = set(zone.countries)
            for provider, section in self.providers.items():
                inside = {r for r, region in section.regions.items() if region.country in countries}
                meanings: dict[str, list[list[str]]] = {}
                for table in section.member_tables():
                    for name, member_set in table.items():
                        meanings.setdefault(name, []).append(member_set.members)
                inside.update(
                    name
                    for name, member_lists in meanings.items()
                    if name not in section.regions
                    and all(members and set(members) <= inside for members in member_lists)
                )
                sets[(zone_name, provider)] = frozenset(inside)
        return sets

    def regions_in_zone(self, zone: str, provider: Provider) -> frozenset[str]:
        """Every location id of `provider` (lower case) that lies wholly inside `zone`."""
        return self._zone_sets[(zone, provider)]

    def zone_members(self, zone: str) -> dict[str, frozenset[str]]:
        """`regions_in_zone` for every provider."""
        return {provider: self.regions_in_zone(zone, provider) for provider in self.providers}

    def zones_of(self, provider: Provider, region: str) -> list[str]:
        """The zones a location lies inside (for reports)."""
        region = region.lower()
        return [zone for zone in self.zones if region in self._zone_sets[(zone, provider)]]


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
