"""The shipped zone catalog and location resolution, including the residency traps."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.policy.loader import load_zones
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws_source import region_of_location
from auditor.scan.azure_source import is_geo_redundant, paired_region
from auditor.scan.gcp_source import GcpCatalog, bucket_regions
from tests.conftest import SHIPPED_POLICIES


@pytest.fixture(scope="module")
def catalog() -> ZoneCatalog:
    return load_zones([SHIPPED_POLICIES])


def test_ten_zones_for_every_cloud(catalog: ZoneCatalog) -> None:
    for zone in ("eu", "uk", "us", "ca", "jp", "kr", "sg", "in", "au", "ae"):
        assert catalog.regions_in_zone(zone, "aws"), zone
        assert catalog.regions_in_zone(zone, "azure"), zone
    assert not catalog.regions_in_zone("ae", "gcp")  # no GCS region in the UAE: me-central1 is Doha


@pytest.mark.parametrize(
    ("location", "kind", "data_locations", "inside_eu"),
    [
        ("EUROPE-WEST1", "region", None, True),
        ("EU", "multi-region", None, True),
        ("EUR4", "dual-region", None, True),
        ("EUR5", "dual-region", None, False),
        ("EUR7", "dual-region", None, False),
        ("EUR8", "dual-region", None, False),
        ("EU", "dual-region", ["EUROPE-WEST1", "EUROPE-WEST4"], True),
        ("US", "multi-region", None, False),
        ("EUROPE-WEST2", "region", None, False),
    ],
)
def test_gcs_locations(
    catalog: ZoneCatalog, location: str, kind: str, data_locations: list[str] | None, inside_eu: bool
) -> None:
    regions = bucket_regions(catalog, location, kind, data_locations)
    eu = catalog.regions_in_zone("eu", "gcp")
    assert (bool(regions) and set(regions) <= eu) is inside_eu


def test_gcs_asia_is_never_in_one_country(catalog: ZoneCatalog) -> None:
    for kind in ("multi-region", "dual-region"):
        regions = set(bucket_regions(catalog, "ASIA", kind, None))
        for zone in ("sg", "jp", "kr", "in"):
            assert not regions <= catalog.regions_in_zone(zone, "gcp")


def test_s3_location_quirks(catalog: ZoneCatalog) -> None:
    assert region_of_location(catalog, None) == "us-east-1"
    assert region_of_location(catalog, "") == "us-east-1"
    assert region_of_location(catalog, "EU") == "eu-west-1"
    assert region_of_location(catalog, "eu-central-1") == "eu-central-1"


def test_azure_pairs(catalog: ZoneCatalog) -> None:
    assert paired_region(catalog, "southeastasia") == "eastasia"
    assert paired_region(catalog, "northeurope") == "westeurope"
    assert paired_region(catalog, "brazilsouth") == "southcentralus"
    assert paired_region(catalog, "italynorth") is None
    assert "eastasia" not in catalog.regions_in_zone("sg", "azure")
    assert is_geo_redundant(catalog, "Standard_RAGRS") and not is_geo_redundant(catalog, "Standard_ZRS")


def test_kms_code_with_two_meanings_is_inside_only_under_both(catalog: ZoneCatalog) -> None:
    # GCS dual-region asia1 is Tokyo+Osaka, Cloud KMS asia1 adds Seoul: as a key location it is not jp.
    assert "asia1" not in catalog.regions_in_zone("jp", "gcp")
    assert "global" not in catalog.regions_in_zone("eu", "gcp")


def test_user_zone_added_and_duplicate_rejected(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "mine.yaml").write_text("zones:\n  dach:\n    title: DACH\n    countries: [DE, AT, CH]\n")
    catalog = load_zones([tmp_path])
    assert "eu-central-2" in catalog.regions_in_zone("dach", "aws")  # Zurich
    (zones / "dup.yaml").write_text("zones:\n  eu:\n    title: again\n    countries: [FR]\n")
    with pytest.raises(InputError, match="already defined") as caught:
        load_zones([tmp_path])
    assert "dup.yaml:2" in str(caught.value)


def test_a_section_for_an_unregistered_source_is_rejected_with_its_line(tmp_path: Path) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    shipped = (SHIPPED_POLICIES / "zones" / "catalog.yaml").read_text()
    (zones / "catalog.yaml").write_text(shipped + "nowhere:\n  regions: {}\n")
    with pytest.raises(InputError, match="nowhere: Extra inputs are not permitted") as caught:
        load_zones([tmp_path])
    assert str(caught.value).startswith(f"{zones / 'catalog.yaml'}:{shipped.count(chr(10)) + 1}: ")


def test_each_section_has_its_source_model_and_dumps_as_the_file(catalog: ZoneCatalog) -> None:
    assert list(catalog.providers) == ["aws", "gcp", "azure", "openai"]
    assert isinstance(catalog.section("gcp", GcpCatalog), GcpCatalog)
    dumped = catalog.model_dump()
    assert {"aws", "gcp", "azure"} <= set(dumped) and "providers" not in dumped
    assert dumped["aws"]["location_aliases"]["EU"] == "eu-west-1"
    assert ZoneCatalog.model_validate(dumped) == catalog
