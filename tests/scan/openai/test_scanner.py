"""The OpenAI scanner against the loopback Admin API: residency, keys, archived projects, paging,
and only the calls the loaded policies need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auditor.inventory import dump_record
from auditor.model import ANY_REGION, StorageResource, UnknownCode
from auditor.policy.loader import load_zones
from auditor.scan.openai_source import GET_EXTERNAL_KEY, LIST_PROJECTS
from tests.conftest import SHIPPED_POLICIES

from .admin_server import EXTERNAL_KEYS, PROJECTS, AdminApiServer, project
from .conftest import (
    ADMIN_KEY,
    ESTATE,
    ESTATE_PAGE,
    ORGANIZATION,
    check_statuses,
    gaps,
    policies_with,
    project_id,
    resources,
    scan_records,
)

EU = sorted(
    c.lower()
    for c in load_zones([SHIPPED_POLICIES]).zones["eu"].countries  # the EEA's 30 countries
)
EU_GEOGRAPHY = sorted([*EU, "ch"])
DATA = "residency.data-in-zone"
PROCESSING = "residency.processing-in-zone"
KEY = "residency.key-in-zone"
TRAINING = "training.provider-opt-out"


@pytest.fixture
def estate(estate_server: AdminApiServer) -> dict[str, StorageResource]:
    records, _ = scan_records(estate_server)
    assert gaps(records) == []
    return resources(records)


# --- residency ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "location_type", "location_regions", "scope", "processing_regions"),
    [
        ("global-default", "global", [ANY_REGION], "global", [ANY_REGION]),
        ("eu-processing", "geography", EU_GEOGRAPHY, "geography", EU_GEOGRAPHY),
        ("us-processing", "geography", ["us"], "geography", ["us"]),
        ("jp-storage", "geography", ["jp"], "global", [ANY_REGION]),  # at rest in Japan, processed anywhere
    ],
)
def test_each_known_residency_resolves_through_the_catalog(
    estate: dict[str, StorageResource],
    name: str,
    location_type: str,
    location_regions: list[str],
    scope: str,
    processing_regions: list[str],
) -> None:
    record = estate[name]
    assert record.location is not None and record.processing is not None
    assert (record.location.type, sorted(record.location.regions)) == (
        location_type,
        sorted(location_regions),
    )
    assert (record.processing.scope, sorted(record.processing.regions)) == (scope, sorted(processing_regions))
    assert (
        record.location.raw
        == record.processing.raw
        == ESTATE[[p["name"] for p in ESTATE].index(name)]["residency"]
    )
    assert not [path for path in record.unknown if path.split(".")[0] in ("location", "processing")]


def test_the_eu_geography_includes_switzerland(estate: dict[str, StorageResource]) -> None:
    eu = estate["eu-processing"]
    assert eu.location is not None and eu.location.primary == "eu"
    assert "ch" in eu.location.regions and "ch" not in EU
    assert eu.state == "active" and eu.account == ORGANIZATION and eu.id == project_id("proj_eu")


def test_a_geography_the_catalog_does_not_list_is_unknown(estate: dict[str, StorageResource]) -> None:
    future = estate["future-geography"]
    assert future.location is not None and future.location.raw == "ZZ_STORAGE_PROCESSING"
    for path in ("location.regions", "processing.regions"):
        unknown = future.unknown_reason(path)
        assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED
        assert "'zz'" in unknown.reason and "zone catalog" in unknown.reason


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("odd-residency", UnknownCode.NOT_SUPPORTED, "'EVERYWHERE' is none of GLOBAL"),
        ("null-residency", UnknownCode.ERROR, "residency is null"),
        ("missing-residency", UnknownCode.ERROR, "no residency field"),
    ],
)
def test_an_unusable_residency_leaves_location_and_processing_unknown(
    estate: dict[str, StorageResource], name: str, code: UnknownCode, words: str
) -> None:
    record = estate[name]
    for path in ("location.regions", "processing.regions"):
        unknown = record.unknown_reason(path)
        assert unknown is not None and unknown.code is code and words in unknown.reason, (path, unknown)


# --- encryption -----------------------------------------------------------------------------------


def test_without_an_ekm_key_encryption_is_the_documented_default(estate: dict[str, StorageResource]) -> None:
    encryption = estate["global-default"].encryption
    assert encryption is not None
    assert (encryption.key_management, encryption.algorithm, encryption.provider_default) == (
        "provider-managed",
        "AES256",
        True,
    )
    assert encryption.source is not None and encryption.source.startswith("https://openai.com/")


@pytest.mark.parametrize(
    ("name", "key_id", "key_location"),
    [
        ("ekm-frankfurt", "ek_aws_frankfurt", "de"),  # kms_arn region eu-central-1 is in Germany
        ("ekm-iowa", "ek_gcp_iowa", "us"),  # kms_key_location us-central1
    ],
)
def test_an_ekm_key_is_located_through_its_external_key(
    estate: dict[str, StorageResource], name: str, key_id: str, key_location: str
) -> None:
    record = estate[name]
    assert record.encryption is not None
    assert (record.encryption.key_management, record.encryption.key_id) == ("customer-managed", key_id)
    assert record.encryption.key_location == key_location
    assert "encryption.key_location" not in record.unknown
    calls = [e.call for e in record.evidence]
    assert calls == [LIST_PROJECTS, GET_EXTERNAL_KEY]


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("ekm-vault", UnknownCode.NOT_SUPPORTED, "a Key Vault URI names no region"),
        ("ekm-deleted-key", UnknownCode.ERROR, "HTTP 404"),
    ],
)
def test_an_ekm_key_that_cannot_be_located_is_unknown(
    estate: dict[str, StorageResource], name: str, code: UnknownCode, words: str
) -> None:
    record = estate[name]
    assert record.encryption is not None and record.encryption.key_management == "customer-managed"
    unknown = record.unknown_reason("encryption.key_location")
    assert unknown is not None and unknown.code is code and words in unknown.reason, unknown


def test_each_distinct_key_is_read_once(estate_server: AdminApiServer) -> None:
    estate_server.projects.append(
        project("proj_ekm_eu2", "ekm-frankfurt-2", external_key_id="ek_aws_frankfurt")
    )
    records, scanner = scan_records(estate_server)
    assert resources(records)["ekm-frankfurt-2"].encryption.key_location == "de"  # type: ignore[union-attr]
    reads = [r.path.rsplit("/", 1)[1] for r in estate_server.served() if r.path.startswith(EXTERNAL_KEYS)]
    assert sorted(reads) == ["ek_aws_frankfurt", "ek_azure_vault", "ek_deleted", "ek_gcp_iowa"]
    assert scanner.calls.snapshot()[GET_EXTERNAL_KEY] == 4


# --- archived projects, paging --------------------------------------------------------------------


def test_an_archived_project_is_kept_with_its_state(estate: dict[str, StorageResource]) -> None:
    archived = estate["archived-global"]
    assert archived.state == "archived"
    assert archived.location is not None and archived.location.raw == "GLOBAL"


def test_the_listing_pages_with_after_and_asks_for_archived_projects(estate_server: AdminApiServer) -> None:
    records, scanner = scan_records(estate_server)
    assert [r.name for r in records if isinstance(r, StorageResource) and r.kind == "ai-project"] == [
        p["name"] for p in ESTATE
    ]
    listings = estate_server.served(PROJECTS)
    pages = -(-len(ESTATE) // ESTATE_PAGE)
    assert len(listings) == pages == scanner.calls.snapshot()[LIST_PROJECTS]
    assert all(r.query["include_archived"] == ["true"] and r.query["limit"] == ["100"] for r in listings)
    expected_after = [None, *(ESTATE[n * ESTATE_PAGE - 1]["id"] for n in range(1, pages))]
    assert [r.query.get("after", [None])[0] for r in listings] == expected_after
    assert all(r.authorized for r in estate_server.served())


def test_each_record_keeps_its_project_answer_as_evidence(estate: dict[str, StorageResource]) -> None:
    evidence = estate["jp-storage"].evidence[0]
    assert evidence.call == LIST_PROJECTS
    assert evidence.response["project"]["residency"] == "JP_STORAGE"
    assert evidence.response["headers"]["openai-organization"] == ORGANIZATION
    assert evidence.request == {"limit": 100, "include_archived": True, "after": None}
    assert sorted(evidence.attributes) == ["encryption", "location", "processing"]


# --- verdicts -------------------------------------------------------------------------------------


def _statuses(server: AdminApiServer, tmp_path: Path, zone: str) -> dict[tuple[str, str], str]:
    records, _ = scan_records(server)
    inventory = tmp_path / f"ai-{zone}.jsonl"
    inventory.write_bytes(b"".join(dump_record(r) for r in records))
    return check_statuses(inventory, f"zone={zone}")


EXPECTED_EU: dict[str, dict[str, str]] = {
    # project id: policy -> status with --param zone=eu (no entry: out of the policy's scope)
    "proj_global": {DATA: "fail", PROCESSING: "fail"},
    "proj_eu": {DATA: "fail", PROCESSING: "fail"},  # Switzerland is not in zone eu
    "proj_us": {DATA: "fail", PROCESSING: "fail"},
    "proj_jp_storage": {DATA: "fail", PROCESSING: "fail"},
    "proj_future": {DATA: "error", PROCESSING: "error"},
    "proj_odd": {DATA: "error", PROCESSING: "error"},
    "proj_null": {DATA: "error", PROCESSING: "error"},
    "proj_missing": {DATA: "error", PROCESSING: "error"},
    "proj_archived": {},
    "proj_ekm_eu": {DATA: "fail", PROCESSING: "fail", KEY: "pass"},
    "proj_ekm_us": {DATA: "fail", PROCESSING: "fail", KEY: "fail"},
    "proj_ekm_vault": {DATA: "fail", PROCESSING: "fail", KEY: "error"},
    "proj_ekm_gone": {DATA: "fail", PROCESSING: "fail", KEY: "error"},
}
# zone eu-ch admits OpenAI's EU geography; everything else is as in zone eu.
EXPECTED_EU_CH = {
    **EXPECTED_EU,
    "proj_eu": {DATA: "pass", PROCESSING: "pass"},
    "proj_ekm_eu": {DATA: "pass", PROCESSING: "pass", KEY: "pass"},
    "proj_ekm_vault": {DATA: "pass", PROCESSING: "pass", KEY: "error"},
    "proj_ekm_gone": {DATA: "pass", PROCESSING: "pass", KEY: "error"},
}


@pytest.mark.parametrize(("zone", "expected"), [("eu", EXPECTED_EU), ("eu-ch", EXPECTED_EU_CH)])
def test_verdicts_per_policy_and_project(
    estate_server: AdminApiServer, tmp_path: Path, zone: str, expected: dict[str, dict[str, str]]
) -> None:
    statuses = _statuses(estate_server, tmp_path, zone)
    found: dict[str, dict[str, str]] = {}
    for (policy, resource_id), status in statuses.items():
        if "/project/" in resource_id:
            found.setdefault(resource_id.rsplit("/", 1)[1], {})[policy] = status
    assert {p: found.get(p, {}) for p in expected} == expected
    assert set(found) <= set(expected)
    assert statuses[(TRAINING, f"openai:organization/{ORGANIZATION}/settings")] == "error"


# --- the settings record --------------------------------------------------------------------------


def test_training_is_unknown_until_attested(estate: dict[str, StorageResource]) -> None:
    settings = estate[ORGANIZATION]
    assert (settings.kind, settings.id) == ("ai-settings", f"openai:organization/{ORGANIZATION}/settings")
    assert settings.training is not None
    assert (settings.training.provider_may_train, settings.training.decided_by) == (None, None)
    assert settings.training.source == "https://platform.openai.com/docs/guides/your-data"
    assert settings.training.as_of is not None
    unknown = settings.unknown_reason("training.provider_may_train")
    assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED
    assert "--attestations" in unknown.reason and "opt in" in unknown.reason
    assert [e.call for e in settings.evidence] == ["docs:openai.data-controls"]


# --- only the calls the policies need -------------------------------------------------------------

KEY_MANAGEMENT_ONLY = """\
policies:
  - id: openai.provider-keys
    title: OpenAI projects use provider-managed keys
    description: Reads only who manages the key, never where it is.
    severity: low
    scope: {kinds: [ai-project]}
    condition: {attribute: encryption.key_management, op: equals, value: provider-managed}
    expected: provider-managed
