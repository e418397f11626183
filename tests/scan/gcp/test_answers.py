"""Answers that parse but say too little or the wrong thing, partial locations, missing credentials.

Served by the recorded JSON API server (a fault with a ``body`` answers that document with 200),
scanned with `auditor scan gcp` and judged with `auditor check`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, UnknownCode
from auditor.scan.gcp import GET_CALL, LIST_CALL, MALFORMED

from .conftest import POLICIES, REPO
from .helpers import ScanRun, check_statuses, scan_gcp
from .recorded_server import Fault, RecordedGcsServer, RecordedProject, _token

PROJECT = "answers"
RESIDENCY = "gcstest.residency"
ENCRYPTED = "gcstest.encryption-at-rest"
PUBLIC = "gcstest.public-access"
TRAINING = "gcstest.ai-training"


def _bucket(name: str, **extra: Any) -> dict[str, Any]:
    bucket: dict[str, Any] = {
        "kind": "storage#bucket",
        "name": name,
        "location": "EUROPE-WEST1",
        "locationType": "region",
        "iamConfiguration": {"publicAccessPrevention": "enforced"},
        "labels": {"ai-training": "opt-out"},
    }
    bucket.update(extra)
    return {k: v for k, v in bucket.items() if v is not None}


def _serve(server: RecordedGcsServer, buckets: list[dict[str, Any]], **changes: Any) -> None:
    project = RecordedProject(project=PROJECT, buckets=buckets, max_page_size=2)
    for key, value in changes.items():
        setattr(project, key, value)
    server.load({PROJECT: project})


def _scan(server: RecordedGcsServer, tmp_path: Path) -> ScanRun:
    return scan_gcp(
        tmp_path, server.url, "--project", PROJECT, "--policies", str(POLICIES), "--retry-deadline", "0.3"
    )


def _statuses(run: ScanRun) -> dict[tuple[str, str], str]:
    return check_statuses(run.inventory, POLICIES, "zone=eu")


# --- listing pages ---------------------------------------------------------------------------


def test_a_project_without_buckets_is_complete(recorded_server: RecordedGcsServer, tmp_path: Path) -> None:
    _serve(recorded_server, [])  # answers {"kind": "storage#buckets"}: a valid, empty listing
    run = _scan(recorded_server, tmp_path)
    assert run.resources == {} and run.gaps == []
    assert run.calls(LIST_CALL) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "listing page says nothing"),
        ({"kind": "storage#buckets", "nextPageToken": "abc"}, "nextPageToken but no items"),
        ({"kind": "storage#objects", "items": []}, "kind 'storage#objects'"),
        ({"kind": "storage#buckets", "items": {"name": "x"}}, "'items' is a dict"),
        ({"kind": "storage#buckets", "items": [], "unreachable": [7]}, "'unreachable' is not a list"),
    ],
)
def test_a_page_that_says_nothing_usable_is_a_gap_after_the_pages_read(
    recorded_server: RecordedGcsServer, tmp_path: Path, body: dict[str, Any], problem: str
) -> None:
    buckets = [_bucket(f"b{i}") for i in range(4)]
    _serve(recorded_server, buckets, faults=[Fault(op="list", page=2, status=200, body=body)])
    run = _scan(recorded_server, tmp_path)
    assert sorted(run.resources) == ["b0", "b1"]
    (gap,) = run.gaps
    assert gap.code is UnknownCode.ERROR and gap.scope == "project"
    assert gap.reason.startswith(f"listing stopped at page 2 after 2 buckets: {MALFORMED}: ")
    assert problem in gap.reason and f"({LIST_CALL})" in gap.reason
    assert gap.reason.endswith("not listed: its buckets from page 2 on")
    # The gap keeps the failed page's evidence with its raw bytes (not only 96 of them in the reason).
    (evidence,) = gap.evidence
    assert evidence.call == LIST_CALL and evidence.request is not None and evidence.request["pageToken"]
    assert evidence.error is not None and problem in evidence.error
    assert evidence.response["bytes"] > 0 and evidence.response["head"]


def test_a_repeated_page_token_ends_the_listing_with_a_gap(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    buckets = [_bucket(f"b{i}") for i in range(6)]
    loop = {"kind": "storage#buckets", "items": buckets[2:4], "nextPageToken": _token(PROJECT, 2)}
    _serve(recorded_server, buckets, faults=[Fault(op="list", page=2, status=200, body=loop)])
    run = _scan(recorded_server, tmp_path)
    assert sorted(run.resources) == ["b0", "b1", "b2", "b3"]
    (gap,) = run.gaps
    assert gap.reason.startswith("listing stopped at page 3 after 4 buckets: ")
    assert "repeats an earlier page's" in gap.reason
    assert gap.evidence[0].response == {"nextPageToken": _token(PROJECT, 2)}
    assert recorded_server.requests["buckets.list"] == 2  # it did not follow the loop


def test_an_entry_without_a_name_is_a_gap_and_the_others_are_kept(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    page = {"kind": "storage#buckets", "items": [_bucket("b0"), {"kind": "storage#bucket"}, "junk"]}
    _serve(recorded_server, [_bucket("b0")], faults=[Fault(op="list", page=1, status=200, body=page)])
    run = _scan(recorded_server, tmp_path)
    assert sorted(run.resources) == ["b0"]
    gaps = sorted(run.gaps, key=lambda g: g.reason)
    assert [g.reason.split(" names no bucket")[0] for g in gaps] == [
        f"{MALFORMED}: entry 2 of listing page 1",
        f"{MALFORMED}: entry 3 of listing page 1",
    ]
    assert all(g.code is UnknownCode.ERROR and g.reason.endswith("not listed: that bucket") for g in gaps)
    heads = [g.evidence[0].response["head"] for g in gaps]
    assert heads == ['{"kind":"storage#bucket"}', '"junk"']
    assert all(g.evidence[0].call == LIST_CALL for g in gaps)


# --- bucket entries ------------------------------------------------------------------------------


def test_an_entry_without_location_is_unknown_where_location_feeds_only(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    _serve(recorded_server, [_bucket("no-location", location=None)])
    run = _scan(recorded_server, tmp_path)
    bucket = run.resources["no-location"]
    assert run.gaps == []
    assert bucket.location is not None and bucket.location.type == "region"
    for leaf in ("raw", "primary", "regions", "replicas"):
        unknown = bucket.unknown[f"location.{leaf}"]
        assert unknown.code is UnknownCode.ERROR and unknown.partial is None
        assert unknown.reason == f"{MALFORMED}: bucket resource has no usable location (None) ({LIST_CALL})"
    assert "location.type" not in bucket.unknown
    statuses = _statuses(run)
    assert statuses[(RESIDENCY, "gs://no-location")] == "error"
    assert statuses[(ENCRYPTED, "gs://no-location")] == "pass"  # encryption was readable
    assert statuses[(PUBLIC, "gs://no-location")] == "pass"


@pytest.mark.parametrize(
    ("field", "value", "group", "policy"),
    [
        ("encryption", "CMEK please", "encryption", ENCRYPTED),
        ("encryption", {"defaultKmsKeyName": 42}, "encryption", ENCRYPTED),
        ("labels", ["ai-training"], "tags", TRAINING),
        ("iamConfiguration", "enforced", "access", PUBLIC),
        ("iamConfiguration", {"publicAccessPrevention": True}, "access", PUBLIC),
    ],
)
def test_a_field_of_the_wrong_shape_makes_its_group_unknown(
    recorded_server: RecordedGcsServer, tmp_path: Path, field: str, value: Any, group: str, policy: str
) -> None:
    _serve(recorded_server, [_bucket("odd", **{field: value})])
    run = _scan(recorded_server, tmp_path)
    bucket = run.resources["odd"]
    assert getattr(bucket, group) is None
    unknown = bucket.unknown[group]
    assert unknown.code is UnknownCode.ERROR
    assert unknown.reason.startswith(f"{MALFORMED}: the bucket's {group} fields cannot be read")
    assert unknown.reason.endswith(f"({LIST_CALL})")
    assert bucket.location is not None and bucket.location.regions == ["europe-west1"]
    assert bucket.evidence[0].response[field] == value  # the raw entry is the evidence
    statuses = _statuses(run)
    assert statuses[(policy, "gs://odd")] == "error"
    assert statuses[(RESIDENCY, "gs://odd")] == "pass"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({}, "names None, not the requested 'lost'"),
        (_bucket("someone-else"), "names 'someone-else', not the requested 'lost'"),
        ({**_bucket("lost"), "kind": "storage#object"}, "kind 'storage#object'"),
    ],
)
def test_a_bucket_get_answering_the_wrong_thing_keeps_the_bucket_unknown(
    recorded_server: RecordedGcsServer, tmp_path: Path, answer: dict[str, Any], problem: str
) -> None:
    _serve(
        recorded_server,
        [_bucket("b0")],
        unreachable=["projects/_/buckets/lost"],
        get={"lost": _bucket("lost")},
        faults=[Fault(op="get", bucket="lost", status=200, body=answer)],
    )
    run = _scan(recorded_server, tmp_path)
    assert sorted(run.resources) == ["b0", "lost"] and run.gaps == []
    lost = run.resources["lost"]
    for group in ("location", "encryption", "transport", "access", "tags"):
        assert lost.unknown[group].code is UnknownCode.ERROR
        assert lost.unknown[group].reason.startswith(f"{MALFORMED}: ")
        assert problem in lost.unknown[group].reason and f"({GET_CALL})" in lost.unknown[group].reason
    (evidence,) = lost.evidence
    assert evidence.response is not None and evidence.response["bytes"] > 0
    assert set(_statuses(run)[(p, "gs://lost")] for p in (RESIDENCY, ENCRYPTED, PUBLIC)) == {"error"}


# --- partial knowledge of a location ---------------------------------------------------------------


def _dual(name: str, code: str, data_locations: Any) -> dict[str, Any]:
    placement = {"dataLocations": data_locations} if data_locations is not None else None
    return _bucket(name, location=code, locationType="dual-region", customPlacementConfig=placement)


@pytest.mark.parametrize(
    ("bucket", "known", "code", "says", "status"),
    [
        # One member resolves inside the EU; the other is unknown to the catalog: undecided.
        (
            _dual("eu-half-new", "EU", ["EUROPE-WEST1", "EUROPE-WEST99"]),
            ["europe-west1"],
            "not_supported",
            "europe-west99",
            "error",
        ),
        # A member known to be outside the EU settles it whatever the other one is.
        (
            _dual("us-half-new", "US", ["US-EAST1", "US-EAST99"]),
            ["us-east1"],
            "not_supported",
            "us-east99",
            "fail",
        ),
        # A dual-region always has two regions: one listed is half the answer.
        (
            _dual("eu-one-listed", "EU", ["EUROPE-WEST4"]),
            ["europe-west4"],
            "error",
            "lists 1 of its 2 dataLocations",
            "error",
        ),
        (
            _dual("eu-one-null", "EU", ["EUROPE-WEST4", None]),
            ["europe-west4"],
            "error",
            "1 dataLocations entries are not region names",
            "error",
        ),
        (
            _dual("asia-one-unreadable", "ASIA", [{"region": "x"}, "ASIA-EAST1"]),
            ["asia-east1"],
            "error",
            "not region names",
            "fail",
        ),
    ],
    ids=lambda v: v["name"] if isinstance(v, dict) else None,
)
def test_a_partly_known_dual_region_records_its_known_members(
    recorded_server: RecordedGcsServer,
    tmp_path: Path,
    bucket: dict[str, Any],
    known: list[str],
    code: str,
    says: str,
    status: str,
) -> None:
    _serve(recorded_server, [bucket])
    run = _scan(recorded_server, tmp_path)
    resource = run.resources[bucket["name"]]
    assert resource.location is not None and resource.location.type == "dual-region"
    assert resource.location.regions == known
    assert [r.region for r in resource.location.replicas] == known
    for path in ("location.regions", "location.replicas"):
        unknown = resource.unknown[path]
        assert unknown.partial == "members"
        assert unknown.code.value == code
        assert says in unknown.reason and f"known members: {known}" in unknown.reason
    assert _statuses(run)[(RESIDENCY, f"gs://{bucket['name']}")] == status


@pytest.mark.parametrize(
    ("bucket", "says"),
    [
        # A configurable dual-region always answers the pair it chose: nothing is known without it.
        (_dual("eu-no-placement", "EU", None), "configurable dual-region 'EU' has no customPlacementConfig"),
        (_dual("eu-bad-placement", "EU", "EUROPE-WEST1"), "dataLocations is a str"),
        # Every member unknown to the catalog: nothing known, not partial.
        (_dual("all-new", "EU", ["EUROPE-WEST98", "EUROPE-WEST99"]), "not in the zone catalog"),
    ],
    ids=lambda v: v["name"] if isinstance(v, dict) else None,
)
def test_a_dual_region_with_no_known_member_is_wholly_unknown(
    recorded_server: RecordedGcsServer, tmp_path: Path, bucket: dict[str, Any], says: str
) -> None:
    _serve(recorded_server, [bucket])
    run = _scan(recorded_server, tmp_path)
    resource = run.resources[bucket["name"]]
    unknown = resource.unknown["location.regions"]
    assert unknown.partial is None and says in unknown.reason
    assert _statuses(run)[(RESIDENCY, f"gs://{bucket['name']}")] == "error"


def test_predefined_dual_region_without_placement_is_fully_known(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    _serve(recorded_server, [_dual("eur4", "EUR4", None)])
    run = _scan(recorded_server, tmp_path)
    resource = run.resources["eur4"]
    assert resource.location is not None and resource.location.regions == ["europe-north1", "europe-west4"]
    assert not any(k.startswith("location") for k in resource.unknown)
    assert _statuses(run)[(RESIDENCY, "gs://eur4")] == "pass"


# --- credentials -----------------------------------------------------------------------------------


def test_missing_credentials_file_is_a_no_credentials_gap_per_project(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    inventory = tmp_path / "inv.jsonl"
    runner = CliRunner(
        env={"STORAGE_EMULATOR_HOST": None, "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "absent.json")}
    )
    args = ["scan", "gcp", "--project", "p1,p2", "--api-endpoint", recorded_server.url]
    args += ["--policies", str(POLICIES), "--no-progress", "--output", str(inventory)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 3, result.output  # nothing scanned: incomplete
    gaps = list(read_inventory(inventory))
    assert sorted(g.account for g in gaps if isinstance(g, CoverageGap)) == ["p1", "p2"]
    for gap in gaps:
        assert isinstance(gap, CoverageGap) and gap.code is UnknownCode.NO_CREDENTIALS
        assert "DefaultCredentialsError" in gap.reason and "absent.json" in gap.reason
    assert recorded_server.requests["buckets.list"] == 0  # nothing was sent without credentials


def test_no_application_default_credentials_at_all_is_no_credentials(
    recorded_server: RecordedGcsServer, tmp_path: Path
) -> None:
    # A fresh process: no key file, an empty gcloud config, and the metadata server not probed
    # (NO_GCE_CHECK is read when google-auth is imported), so no address but loopback is contacted.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "GCE_"))}
    (tmp_path / "gcloud").mkdir()
    env.update({"NO_GCE_CHECK": "true", "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "HOME": str(tmp_path)})
    inventory = tmp_path / "inv.jsonl"
    command = [sys.executable, "-m", "auditor.cli", "scan", "gcp", "--project", "p"]
    command += ["--api-endpoint", recorded_server.url, "--no-progress", "--output", str(inventory)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    # The shipped policies read buckets and Vertex AI: every scope is a gap, nothing is written
    # on documented defaults alone.
    gaps = list(read_inventory(inventory))
    assert all(isinstance(gap, CoverageGap) for gap in gaps)
    assert {gap.scope for gap in gaps} == {"project", "vertex-locations", "vertex"}  # type: ignore[union-attr]
    for gap in gaps:
        assert isinstance(gap, CoverageGap) and gap.code is UnknownCode.NO_CREDENTIALS
        assert "default credentials were not found" in gap.reason.lower()
