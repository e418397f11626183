"""Residency zones: which regions of each source lie inside a named zone (eu, uk, us, ...).

The catalog (policies/zones/catalog.yaml) lists every region with its country; a zone is a set of
countries, and a region is inside a zone when its country is. A location made of several regions
(a multi-region, a dual-region, a key ring's multi-region location) is inside a zone only when all
its member regions are. Each source's section of the catalog is validated with the model the source
declares (`Source.catalog`, in its `auditor/scan/<name>_source.py`). Users may add zones in
`zones/*.yaml` beside their own policies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from auditor.model import Provider
from auditor.policy.yamlfile import load_yaml
from auditor.sources import sources as registered_sources
from auditor.strict import StrictModel

# The catalog's own top-level keys; every other top-level key is the section of the source it names.
CATALOG_FIELDS = ("version", "sources", "zones")


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


class ProviderCatalog(StrictModel):
    """One source's section of the catalog (the top-level key named after the source).

    A source with more than `regions:` declares a subclass as its `Source.catalog`.

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


Section = TypeVar("Section", bound=ProviderCatalog)


class ZoneCatalog(StrictModel):
    """The whole catalog; see docs/zone-catalog.md.

    `providers` holds each source's section by source name, in source order. In the file (and in
    `model_dump`) each section is a top-level key named after its source, validated with the model
    the source declares; a source that declares one must have its section, a key that names no
    source is an error.
    """

    version: int = 1
    sources: list[str] = Field(default_factory=list)
    zones: dict[str, Zone]
    providers: dict[str, SerializeAsAny[ProviderCatalog]]

    @model_validator(mode="wrap")
    @classmethod
    def _source_sections(cls, data: Any, handler: ModelWrapValidatorHandler[ZoneCatalog]) -> ZoneCatalog:
        if not isinstance(data, Mapping):
            return handler(data)
        own = {key: value for key, value in data.items() if key in CATALOG_FIELDS}
        providers, errors = _validate_sections(data)
        if not errors:
            return handler({**own, "providers": providers})
        try:  # the catalog's own fields come first, as in the file
            handler({**own, "providers": {}})
        except ValidationError as exc:
            errors[:0] = _error_details(exc)
        raise ValidationError.from_exception_data(cls.__name__, errors)

    @model_validator(mode="after")
    def _references_exist(self) -> ZoneCatalog:
        for provider, section in self.providers.items():
            for problem in section.reference_errors():
                raise ValueError(f"{provider} {problem}")
        return self

    @model_serializer(mode="wrap")
    def _sections_at_top_level(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        sections = data.pop("providers", {})
        return {**data, **sections}

    def section(self, provider: Provider, model: type[Section]) -> Section:
        """`provider`'s section as the model its source declares (KeyError if it has none)."""
        found = self.providers[provider]
        if not isinstance(found, model):
            kind = type(found).__name__
            raise TypeError(f"the zone catalog's {provider} section is a {kind}, not a {model.__name__}")
        return found

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


def _validate_sections(data: Mapping[Any, Any]) -> tuple[dict[str, ProviderCatalog], list[InitErrorDetails]]:
    """Each source's section of a catalog document, validated, and the errors, as pydantic orders them."""
    sections: dict[str, ProviderCatalog] = {}
    errors: list[InitErrorDetails] = []
    known = registered_sources()
    for name, source in known.items():
        if name not in data:
            if source.catalog is not None:
                errors.append({"type": "missing", "loc": (name,), "input": data})
            continue
        try:
            sections[name] = (source.catalog or ProviderCatalog).model_validate(data[name])
        except ValidationError as exc:
            errors.extend(_error_details(exc, (name,)))
    errors.extend(
        {"type": "extra_forbidden", "loc": (key,), "input": value}
        for key, value in data.items()
        if key not in CATALOG_FIELDS and key not in known
    )
    return sections, errors


def _error_details(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[InitErrorDetails]:
    """`exc`'s errors (type, message and input kept) with `prefix` before their location."""
    return [
        {
            "type": PydanticCustomError(error["type"], error["msg"]),
            "loc": (*prefix, *error["loc"]),
            "input": error["input"],
        }
        for error in exc.errors()
    ]


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
