"""AzureScanner against Azurite and the recorded ARM server: every attribute and unknown per case."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from auditor.errors import InputError
from auditor.inventory import InventoryRecord, dump_record, parse_record
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.policy.zones import ZoneCatalog
from auditor.scan.azure import TLS_FLOOR, parse_account_keys
from auditor.scan.base import AttributeNeeds

from .arm_server import ArmServer, Fault, SeenRequest, throttled
from .conftest import (
    ACCOUNTS_PATH,
    DATA_PLANE,
    DENIED_SUBSCRIPTION,
    SUBSCRIPTION,
    ScanFactory,
    split,
    storage_only,
)

ACCOUNT_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts"
)


@dataclass
class FullScan:
    """One scan of the whole test estate with every attribute wanted."""

    resources: dict[str, StorageResource]
    gaps: list[CoverageGap]
    calls: dict[str, int]
    requests: list[SeenRequest]

    def seen(self, path_part: str) -> list[SeenRequest]:
        return [r for r in self.requests if path_part.lower() in r.path.lower()]


@pytest.fixture(scope="module")
def full(make_scanner: ScanFactory, arm_session: ArmServer) -> FullScan:
    arm_session.reset()
    arm_session.add_fault(ACCOUNTS_PATH, throttled(retry_after=1))
    scanner = make_scanner()
    resources, gaps = split(list(scanner.scan()))
    return FullScan(resources, gaps, scanner.calls.snapshot(), list(arm_session.requests))


def test_every_container_and_containerless_account_is_one_record(full: FullScan) -> None:
    expected = {f"{account}/{name}" for account, containers in DATA_PLANE.items() for name in containers}
    expected -= {"euwdenied/hidden"}  # its containers cannot be listed
    expected |= {"euwscope/plain", "euwscope/scoped", "euwscope/scopedopen", "euwdenied", "euwempty"}
    assert set(full.resources) == expected
    assert full.resources["euwempty"].kind == "account"
    assert full.resources["euwdenied"].kind == "account"
    assert {r.kind for k, r in full.resources.items() if "/" in k} == {"container"}


def test_identity_fields(full: FullScan) -> None:
    record = full.resources["eungrs/logs"]
    assert record.provider == "azure"
    assert record.account == SUBSCRIPTION
    assert record.storage_account == "eungrs"
    assert record.id == f"{ACCOUNT_ID}/eungrs/blobServices/default/containers/logs"
    assert full.resources["euwempty"].id == f"{ACCOUNT_ID}/euwempty"
    assert full.resources["euwempty"].name == "euwempty"


@pytest.mark.parametrize(
    ("key", "regions", "secondary", "zone", "inside"),
    [
        ("euwlrs/plain", ["westeurope"], None, "eu", True),
        ("eungrs/logs", ["northeurope", "westeurope"], "westeurope", "eu", True),
        ("seagrs/sgdata", ["southeastasia", "eastasia"], "eastasia", "sg", False),
        ("sealrs/sgdata", ["southeastasia"], None, "sg", True),
        ("brsgrs/brdata", ["brazilsouth", "southcentralus"], "southcentralus", "eu", False),
        ("itnlrs/itdata", ["italynorth"], None, "eu", True),
    ],
)
def test_regions_include_the_geo_secondary(
    full: FullScan,
    catalog: ZoneCatalog,
    key: str,
    regions: list[str],
    secondary: str | None,
    zone: str,
    inside: bool,
) -> None:
    record = full.resources[key]
    assert record.location is not None
    assert record.location.type == "region"
    assert record.location.primary == regions[0]
    assert record.location.regions == regions
    assert [r.region for r in record.location.replicas] == ([secondary] if secondary else [])
    assert all(r.kind == "geo-secondary" for r in record.location.replicas)
    assert record.unknown_reason("location.regions") is None
    assert (set(regions) <= catalog.regions_in_zone(zone, "azure")) is inside


def test_brazilsouth_pair_comes_from_the_catalog_when_arm_gives_no_secondary(full: FullScan) -> None:
    evidence = full.resources["brsgrs/brdata"].evidence[0]
    assert evidence.call == "storage:StorageAccounts.List"
    assert "secondaryLocation" not in evidence.response["properties"]
    assert evidence.response["sku"]["name"] == "Standard_GRS"


def test_read_access_geo_secondary_records_its_endpoint(full: FullScan) -> None:
    location = full.resources["seagrs/sgdata"].location
    assert location is not None
    assert location.replicas[0].target == "https://seagrs-secondary.blob.core.windows.net/"


def test_geo_sku_in_a_region_without_pair_makes_regions_unknown(full: FullScan) -> None:
    record = full.resources["itngrs/itdata"]
    reason = record.unknown_reason("location.regions")
    assert reason is not None and reason.code == UnknownCode.ERROR
    assert "NoPairedRegion" in reason.reason and "Standard_GZRS" in reason.reason
    assert record.location is not None
    assert [r.region for r in record.location.replicas] == [None]


def test_geo_sku_without_a_known_secondary_records_the_primary_as_partial_members(full: FullScan) -> None:
    record = full.resources["itngrs/itdata"]
    assert record.location is not None and record.location.regions == ["italynorth"]
    regions = record.unknown["location.regions"]
    assert regions.partial == "members"  # italynorth is known to hold the data; the secondary is not
    assert full.resources["euwlrs/plain"].unknown.get("location.regions") is None


@pytest.mark.parametrize(
    ("key", "version"),
    [("euwtls10/data", "TLS1_0"), ("euwlrs/plain", "TLS1_2"), ("sealrs/sgdata", "TLS1_3")],
)
def test_min_tls_is_the_account_setting(full: FullScan, key: str, version: str) -> None:
    transport = full.resources[key].transport
    assert transport is not None
    assert transport.min_tls_version == version
    assert transport.min_tls_enforced_by == "account:minimumTlsVersion"
    assert transport.provider_floor is None


def test_missing_min_tls_falls_back_to_the_documented_platform_floor(full: FullScan) -> None:
    record = full.resources["euwnotls/data"]
    assert "minimumTlsVersion" not in record.evidence[0].response["properties"]
    transport = record.transport
    assert transport is not None
    assert transport.min_tls_version == "TLS1_2"
    assert transport.min_tls_enforced_by == "provider"
    assert transport.provider_floor == TLS_FLOOR
    assert transport.provider_floor.source.startswith("https://learn.microsoft.com/")


def test_https_only_off_and_public_access(full: FullScan) -> None:
    open_account = full.resources["euwhttp/public"]
    assert open_account.transport is not None
    assert open_account.transport.plaintext_refused is False
    assert open_account.transport.plaintext_refused_by is None
    assert open_account.access is not None
    assert open_account.access.public_access_blocked is False
    assert open_account.access.detail == {"allowBlobPublicAccess": True, "publicAccess": "container"}
    closed = full.resources["euwlrs/plain"]
    assert closed.transport is not None
    assert closed.transport.plaintext_refused is True
    assert closed.transport.plaintext_refused_by == "account:supportsHttpsTrafficOnly"
    assert closed.access is not None and closed.access.public_access_blocked is True


def test_microsoft_managed_keys(full: FullScan) -> None:
    encryption = full.resources["euwlrs/plain"].encryption
    assert encryption is not None
    assert (encryption.enabled, encryption.algorithm) == (True, "AES256")
    assert (encryption.scheme, encryption.key_management) == ("microsoft-managed", "provider-managed")
    assert (encryption.key_id, encryption.key_location) == (None, None)
    assert not any(path.startswith("encryption") for path in full.resources["euwlrs/plain"].unknown)


def test_key_vault_key_source_with_the_vault_location(full: FullScan) -> None:
    record = full.resources["euwcmk/cmkdata"]
    encryption = record.encryption
    assert encryption is not None
    assert encryption.scheme == "customer-managed-key-vault"
    assert encryption.key_management == "customer-managed"
    assert encryption.key_id == "https://auditkvweu.vault.azure.net/keys/storage-cmk"
    assert encryption.key_location == "westeurope"
    assert record.unknown_reason("encryption.key_location") is None
    vault = [e for e in record.evidence if e.call == "resources:Resources.List"]
    assert vault and vault[0].response["value"][0]["name"] == "auditkvweu"


def test_key_in_a_vault_outside_the_subscription_has_unknown_location(full: FullScan) -> None:
    record = full.resources["euwcmkx/cmkdata"]
    assert record.encryption is not None
    assert record.encryption.key_management == "customer-managed"
    assert record.encryption.key_id == (
        "https://partnerkv.vault.azure.net/keys/shared-cmk/0d4c9e2f6a8b4c1d9e3f5a7b9c1d3e5f"
    )
    assert record.encryption.key_location is None
    reason = record.unknown_reason("encryption.key_location")
    assert reason is not None and "VaultNotFound" in reason.reason and "partnerkv" in reason.reason


def test_one_vault_lookup_per_distinct_vault(full: FullScan) -> None:
    # auditkvweu (account key), partnerkv (account key), auditkvneu (scope used by two containers)
    assert full.calls["resources:Resources.List"] == 3
    assert len(full.seen(f"/subscriptions/{SUBSCRIPTION}/resources")) == 3


def test_key_vault_encryption_scope_makes_the_container_customer_managed(full: FullScan) -> None:
    scoped = full.resources["euwscope/scoped"].encryption
    assert scoped is not None
    assert scoped.key_management == "customer-managed"
    assert scoped.key_id == "https://auditkvneu.vault.azure.net/keys/scope-cmk"
    assert scoped.key_location == "northeurope"
    calls = {e.call for e in full.resources["euwscope/scoped"].evidence}
    assert {"storage:EncryptionScopes.List", "storage:BlobContainers.List"} <= calls


def test_overridable_scope_is_only_as_strong_as_the_weakest_enabled_scope(full: FullScan) -> None:
    # Default scope is Key Vault-backed, but overrides are allowed and 'msscope' is Microsoft-managed.
    opened = full.resources["euwscope/scopedopen"].encryption
    assert opened is not None and opened.key_management == "provider-managed"
    plain = full.resources["euwscope/plain"].encryption
    assert plain is not None and plain.key_management == "provider-managed"


def test_container_metadata_joins_account_tags(full: FullScan) -> None:
    training = full.resources["euwlrs/training"]
    assert training.tags == {
        "data-class": "internal",
        "owner": "analytics",
        "ai_training": "opt-in",
        "ai_training_consent": "DPA-2024-117",
    }
    assert training.normalized_tags is not None
    assert training.normalized_tags["ai-training-consent"] == "DPA-2024-117"
    analytics = full.resources["euwlrs/analytics"]
    assert analytics.tags is not None and analytics.tags["AI_Training"] == "yes"
    assert analytics.normalized_tags is not None and analytics.normalized_tags["ai-training"] == "yes"
    assert full.resources["euwlrs/plain"].tags == {"data-class": "internal", "owner": "analytics"}


def test_container_metadata_wins_over_the_account_tag(full: FullScan) -> None:
    # account tag ai_training=opt-out; ARM container GET metadata ai_training=opt-in
    assert full.resources["euwscope/scoped"].tags == {"ai_training": "opt-in", "data-class": "restricted"}
    assert full.resources["euwscope/scopedopen"].tags == {
        "ai_training": "opt-out",
        "data-class": "restricted",
    }


def test_denied_container_get_makes_only_that_containers_tags_unknown(full: FullScan) -> None:
    reason = full.resources["euwscope/plain"].unknown_reason("tags.ai-training")
    assert reason is not None and reason.code == UnknownCode.ACCESS_DENIED
    assert reason.reason.startswith("AuthorizationFailed:") and "storage:BlobContainers.Get" in reason.reason
    assert full.resources["euwscope/scoped"].unknown_reason("tags.ai-training") is None


def test_account_whose_containers_cannot_be_listed(full: FullScan) -> None:
    record = full.resources["euwdenied"]
    assert record.kind == "account"
    assert record.id == f"{ACCOUNT_ID}/euwdenied"
    reason = record.unknown_reason("tags.ai-training")
    assert reason is not None and reason.code == UnknownCode.ACCESS_DENIED
    assert "AuthorizationFailure" in reason.reason  # data plane: wrong shared key
    assert "AuthorizationFailed" in reason.reason  # ARM: no containers/read permission
    assert record.location is not None and record.location.regions == ["westeurope"]
    assert record.transport is not None and record.transport.min_tls_version == "TLS1_2"
    # the account has no encryption scopes, so its containers can only use the account key
    assert record.encryption is not None and record.encryption.key_management == "provider-managed"
    errors = {e.call: e.error for e in record.evidence if e.error}
    assert set(errors) == {"blob:ListContainers", "storage:BlobContainers.List"}
    gap = [g for g in full.gaps if g.scope == "containers"]
    assert len(gap) == 1
    assert gap[0].account == SUBSCRIPTION and gap[0].code == UnknownCode.ACCESS_DENIED
    assert "euwdenied" in gap[0].reason


def test_account_without_containers(full: FullScan) -> None:
    record = full.resources["euwempty"]
    assert record.tags == {"data-class": "public"}
    assert record.unknown == {}
    assert record.access is not None and record.access.detail == {"allowBlobPublicAccess": False}


def test_subscription_that_cannot_be_listed_is_a_gap(full: FullScan) -> None:
    gaps = [g for g in full.gaps if g.scope == "subscription"]
    assert len(gaps) == 1
    assert gaps[0].account == DENIED_SUBSCRIPTION
    assert gaps[0].code == UnknownCode.ACCESS_DENIED
    assert gaps[0].reason.startswith("AuthorizationFailed:")
    assert all(r.account == SUBSCRIPTION for r in full.resources.values())


def test_throttled_after_retries_makes_keys_unknown(full: FullScan) -> None:
    record = full.resources["euwslow/data"]
    for leaf in ("scheme", "key_management", "key_id", "key_location"):
        reason = record.unknown_reason(f"encryption.{leaf}")
        assert reason is not None and reason.code == UnknownCode.THROTTLED
        assert "TooManyRequests" in reason.reason
    assert record.encryption is not None
    assert (record.encryption.enabled, record.encryption.algorithm) == (True, "AES256")
    assert record.encryption.key_management is None
    assert len(full.seen("/euwslow/encryptionScopes")) == 3  # first try + 2 retries


def test_429_with_retry_after_is_retried(full: FullScan) -> None:
    first_pages = [r for r in full.seen(ACCOUNTS_PATH) if "$skipToken" not in r.query]
    assert [r.status for r in first_pages] == [429, 200]


def test_account_listing_follows_next_links(full: FullScan) -> None:
    pages = [r for r in full.seen(ACCOUNTS_PATH) if r.status == 200]
    assert len(pages) == math.ceil(17 / 5)
    assert sorted(r.query["$skipToken"][0] for r in pages if "$skipToken" in r.query) == ["10", "15", "5"]
    assert full.calls["storage:StorageAccounts.List"] == 4 + 1  # four pages + the denied subscription


def test_container_listing_pages(full: FullScan) -> None:
    assert {k for k in full.resources if k.startswith("euwpaged/")} == {
        f"euwpaged/c0{i}" for i in range(1, 6)
    }
    expected = sum(max(1, math.ceil(len(c) / 2)) for c in DATA_PLANE.values())
    assert full.calls["blob:ListContainers"] == expected
    arm_pages = [
        r for r in full.seen("/euwscope/blobServices/default/containers") if r.path.endswith("containers")
    ]
    assert [r.query.get("$maxpagesize") for r in arm_pages] == [["2"], ["2"]]


def test_evidence_points_at_the_account_listing(full: FullScan) -> None:
    record = full.resources["eungrs/logs"]
    account = record.evidence[0]
    assert account.call == "storage:StorageAccounts.List"
    assert account.request == {"subscription": SUBSCRIPTION}
    assert account.response["properties"]["secondaryLocation"] == "westeurope"
    assert {"location", "encryption", "transport", "access", "tags"} <= set(account.attributes)
    listing = [e for e in record.evidence if e.call == "blob:ListContainers"]
    assert listing[0].response["name"] == "logs"


def test_records_round_trip_through_jsonl(full: FullScan) -> None:
    records: list[InventoryRecord] = [*full.resources.values(), *full.gaps]
    for record in records:
        # compare dumps: `==` also compares cached properties (normalized_tags) read by other tests
        assert parse_record(dump_record(record), "test").model_dump() == record.model_dump()


def test_training_only_needs_list_accounts_and_container_metadata(
    make_scanner: ScanFactory, arm: ArmServer
) -> None:
    scanner = make_scanner(
        storage_only(AttributeNeeds(frozenset({"tags.ai-training"}))), subscriptions=[SUBSCRIPTION]
    )
    resources, _ = split(list(scanner.scan()))
    assert set(scanner.calls.snapshot()) == {
        "storage:StorageAccounts.List",
        "blob:ListContainers",
        "storage:BlobContainers.List",
        "storage:BlobContainers.Get",
    }
    assert not arm.seen("encryptionScopes") and not arm.seen("/resources")
    record = resources["euwlrs/training"]
    assert (record.location, record.encryption, record.transport, record.access) == (None, None, None, None)
    assert record.tags is not None and record.tags["ai_training"] == "opt-in"
    assert record.evidence[0].attributes == ["tags"]


def test_location_only_needs_skip_metadata(make_scanner: ScanFactory, arm: ArmServer) -> None:
    scanner = make_scanner(
        storage_only(AttributeNeeds(frozenset({"location.regions"}))), subscriptions=[SUBSCRIPTION]
    )
    resources, _ = split(list(scanner.scan()))
    assert set(scanner.calls.snapshot()) == {
        "storage:StorageAccounts.List",
        "blob:ListContainers",
        "storage:BlobContainers.List",
    }
    assert not arm.seen("/containers/")
    assert resources["euwlrs/training"].tags is None
    assert resources["eungrs/logs"].location is not None


def test_key_management_without_key_location_skips_vault_lookups(
    make_scanner: ScanFactory, arm: ArmServer
) -> None:
    needs = storage_only(AttributeNeeds(frozenset({"encryption.key_management"})))
    scanner = make_scanner(needs, subscriptions=[SUBSCRIPTION])
    resources, _ = split(list(scanner.scan()))
    assert "resources:Resources.List" not in scanner.calls.snapshot()
    assert scanner.calls.snapshot()["storage:EncryptionScopes.List"] >= 17
    record = resources["euwcmk/cmkdata"]
    assert record.encryption is not None and record.encryption.key_management == "customer-managed"
    reason = record.unknown_reason("encryption.key_location")
    assert reason is not None and reason.code == UnknownCode.NOT_COLLECTED


def test_read_timeout_makes_attributes_unknown(make_scanner: ScanFactory, arm: ArmServer) -> None:
    path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/euwlrs/encryptionScopes"
    slow = Fault(200, {"value": []}, delay=1.5)
    arm.add_fault(path, slow, slow, slow)
    scanner = make_scanner(
        storage_only(AttributeNeeds(frozenset({"encryption.key_management"}))),
        subscriptions=[SUBSCRIPTION],
        read_timeout=0.3,
    )
    resources, _ = split(list(scanner.scan()))
    reason = resources["euwlrs/plain"].unknown_reason("encryption.key_management")
    assert reason is not None and reason.code == UnknownCode.TIMEOUT
    assert resources["eungrs/logs"].unknown_reason("encryption.key_management") is None


def test_parse_account_keys() -> None:
    assert parse_account_keys("one:a2V5:c2Vjb25k; two:dHdv;") == {"one": "a2V5", "two": "dHdv"}
    with pytest.raises(InputError):
        parse_account_keys("one")