"""


def test_a_storage_only_policy_set_makes_no_request(estate_server: AdminApiServer, tmp_path: Path) -> None:
    policies = policies_with(tmp_path, "encryption.yaml", "transport.yaml")
    records, scanner = scan_records(estate_server, policies)
    assert records == [] and estate_server.served() == [] and scanner.calls.total == 0
    without_key, _ = scan_records(estate_server, policies, admin_key=None)
    assert without_key == [] and estate_server.served() == []  # nothing needed: not even a missing-key gap


def test_the_key_location_is_not_read_when_no_policy_reads_it(
    estate_server: AdminApiServer, tmp_path: Path
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "keys.yaml").write_text(KEY_MANAGEMENT_ONLY, encoding="utf-8")
    records, _ = scan_records(estate_server, policies)
    found = resources(records)
    assert not [r for r in estate_server.served() if r.path.startswith(EXTERNAL_KEYS)]
    assert ORGANIZATION not in found  # no policy is scoped to ai-settings
    ekm = found["ekm-frankfurt"]
    assert ekm.encryption is not None and ekm.encryption.key_management == "customer-managed"
    unknown = ekm.unknown_reason("encryption.key_location")
    assert unknown is not None and unknown.code is UnknownCode.NOT_COLLECTED
    assert ekm.location is None and ekm.processing is None  # not read: no policy reads them


@pytest.mark.parametrize(("organization", "requests"), [(ORGANIZATION, 0), (None, 1)])
def test_settings_alone_need_at_most_the_organization_id(
    estate_server: AdminApiServer, tmp_path: Path, organization: str | None, requests: int
) -> None:
    policies = policies_with(tmp_path, "training.yaml")
    records, _ = scan_records(estate_server, policies, organization=organization)
    assert [(r.kind, r.account) for r in resources(records).values()] == [("ai-settings", ORGANIZATION)]
    served = estate_server.served()
    assert len(served) == requests
    assert all(r.query["limit"] == ["1"] for r in served)  # one project: only the header is read


def test_the_configured_organization_is_sent_and_names_the_records(estate_server: AdminApiServer) -> None:
    estate_server.organization = "acme-prod"  # the header names the organization another way
    records, _ = scan_records(estate_server, organization="org-configured")
    assert {r.account for r in resources(records).values()} == {"org-configured"}
    assert {r.organization for r in estate_server.served()} == {"org-configured"}


def test_without_the_header_the_organization_is_default(estate_server: AdminApiServer) -> None:
    estate_server.send_organization_header = False
    records, _ = scan_records(estate_server)
    assert {r.account for r in resources(records).values()} == {"default"}


def _no_key(records: list[Any]) -> bool:
    return all(ADMIN_KEY.encode() not in dump_record(r) for r in records)


def test_the_key_is_in_no_record(estate: dict[str, StorageResource]) -> None:
    assert _no_key(list(estate.values()))


def test_an_unknown_geography_stored_only_is_still_processed_anywhere(admin_server: AdminApiServer) -> None:
    admin_server.projects = [project("proj_zz", "zz-storage", residency="ZZ_STORAGE")]
    records, _ = scan_records(admin_server)
    record = resources(records)["zz-storage"]
    assert record.unknown_reason("location.regions") is not None
    assert (
        record.unknown_reason("processing.regions") is None
    )  # decidable: <GEO>_STORAGE is processed anywhere
    assert record.processing is not None and record.processing.regions == [ANY_REGION]


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (project("proj_k", "no-key-field", omit=("external_key_id",)), "no external_key_id field"),
        ({**project("proj_k", "number-key"), "external_key_id": 42}, "external_key_id is 42"),
        ({**project("proj_k", "empty-key"), "external_key_id": ""}, 'external_key_id is ""'),
    ],
)
def test_an_unusable_external_key_id_leaves_encryption_unknown(
    admin_server: AdminApiServer, tmp_path: Path, entry: dict[str, Any], words: str
) -> None:
    admin_server.projects = [entry]
    records, _ = scan_records(admin_server)
    record = resources(records)[entry["name"]]
    unknown = record.unknown_reason("encryption.key_management")
    assert record.encryption is None and unknown is not None
    assert unknown.code is UnknownCode.ERROR and words in unknown.reason
    inventory = tmp_path / "ai.jsonl"
    inventory.write_bytes(b"".join(dump_record(r) for r in records))
    assert check_statuses(inventory, "zone=eu")[(KEY, project_id("proj_k"))] == "error"  # scope undecidable
