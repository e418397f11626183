"""`auditor scan gcp` against gcp-storage-emulator: labels, CMEK key names, retention, UBLA, PAP."""

from __future__ import annotations

import pytest

from auditor.model import normalize_tag_key
from auditor.policy.loader import load_zones
from auditor.scan.gcp_source import GcpCatalog

from .conftest import EMULATOR_PROJECT, POLICIES
from .helpers import ScanRun, scan_gcp

EU = load_zones([]).regions_in_zone("eu", "gcp")


@pytest.fixture(scope="module")
def emulator_scan(seeded_emulator: str, tmp_path_factory: pytest.TempPathFactory) -> ScanRun:
    """One scan of the seeded emulator with every attribute group needed."""
    return scan_gcp(
        tmp_path_factory.mktemp("emu"),
        seeded_emulator,
        "--project",
        EMULATOR_PROJECT,
        "--policies",
        str(POLICIES),
    )


def test_emulator_buckets_are_listed(emulator_scan: ScanRun) -> None:
    assert {
        "plain-default",
        "cmek-in-zone",
        "cmek-outside-zone",
        "labels-dash",
        "labels-underscore",
        "retention-locked-down",
    } <= set(emulator_scan.resources)
    assert emulator_scan.gaps == []
    assert emulator_scan.calls("storage:buckets.list") == 1
    assert emulator_scan.calls("storage:buckets.get") == 0


def test_default_encryption_is_google_managed_aes256(emulator_scan: ScanRun) -> None:
    encryption = emulator_scan.resources["plain-default"].encryption
    assert encryption is not None
    assert encryption.enabled is True
    assert encryption.algorithm == "AES256"
    assert encryption.scheme == "google-managed"
    assert encryption.key_management == "provider-managed"
    assert encryption.key_id is None and encryption.key_location is None
    assert encryption.provider_default is True
    assert encryption.source == "https://cloud.google.com/storage/docs/encryption/default-keys"


@pytest.mark.parametrize(
    ("name", "location", "inside_eu"),
    [("cmek-in-zone", "europe-west1", True), ("cmek-outside-zone", "us-central1", False)],
)
def test_cmek_key_location_comes_from_the_key_name(
    emulator_scan: ScanRun, name: str, location: str, inside_eu: bool
) -> None:
    bucket = emulator_scan.resources[name]
    encryption = bucket.encryption
    assert encryption is not None
    assert encryption.scheme == "CMEK"
    assert encryption.key_management == "customer-managed"
    assert encryption.provider_default is False
    assert encryption.key_id == bucket.evidence[0].response["encryption"]["defaultKmsKeyName"]
    assert encryption.key_id is not None and f"/locations/{location}/" in encryption.key_id
    assert encryption.key_location == location
    assert (encryption.key_location in EU) is inside_eu
    assert "encryption.key_location" not in bucket.unknown


def test_labels_keep_raw_keys_and_fold_ai_training_variants(emulator_scan: ScanRun) -> None:
    dash = emulator_scan.resources["labels-dash"]
    underscore = emulator_scan.resources["labels-underscore"]
    assert dash.tags == {
        "ai-training": "opt-in",
        "ai-training-consent": "dpa-2024-17",
        "data-class": "personal",
    }
    assert underscore.tags == {"ai_training": "opt-in"}
    assert dash.normalized_tags is not None and dash.normalized_tags["ai-training"] == "opt-in"
    assert underscore.normalized_tags == {normalize_tag_key("ai_training"): "opt-in"}
    assert normalize_tag_key("ai_training") == "ai-training"
    assert emulator_scan.resources["plain-default"].tags == {}  # no labels: explicitly none


def test_access_reads_pap_ubla_and_retention(emulator_scan: ScanRun) -> None:
    locked = emulator_scan.resources["retention-locked-down"].access
    plain = emulator_scan.resources["plain-default"].access
    assert locked is not None and plain is not None
    assert locked.public_access_blocked is True
    assert locked.detail is not None
    assert locked.detail["publicAccessPrevention"] == "enforced"
    assert locked.detail["uniformBucketLevelAccess"] is True
    assert locked.detail["retentionPolicy"]["retentionPeriod"] == "86400"
    assert plain.public_access_blocked is False
    assert plain.detail == {
        "uniformBucketLevelAccess": False,
        "publicAccessPrevention": None,
        "retentionPolicy": None,
    }


def test_emulator_location_is_read_as_returned(emulator_scan: ScanRun) -> None:
    # gcp-storage-emulator always answers US / multi-region; the scanner resolves what it is told.
    location = emulator_scan.resources["plain-default"].location
    assert location is not None
    assert (location.raw, location.type) == ("US", "multi-region")
    assert set(location.regions) == set(load_zones([]).section("gcp", GcpCatalog).multi_regions["us"].members)
