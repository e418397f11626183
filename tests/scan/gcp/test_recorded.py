"""`auditor scan gcp` against the recorded JSON API server: locations, paging, 403, 429."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.model import UnknownCode
from auditor.policy.loader import load_zones
from auditor.scan.gcp_source import GcpCatalog

from .conftest import POLICIES, RECORDED
from .helpers import ScanRun, scan_gcp
from .recorded_server import Fault, RecordedGcsServer, RecordedProject, load_projects

CATALOG = load_zones([])
EU = CATALOG.regions_in_zone("eu", "gcp")
LISTED = [
    "eu-analytics-region",
    "eu-archive-multi",
    "eu-backup-eur4",
    "eu-london-eur5",
    "eu-frankfurt-eur7",
    "eu-custom-dual",
    "us-custom-dual",
    "asia-media-multi",
    "eu-cmek-kms-europe",
    "eu-new-region",
]
UNREACHABLE = ["eu-unreachable-denied", "eu-unreachable-throttled"]


@pytest.fixture(scope="module")
def eu_scan(recorded_session: RecordedGcsServer, tmp_path_factory: pytest.TempPathFactory) -> ScanRun:
    """One scan of auditor-eu and auditor-denied with every attribute group needed."""
    recorded_session.load(
        load_projects(Path(__file__).resolve().parents[3] / "fixtures" / "recorded" / "gcs")
    )
    run = scan_gcp(
        tmp_path_factory.mktemp("eu"),
        recorded_session.url,
        "--project",
        "auditor-eu",
        "--project",
        "auditor-denied",
        "--policies",
        str(POLICIES),
    )
    run.server_requests = dict(recorded_session.requests)
    return run


def test_every_bucket_of_every_page_is_listed_once(eu_scan: ScanRun) -> None:
    assert sorted(eu_scan.resources) == sorted(LISTED + UNREACHABLE)
    for resource in eu_scan.resources.values():
        assert resource.provider == "gcp"
        assert resource.kind == "bucket"
        assert resource.account == "auditor-eu"
        assert resource.id == f"gs://{resource.name}"


def test_paging_counts_one_call_per_page_and_page_two_was_retried(eu_scan: ScanRun) -> None:
    # 10 buckets at 3 per page = 4 pages for auditor-eu, 1 refused page for auditor-denied.
    assert eu_scan.calls("storage:buckets.list") == 5
    # The server saw one request more: page 2 answered 429 once and the retry succeeded.
    assert eu_scan.server_requests["buckets.list"] == 6
    tokens = {
        e.request["pageToken"] if e.request else None
        for r in eu_scan.resources.values()
        for e in r.evidence
        if e.call == "storage:buckets.list"
    }
    assert None in tokens and len(tokens) == 4


def test_listing_entries_are_used_without_refetching(eu_scan: ScanRun) -> None:
    # Only the two unreachable buckets get their own GET (one 403, one 429 then 200).
    assert eu_scan.calls("storage:buckets.get") == 2
    assert eu_scan.server_requests["buckets.get"] == 3
    bucket = eu_scan.resources["eu-analytics-region"]
    (evidence,) = bucket.evidence[:1]
    assert evidence.call == "storage:buckets.list"
    assert evidence.response["name"] == "eu-analytics-region"
    assert evidence.response["locationType"] == "region"
    assert "acl" not in evidence.response  # projection=noAcl


@pytest.mark.parametrize(
    ("name", "raw", "kind", "regions", "inside_eu"),
    [
        ("eu-analytics-region", "EUROPE-WEST1", "region", ["europe-west1"], True),
        ("eu-backup-eur4", "EUR4", "dual-region", ["europe-north1", "europe-west4"], True),
        ("eu-london-eur5", "EUR5", "dual-region", ["europe-west1", "europe-west2"], False),
        ("eu-frankfurt-eur7", "EUR7", "dual-region", ["europe-west2", "europe-west3"], False),
        ("eu-custom-dual", "EU", "dual-region", ["europe-west1", "europe-west4"], True),
        ("us-custom-dual", "US", "dual-region", ["us-east1", "us-west1"], False),
    ],
)
def test_location_resolves_to_member_regions(
    eu_scan: ScanRun, name: str, raw: str, kind: str, regions: list[str], inside_eu: bool
) -> None:
    location = eu_scan.resources[name].location
    assert location is not None
    assert location.raw == raw
    assert location.type == kind
    assert location.primary == raw.lower()
    assert sorted(location.regions) == regions
    assert (set(location.regions) <= EU) is inside_eu
    assert "location.regions" not in eu_scan.resources[name].unknown
    if kind == "dual-region":
        assert sorted((r.region, r.kind) for r in location.replicas) == [
            (r, "dual-region-member") for r in regions
        ]
    else:
        assert location.replicas == []


def test_eu_code_is_decided_by_its_type(eu_scan: ScanRun) -> None:
    multi = eu_scan.resources["eu-archive-multi"].location
    dual = eu_scan.resources["eu-custom-dual"].location
    assert multi is not None and dual is not None
    assert multi.raw == dual.raw == "EU"
    assert multi.type == "multi-region"
    assert multi.regions == CATALOG.section("gcp", GcpCatalog).multi_regions["eu"].members
    assert {r.kind for r in multi.replicas} == {"multi-region-member"}
    assert set(multi.regions) <= EU
    assert not {"europe-west2", "europe-west6"} & set(multi.regions)
    assert dual.regions == ["europe-west1", "europe-west4"]


def test_asia_multi_region_is_never_inside_a_one_country_zone(eu_scan: ScanRun) -> None:
    location = eu_scan.resources["asia-media-multi"].location
    assert location is not None and location.type == "multi-region"
    assert len({CATALOG.country_of("gcp", r) for r in location.regions}) > 1
    single_country = [name for name, zone in CATALOG.zones.items() if len(zone.countries) == 1]
    assert single_country
    for zone in single_country:
        assert not set(location.regions) <= CATALOG.regions_in_zone(zone, "gcp"), zone
    assert not set(location.regions) <= EU


def test_region_missing_from_the_catalog_is_unknown_not_outside(eu_scan: ScanRun) -> None:
    bucket = eu_scan.resources["eu-new-region"]
    assert bucket.location is not None and bucket.location.regions == ["europe-west99"]
    unknown = bucket.unknown_reason("location.regions")
    assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED
    assert "europe-west99" in unknown.reason


def test_cmek_in_kms_multi_region_keeps_its_location(eu_scan: ScanRun) -> None:
    encryption = eu_scan.resources["eu-cmek-kms-europe"].encryption
    assert encryption is not None
    assert encryption.scheme == "CMEK"
    assert encryption.key_management == "customer-managed"
    assert encryption.key_location == "europe"
    # KMS 'europe' publishes no member regions, so it is never inside a zone.
    assert "europe" not in EU


def test_bucket_get_refused_makes_every_group_unknown(eu_scan: ScanRun) -> None:
    bucket = eu_scan.resources["eu-unreachable-denied"]
    assert bucket.location is None and bucket.encryption is None and bucket.tags is None
    for group in ("location", "encryption", "transport", "access", "tags"):
        unknown = bucket.unknown[group]
        assert unknown.code is UnknownCode.ACCESS_DENIED
        assert unknown.reason.startswith("403 forbidden:")
        assert "storage.buckets.get" in unknown.reason and "(storage:buckets.get)" in unknown.reason
    (evidence,) = bucket.evidence
    assert evidence.call == "storage:buckets.get" and evidence.error and evidence.error.startswith("403")


def test_bucket_get_throttled_once_is_retried(eu_scan: ScanRun) -> None:
    bucket = eu_scan.resources["eu-unreachable-throttled"]
    assert bucket.location is not None and bucket.location.regions == ["europe-west3"]
    assert bucket.encryption is not None and bucket.encryption.key_location == "europe-west3"
    assert not any(k.startswith(("location", "encryption")) for k in bucket.unknown)
    assert bucket.evidence[0].call == "storage:buckets.get"


def test_project_that_cannot_be_listed_is_a_coverage_gap(eu_scan: ScanRun) -> None:
    (gap,) = eu_scan.gaps
    assert gap.provider == "gcp" and gap.account == "auditor-denied" and gap.scope == "project"
    assert gap.code is UnknownCode.ACCESS_DENIED
    assert "403 forbidden" in gap.reason and "storage.buckets.list" in gap.reason
    assert "denied-never-listed" not in eu_scan.resources


def test_project_throttled_past_the_deadline_is_a_throttled_gap(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    run = scan_gcp(
        tmp_path,
        recorded_server.url,
        "--project",
        "auditor-throttled",
        "--retry-deadline",
        "1.5",
        "--policies",
        str(POLICIES),
    )
    assert run.resources == {}
    (gap,) = run.gaps
    assert gap.code is UnknownCode.THROTTLED
    assert gap.reason.startswith("429 rateLimitExceeded:") and "retries gave up" in gap.reason
    assert recorded_server.requests["buckets.list"] >= 2  # it did retry before giving up


def test_transport_is_honest_about_plaintext_and_unknown_tls(eu_scan: ScanRun) -> None:
    bucket = eu_scan.resources["eu-analytics-region"]
    assert bucket.transport is not None
    # XML API endpoints accept plain HTTP; no bucket setting refuses it.
    assert bucket.transport.plaintext_refused is False
    assert bucket.transport.min_tls_version is None
    unknown = bucket.unknown_reason("transport.min_tls_version")
    assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED
    assert "gcp.restrictTLSVersion" in unknown.reason
    notes = bucket.evidence[0].request["notes"]  # type: ignore[index]
    assert any("request-endpoints" in n for n in notes)
    assert any("Customer-supplied" in n for n in notes)


def _custom_project(**changes: object) -> dict[str, RecordedProject]:
    base = load_projects(RECORDED)["auditor-eu"]
    project = RecordedProject(project="auditor-eu", buckets=base.buckets, max_page_size=3)
    for key, value in changes.items():
        setattr(project, key, value)
    return {"auditor-eu": project}


def test_listing_that_fails_midway_keeps_read_pages_and_reports_a_gap(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    recorded_server.load(_custom_project(faults=[Fault(op="list", page=3, status=403)]))
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(POLICIES))
    assert sorted(run.resources) == sorted(LISTED[:6])  # pages 1 and 2
    (gap,) = run.gaps
    assert gap.code is UnknownCode.ACCESS_DENIED
    assert gap.reason.startswith("listing stopped at page 3 after 6 buckets: 403 forbidden")


def test_server_errors_are_retried(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    recorded_server.load(_custom_project(faults=[Fault(op="list", page=1, status=503, times=2)]))
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(POLICIES))
    assert sorted(run.resources) == sorted(LISTED)
    assert run.gaps == []
    assert recorded_server.requests["buckets.list"] == 4 + 2


def test_bucket_without_location_type_is_not_guessed(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    bucket = {
        k: v for k, v in load_projects(RECORDED)["auditor-eu"].buckets[1].items() if k != "locationType"
    }
    assert bucket["location"] == "EU"
    recorded_server.load(_custom_project(buckets=[bucket]))
    run = scan_gcp(tmp_path, recorded_server.url, "--project", "auditor-eu", "--policies", str(POLICIES))
    resource = run.resources[bucket["name"]]
    assert (
        resource.location is not None and resource.location.regions == [] and resource.location.type is None
    )
    unknown = resource.unknown_reason("location.regions")
    assert unknown is not None and "locationType" in unknown.reason
