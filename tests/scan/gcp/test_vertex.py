"""Vertex AI and the Org Policy API in `auditor scan gcp`, judged with `auditor check --param zone=eu`.

Cloud Storage is the recorded JSON API server; Org Policy v2, Vertex AI and the OAuth token endpoint
are `vertex_server.GoogleApiServer`, reached with a service-account key whose tokens it issues.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from auditor.audit.config import load_config
from auditor.cli import cli
from auditor.errors import InputError
from auditor.model import ANY_REGION, UnknownCode

from .conftest import POLICIES, VERTEX_POLICIES
from .helpers import ScanRun, check_statuses, scan_gcp
from .recorded_server import RecordedGcsServer
from .vertex_server import Fault, GoogleApiServer, VertexProject, endpoint

PROJECT = "auditor-eu"
TLS = "gcp.restrictTLSVersion"
ENDPOINTS = "gcp.restrictEndpointUsage"
GLOBAL_ID = f"//aiplatform.googleapis.com/projects/{PROJECT}/locations/global"
SETTINGS_ID = f"//aiplatform.googleapis.com/projects/{PROJECT}/cacheConfig"
DENY_OLD_TLS = {"spec": {"rules": [{"values": {"deniedValues": ["TLS_VERSION_1", "TLS_VERSION_1_1"]}}]}}
DENY_GLOBAL = {"spec": {"rules": [{"values": {"deniedValues": ["aiplatform.googleapis.com"]}}]}}
FAST = ("--retry-backoff", "0.01", "--retry-deadline", "0.5", "--timeout", "2")


def _project(**changes: Any) -> VertexProject:
    project = VertexProject(PROJECT, locations=["asia-east1", "europe-west4", "us-central1"])
    project.endpoints = {
        "europe-west4": [endpoint(project, "europe-west4", "41", ["gemma-2b", "llama-3"])],
        "us-central1": [endpoint(project, "us-central1", "11", ["llama-3"])],
    }
    for key, value in changes.items():
        setattr(project, key, value)
    return project


def _endpoint_id(project: VertexProject, location: str, endpoint_id: str) -> str:
    return (
        f"//aiplatform.googleapis.com/projects/{project.number}/locations/{location}/endpoints/{endpoint_id}"
    )


def _scan(
    tmp_path: Path,
    gcs: RecordedGcsServer,
    apis: GoogleApiServer,
    credentials: Path,
    *args: str,
    policies: Path | None = VERTEX_POLICIES,
) -> ScanRun:
    """`auditor scan gcp` with Cloud Storage at the recorded server and the other APIs at `apis`."""
    chosen = ["--policies", str(policies)] if policies is not None else []
    return scan_gcp(
        tmp_path,
        gcs.url,
        "--project",
        PROJECT,
        "--api-endpoint",
        f"orgpolicy={apis.url}",
        "--api-endpoint",
        f"aiplatform={apis.url}",
        *chosen,
        *args,
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(credentials)},
    )


# --- gcp.restrictTLSVersion: observed, attested, unknown -----------------------------------------


def test_tls_is_observed_from_the_org_policy_and_only_that_constraint_is_read(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(policies={TLS: DENY_OLD_TLS}))
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=POLICIES)
    bucket = run.resources["eu-analytics-region"]
    assert bucket.transport is not None and bucket.transport.min_tls_version == "1.2"
    assert bucket.transport.min_tls_enforced_by == "org-policy:gcp.restrictTLSVersion"
    assert bucket.unknown_reason("transport.min_tls_version") is None
    (observed,) = [e for e in bucket.evidence if e.call == "orgpolicy:policies.getEffectivePolicy"]
    assert observed.response["name"] == f"projects/100000000001/policies/{TLS}"
    assert observed.response["spec"] == DENY_OLD_TLS["spec"] and observed.attestation is None
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[("gcstest.tls-minimum", "gs://eu-analytics-region")] == "pass"
    # A storage-only policy set: the TLS constraint once for the project, and no Vertex AI request.
    assert (
        google_apis.count("policy", PROJECT, TLS) == 1
        and run.calls("orgpolicy:policies.getEffectivePolicy") == 1
    )
    assert google_apis.count("policy", PROJECT, ENDPOINTS) == 0
    assert [google_apis.count(route) for route in ("locations", "endpoints", "cache")] == [0, 0, 0]
    assert not run.of_kind("ai-endpoint") and not run.of_kind("ai-settings")


@pytest.mark.parametrize(
    ("document", "minimum", "status"),
    [
        (None, "1.0", "fail"),  # nothing set anywhere: the server's default, allowAll
        ({}, "1.0", "fail"),  # a policy without spec denies nothing
        ({"spec": {"reset": True}}, "1.0", "fail"),
        ({"spec": {"rules": [{"values": {"deniedValues": ["is:TLS_VERSION_1"]}}]}}, "1.1", "fail"),
        # An effective policy holds the rules it inherits: inheritFromParent needs no parent.
        ({"spec": {"inheritFromParent": True, **DENY_OLD_TLS["spec"]}}, "1.2", "pass"),
    ],
)
def test_tls_minimum_is_the_lowest_version_the_effective_policy_allows(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    document: dict[str, Any] | None,
    minimum: str,
    status: str,
) -> None:
    google_apis.load(_project(policies={TLS: document} if document is not None else {}))
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=POLICIES)
    transport = run.resources["eu-analytics-region"].transport
    assert transport is not None and transport.min_tls_version == minimum
    assert (
        check_statuses(run.inventory, POLICIES, "zone=eu")[
            ("gcstest.tls-minimum", "gs://eu-analytics-region")
        ]
        == status
    )


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (
            {
                "spec": {
                    "rules": [
                        {
                            "condition": {"expression": "resource.matchTag('1/env', 'prod')"},
                            **DENY_OLD_TLS["spec"]["rules"][0],
                        }
                    ]
                }
            },
            "conditional rules",
        ),
        ({"spec": {"rules": [{"values": {"deniedValues": ["TLS_VERSION_1_2"]}}]}}, "unknown TLS version"),
        ({"spec": {"rules": [{"values": {"allowedValues": ["TLS_VERSION_1_2"]}}]}}, "allowedValues"),
    ],
)
def test_a_tls_policy_that_cannot_be_evaluated_is_unknown(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    document: dict[str, Any],
    says: str,
) -> None:
    google_apis.load(_project(policies={TLS: document}))
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=POLICIES)
    unknown = run.resources["eu-analytics-region"].unknown_reason("transport.min_tls_version")
    assert unknown is not None and unknown.code is UnknownCode.NOT_SUPPORTED and says in unknown.reason
    assert (
        check_statuses(run.inventory, POLICIES, "zone=eu")[
            ("gcstest.tls-minimum", "gs://eu-analytics-region")
        ]
        == "error"
    )


def _tls_file(tmp_path: Path, text: str, modified: date) -> Path:
    path = tmp_path / "tls.yaml"
    path.write_text(text, encoding="utf-8")
    stamp = datetime(modified.year, modified.month, modified.day, 12).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def test_a_denied_org_policy_read_falls_back_to_the_attested_file(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(policies={TLS: DENY_OLD_TLS}), faults=[Fault("policy", 403, key=TLS)])
    modified = date.today() - timedelta(days=10)
    path = _tls_file(
        tmp_path, f"{PROJECT}:\n  restricted_tls_versions: [TLS_VERSION_1, TLS_VERSION_1_1]\n", modified
    )
    run = _scan(
        tmp_path, recorded_server, google_apis, service_account, "--tls-policy", str(path), policies=POLICIES
    )
    bucket = run.resources["eu-analytics-region"]
    assert bucket.transport is not None and bucket.transport.min_tls_version == "1.2"
    denied, attested = bucket.evidence[-2:]
    assert denied.call == "orgpolicy:policies.getEffectivePolicy" and denied.error is not None
    assert "403" in denied.error and denied.attestation is None
    assert attested.call == "file:gcp.restrictTLSVersion"
    assert attested.attributes == ["transport.min_tls_version", "transport.min_tls_enforced_by"]
    assert attested.location is not None and (attested.location.file, attested.location.line) == (
        str(path),
        1,
    )
    record = attested.attestation
    assert record is not None
    assert (record.attested_by, record.attested_on, record.reference) == (str(path), modified, f"{path}:1")
    assert record.expires == modified + timedelta(days=365)
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[("gcstest.tls-minimum", "gs://eu-analytics-region")] == "pass"


def test_an_expired_attestation_is_an_error_at_check(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(), faults=[Fault("policy", 403, key=TLS)])
    text = (
        f"{PROJECT}:\n  restricted_tls_versions: [TLS_VERSION_1, TLS_VERSION_1_1]\n"
        "  attested_by: secops@example.com\n  attested_on: 2024-01-15\n  expires: 2025-01-15\n"
    )
    path = _tls_file(tmp_path, text, date.today())
    run = _scan(
        tmp_path, recorded_server, google_apis, service_account, "--tls-policy", str(path), policies=POLICIES
    )
    attested = run.resources["eu-analytics-region"].evidence[-1].attestation
    assert attested is not None and attested.attested_by == "secops@example.com"
    assert (attested.attested_on, attested.expires) == (date(2024, 1, 15), date(2025, 1, 15))
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[("gcstest.tls-minimum", "gs://eu-analytics-region")] == "error"


def test_a_denied_org_policy_read_without_a_file_is_unknown(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(), faults=[Fault("policy", 403, key=TLS)])
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=POLICIES)
    unknown = run.resources["eu-analytics-region"].unknown_reason("transport.min_tls_version")
    assert unknown is not None and unknown.code is UnknownCode.ACCESS_DENIED
    assert "403 Forbidden (IAM_PERMISSION_DENIED)" in unknown.reason
    assert unknown.reason.endswith("no --tls-policy file was given")
    statuses = check_statuses(run.inventory, POLICIES, "zone=eu")
    assert statuses[("gcstest.tls-minimum", "gs://eu-analytics-region")] == "error"


# --- the global endpoint and gcp.restrictEndpointUsage -------------------------------------------


@pytest.mark.parametrize(
    ("document", "regions"),
    [
        (None, [ANY_REGION]),  # nothing set: allowAll
        (DENY_GLOBAL, []),
        ({"spec": {"rules": [{"values": {"deniedValues": ["is:AIPLATFORM.googleapis.com"]}}]}}, []),
        ({"spec": {"rules": [{"denyAll": True}]}}, []),
        ({"spec": {"rules": [{"values": {"deniedValues": ["bigquery.googleapis.com"]}}]}}, [ANY_REGION]),
        ({"spec": {"reset": True}}, [ANY_REGION]),
        # A deny wins over anything a merged rule allows.
        ({"spec": {"rules": [{"allowAll": True}, *DENY_GLOBAL["spec"]["rules"]]}}, []),
    ],
)
def test_the_global_endpoint_processes_anywhere_unless_denied(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    document: dict[str, Any] | None,
    regions: list[str],
) -> None:
    google_apis.load(_project(policies={ENDPOINTS: document} if document is not None else {}))
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    record = run.by_id(GLOBAL_ID)
    assert record.kind == "ai-endpoint" and record.name == "aiplatform.googleapis.com"
    assert record.processing is not None
    assert record.processing.scope == ("global" if regions else "none")
    assert record.processing.regions == regions and record.unknown == {}
    if not regions:
        assert (
            record.processing.raw
            == "aiplatform.googleapis.com denied by org-policy:gcp.restrictEndpointUsage"
        )
    (read,) = [e for e in record.evidence if e.call == "orgpolicy:policies.getEffectivePolicy"]
    assert read.request is not None and "restrict-endpoint-usage" in read.request["source"]
    statuses = check_statuses(run.inventory, VERTEX_POLICIES, "zone=eu")
    # A usable global endpoint processes anywhere: never inside a zone; a denied one processes
    # nothing (scope none), which the policy accepts.
    expected = "fail" if regions else "pass"
    assert statuses[("vertextest.processing-in-zone", GLOBAL_ID)] == expected
    assert statuses[("vertextest.provider-opt-out", GLOBAL_ID)] == "pass"
    # An AI-only policy set: no Cloud Storage request, and the TLS constraint is not read.
    assert sum(recorded_server.requests.values()) == 0 and not run.of_kind("bucket")
    assert google_apis.count("policy", PROJECT, TLS) == 0


@pytest.mark.parametrize(
    ("document", "fault", "code", "says"),
    [
        (None, Fault("policy", 403, key=ENDPOINTS), UnknownCode.ACCESS_DENIED, "403 Forbidden"),
        (
            {
                "spec": {
                    "rules": [
                        {
                            "condition": {"expression": "resource.matchTag('1/env', 'prod')"},
                            **DENY_GLOBAL["spec"]["rules"][0],
                        }
                    ]
                }
            },
            None,
            UnknownCode.NOT_SUPPORTED,
            "has a condition",
        ),
        (
            {"spec": {"rules": [{"values": {"deniedValues": ["in:global-endpoints"]}}]}},
            None,
            UnknownCode.NOT_SUPPORTED,
            "cannot be expanded",
        ),
        (
            {"spec": {"rules": [{"values": {"allowedValues": ["aiplatform.googleapis.com"]}}]}},
            None,
            UnknownCode.NOT_SUPPORTED,
            "allowedValues",
        ),
        ({"spec": {"rules": [{"denyAllExcept": ["x"]}]}}, None, UnknownCode.NOT_SUPPORTED, "Extra inputs"),
    ],
)
def test_an_endpoint_policy_that_cannot_be_read_or_evaluated_is_an_error(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    document: dict[str, Any] | None,
    fault: Fault | None,
    code: UnknownCode,
    says: str,
) -> None:
    policies = {ENDPOINTS: document} if document is not None else {}
    google_apis.load(_project(policies=policies), faults=[fault] if fault else [])
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    record = run.by_id(GLOBAL_ID)
    unknown = record.unknown_reason("processing.regions")
    assert unknown is not None and unknown.code is code and says in unknown.reason
    assert (
        check_statuses(run.inventory, VERTEX_POLICIES, "zone=eu")[
            ("vertextest.processing-in-zone", GLOBAL_ID)
        ]
        == "error"
    )


# --- endpoints per location ----------------------------------------------------------------------


def test_shipped_policies_judge_each_endpoint_by_its_location(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    project = _project(policies={ENDPOINTS: DENY_GLOBAL, TLS: DENY_OLD_TLS})
    google_apis.load(project)
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=None)
    statuses = check_statuses(run.inventory, None, "zone=eu")
    eu, us = _endpoint_id(project, "europe-west4", "41"), _endpoint_id(project, "us-central1", "11")
    assert statuses[("residency.processing-in-zone", eu)] == "pass"
    assert statuses[("residency.processing-in-zone", us)] == "fail"
    denied = run.by_id(GLOBAL_ID).processing
    assert denied is not None and denied.regions == [] and "denied by org-policy" in str(denied.raw)
    for resource in (eu, us, GLOBAL_ID, SETTINGS_ID):
        assert statuses[("training.provider-opt-out", resource)] == "pass"
    assert statuses[("transport.tls-minimum", "gs://eu-analytics-region")] == "pass"
    record = run.by_id(eu)
    assert record.processing is not None
    assert (record.processing.raw, record.processing.scope, record.processing.regions) == (
        "europe-west4",
        "region",
        ["europe-west4"],
    )
    training = record.training
    assert training is not None and training.provider_may_train is False
    assert training.decided_by == "provider-default" and training.as_of is not None
    assert training.source == "https://cloud.google.com/vertex-ai/generative-ai/docs/data-governance"
    (listed,) = record.evidence
    assert listed.call == "aiplatform:endpoints.list" and listed.request is not None
    assert listed.request["location"] == "europe-west4"
    models = [m["model"].rsplit("/", 1)[-1] for m in listed.response["deployedModels"]]
    assert models == ["gemma-2b", "llama-3"]
    assert "dedicatedResources" not in listed.response["deployedModels"][0]  # the evidence stays bounded
    # The shipped policies read no cache setting: cacheConfig is not asked for.
    assert google_apis.count("cache") == 0
    settings = run.by_id(SETTINGS_ID)
    assert settings.unknown_reason("training.cache_enabled") is not None


def test_a_location_whose_listing_is_denied_is_a_gap_not_zero_endpoints(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    project = _project()
    google_apis.load(project, faults=[Fault("endpoints", 403, key="asia-east1")])
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    (gap,) = run.gaps
    assert (gap.account, gap.scope, gap.code) == (PROJECT, "vertex:asia-east1", UnknownCode.ACCESS_DENIED)
    assert gap.reason.endswith("not listed: its Vertex AI endpoints in asia-east1")
    assert gap.evidence and gap.evidence[0].call == "aiplatform:endpoints.list"
    ids = {r.id for r in run.of_kind("ai-endpoint")}
    assert ids == {
        _endpoint_id(project, "europe-west4", "41"),
        _endpoint_id(project, "us-central1", "11"),
        GLOBAL_ID,
    }


def test_listings_follow_page_tokens(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    project = _project(locations=["europe-west1", "europe-west4", "europe-west9"])
    project.endpoints = {"europe-west4": [endpoint(project, "europe-west4", str(n), ["m"]) for n in range(5)]}
    google_apis.load(project)
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    names = sorted(r.name.rsplit("/", 1)[-1] for r in run.of_kind("ai-endpoint") if r.id != GLOBAL_ID)
    assert names == ["0", "1", "2", "3", "4"] and run.gaps == []
    assert google_apis.count("endpoints", PROJECT, "europe-west4") == 3  # 2 + 2 + 1
    assert google_apis.count("locations", PROJECT) == 2  # 2 + 1 locations
    assert run.calls("aiplatform:endpoints.list") == 3 + 1 + 1 and run.calls("aiplatform:locations.list") == 2
    tokens = [
        r.evidence[0].request["pageToken"]
        for r in run.of_kind("ai-endpoint")
        if r.evidence and r.id != GLOBAL_ID
    ]  # type: ignore[index]
    assert tokens.count(None) == 2 and len(set(tokens)) == 3


def test_given_locations_replace_the_locations_listing(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    project = _project()
    google_apis.load(project)
    run = _scan(
        tmp_path,
        recorded_server,
        google_apis,
        service_account,
        "--vertex-location",
        "europe-west4,europe-west9",
    )
    assert google_apis.count("locations") == 0
    assert google_apis.count("endpoints", PROJECT, "europe-west4") == 1
    assert google_apis.count("endpoints", PROJECT, "europe-west9") == 1
    assert google_apis.count("endpoints", PROJECT, "us-central1") == 0
    assert {r.id for r in run.of_kind("ai-endpoint")} == {
        _endpoint_id(project, "europe-west4", "41"),
        GLOBAL_ID,
    }


def test_a_429_with_retry_after_is_waited_for_and_retried(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    project = _project()
    throttled = Fault("endpoints", 429, key="europe-west4", times=1, retry_after="1")
    google_apis.load(project, faults=[throttled])
    started = time.monotonic()
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    assert time.monotonic() - started >= 1.0  # the Retry-After was honoured
    assert throttled.fired == 1 and google_apis.count("endpoints", PROJECT, "europe-west4") == 2
    assert run.gaps == [] and run.calls("aiplatform:endpoints.list") == 3  # a retry is not another call
    record = run.by_id(_endpoint_id(project, "europe-west4", "41"))
    assert record.unknown == {} and record.processing is not None


def test_a_retry_after_past_the_deadline_ends_the_retries_as_throttled(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(), faults=[Fault("endpoints", 429, key="us-central1", retry_after="30")])
    started = time.monotonic()
    run = _scan(tmp_path, recorded_server, google_apis, service_account, *FAST)
    assert time.monotonic() - started < 10
    (gap,) = run.gaps
    assert (gap.scope, gap.code) == ("vertex:us-central1", UnknownCode.THROTTLED)
    assert "429 TooManyRequests" in gap.reason
    assert google_apis.count("endpoints", PROJECT, "us-central1") == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"endpoints": [{"name": "projects/1/loc', "listing page is not JSON"),
        (b"", "listing page has an empty body"),
        (b'{"endpoints": {"name": "x"}}', "'endpoints' is a dict, not a list"),
        (b"[]", "listing page is a JSON list"),
    ],
)
def test_a_malformed_listing_page_is_retried_then_a_gap_with_its_bytes(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    body: bytes,
    says: str,
) -> None:
    google_apis.load(_project(), faults=[Fault("endpoints", 200, key="europe-west4", body=body)])
    run = _scan(tmp_path, recorded_server, google_apis, service_account, *FAST)
    (gap,) = run.gaps
    assert (gap.scope, gap.code) == ("vertex:europe-west4", UnknownCode.ERROR)
    assert gap.reason.startswith(f"malformed/empty answer: {says}")
    assert gap.evidence[0].response == {"bytes": len(body), "head": body.decode(), "head_truncated": False}
    assert google_apis.count("endpoints", PROJECT, "europe-west4") > 1  # retried


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"name": "projects/1/policies/gcp.restrictEndpointUsage", "spec": {', "is not a Policy"),
        (b"", "is not a Policy"),
        (b"[]", "policy is a JSON list"),
        (b"{}", "policy names None"),
        (b'{"name": "projects/1/policies/gcp.restrictTLSVersion"}', "not gcp.restrictEndpointUsage"),
    ],
)
def test_a_malformed_org_policy_answer_is_unknown(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    body: bytes,
    says: str,
) -> None:
    garbled = Fault("policy", 200, key=ENDPOINTS, body=body)
    google_apis.load(_project(), faults=[garbled])
    run = _scan(tmp_path, recorded_server, google_apis, service_account, *FAST)
    unknown = run.by_id(GLOBAL_ID).unknown_reason("processing.regions")
    assert unknown is not None and unknown.code is UnknownCode.ERROR
    assert "malformed/empty answer" in unknown.reason and says in unknown.reason
    (read,) = run.by_id(GLOBAL_ID).evidence
    assert read.response == {"bytes": len(body), "head": body.decode(), "head_truncated": False}
    assert garbled.fired > 1  # retried before giving up


def test_a_project_that_answers_no_vertex_call_is_a_gap_not_default_records(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load()  # the server knows no project: every call answers 403
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    assert run.records == [] and run.result.exit_code == 3
    assert {(g.scope, g.code) for g in run.gaps} == {
        ("vertex-locations", UnknownCode.ACCESS_DENIED),
        ("vertex", UnknownCode.ACCESS_DENIED),
    }
    (project_gap,) = [g for g in run.gaps if g.scope == "vertex"]
    assert (
        "not scanned: its global endpoint aiplatform.googleapis.com and its AI settings" in project_gap.reason
    )


def test_a_rejected_token_is_access_denied(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project(), faults=[Fault("locations", 401), Fault("cache", 401)])
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    assert run.records == [] and {g.scope for g in run.gaps} == {"vertex-locations", "vertex"}
    assert all(g.code is UnknownCode.ACCESS_DENIED and "401 Unauthorized" in g.reason for g in run.gaps)
    # One location refusing the token: a gap for it; the other location confirms the project.
    project = _project()
    google_apis.load(project, faults=[Fault("endpoints", 401, key="europe-west4")])
    run = _scan(
        tmp_path,
        recorded_server,
        google_apis,
        service_account,
        "--vertex-location",
        "europe-west4,us-central1",
    )
    (gap,) = run.gaps
    assert (gap.scope, gap.code) == ("vertex:europe-west4", UnknownCode.ACCESS_DENIED)
    assert "401 Unauthorized" in gap.reason
    assert {r.id for r in run.of_kind("ai-endpoint")} == {
        _endpoint_id(project, "us-central1", "11"),
        GLOBAL_ID,
    }


# --- cacheConfig ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disable", "fault", "cache_enabled", "status"),
    [
        (True, None, False, "pass"),
        (False, None, True, "fail"),  # disableCache left out: proto3's false, caching on
        (False, Fault("cache", 403), None, "error"),
    ],
)
def test_cache_config_decides_cache_enabled(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    tmp_path: Path,
    disable: bool,
    fault: Fault | None,
    cache_enabled: bool | None,
    status: str,
) -> None:
    google_apis.load(_project(disable_cache=disable), faults=[fault] if fault else [])
    run = _scan(tmp_path, recorded_server, google_apis, service_account)
    settings = run.by_id(SETTINGS_ID)
    assert settings.kind == "ai-settings" and settings.training is not None
    assert settings.training.cache_enabled is cache_enabled
    assert settings.training.provider_may_train is False
    assert (settings.unknown_reason("training.cache_enabled") is None) == (fault is None)
    (read,) = settings.evidence
    assert read.call == "aiplatform:projects.getCacheConfig"
    statuses = check_statuses(run.inventory, VERTEX_POLICIES, "zone=eu")
    assert statuses[("vertextest.cache-disabled", SETTINGS_ID)] == status
    assert statuses[("vertextest.provider-opt-out", SETTINGS_ID)] == "pass"
    assert google_apis.count("cache", PROJECT) == 1


# --- endpoints, emulator mode, configuration -----------------------------------------------------


def test_under_the_storage_emulator_only_given_endpoints_are_called(
    recorded_server: RecordedGcsServer, google_apis: GoogleApiServer, service_account: Path, tmp_path: Path
) -> None:
    google_apis.load(_project())
    run = scan_gcp(
        tmp_path,
        recorded_server.url,
        "--project",
        PROJECT,
        "--policies",
        str(VERTEX_POLICIES),
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(service_account)},
    )
    assert google_apis.count("token") == 0 and google_apis.api_requests() == 0
    assert run.records == [] and run.gaps
    assert all(g.code is UnknownCode.NOT_SUPPORTED for g in run.gaps)
    assert any("no --api-endpoint aiplatform=URL was given" in g.reason for g in run.gaps)
    assert run.operations() == {}  # nothing sent, nothing counted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--api-endpoint", "vertex=http://127.0.0.1:1"), "unknown service 'vertex'"),
        (("--api-endpoint", "orgpolicy=ftp://127.0.0.1:1"), "is not a base URL"),
        (
            ("--api-endpoint", "aiplatform=https://user:secret@example.com"),
            "no credentials, query or fragment",
        ),
        (
            ("--api-endpoint", "http://127.0.0.1:1", "--api-endpoint", "storage=http://127.0.0.1:2"),
            "given twice",
        ),
        (("--vertex-location", "Europe West4"), "is not a Vertex AI location name"),
    ],
)
def test_bad_endpoint_and_location_flags_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(
        cli, ["scan", "gcp", "--project", "p", *args, "-o", str(tmp_path / "i.jsonl")]
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "i.jsonl").exists()


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        (
            "    api_endpoints:\n      vertex: https://example.com\n",
            5,
            "Input should be 'storage', 'orgpolicy' or 'aiplatform'",
        ),
        ("    api_endpoints:\n      aiplatform: example.com\n", 5, "is not a base URL"),
        ("    vertex_locations: [europe-west4, 'x y']\n", 4, "is not a Vertex AI location name"),
    ],
)
def test_bad_gcp_sections_of_auditor_yaml_name_file_and_line(
    tmp_path: Path, section: str, line: int, message: str
) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text("clouds:\n  gcp:\n    projects: [p]\n" + section, encoding="utf-8")
    with pytest.raises(InputError) as raised:
        load_config(config, environ={})
    assert raised.value.where == f"{config}:{line}"
    assert message in raised.value.message


def test_a_gcp_section_takes_endpoints_and_locations(tmp_path: Path) -> None:
    config = tmp_path / "auditor.yaml"
    config.write_text(
        "clouds:\n  gcp:\n    projects: [p]\n    api_endpoints:\n"
        "      orgpolicy: http://127.0.0.1:8080/\n      aiplatform: https://aiplatform.example.internal\n"
        "    vertex_locations: [europe-west4]\n",
        encoding="utf-8",
    )
    section = load_config(config, environ={}).clouds.configured()["gcp"]
    assert section.api_endpoints == {  # type: ignore[attr-defined]
        "orgpolicy": "http://127.0.0.1:8080",
        "aiplatform": "https://aiplatform.example.internal",
    }
    assert section.vertex_locations == ["europe-west4"]  # type: ignore[attr-defined]


def test_no_token_or_key_reaches_the_output(
    recorded_server: RecordedGcsServer,
    google_apis: GoogleApiServer,
    service_account: Path,
    private_key_pem: str,
    tmp_path: Path,
) -> None:
    google_apis.load(
        _project(policies={TLS: DENY_OLD_TLS}), faults=[Fault("endpoints", 403, key="asia-east1")]
    )
    run = _scan(tmp_path, recorded_server, google_apis, service_account, policies=None)
    assert google_apis.issued, "the scan used a token the server issued"
    written = run.inventory.read_text(encoding="utf-8") + run.result.output
    assert any(token.count(".") == 2 for token in google_apis.presented), "the Org Policy client's JWT"
    secrets = [*google_apis.presented, *private_key_pem.splitlines()[1:-1], "0123456789abcdef", "Bearer "]
    assert not [s for s in secrets if s in written]
    document = json.loads(run.inventory.read_text(encoding="utf-8").splitlines()[0])
    assert document["provider"] == "gcp"


def test_permissions_follow_the_policies_kinds(tmp_path: Path) -> None:
    def permissions(policies: Path) -> list[str]:
        result = CliRunner().invoke(cli, ["permissions", "gcp", "--policies", str(policies)])
        assert result.exit_code == 0, result.output
        listed: list[str] = json.loads(result.output)["includedPermissions"]
        return listed

    assert permissions(VERTEX_POLICIES) == [
        "aiplatform.cacheConfigs.get",
        "aiplatform.endpoints.list",
        "aiplatform.locations.list",
        "orgpolicy.policy.get",
    ]
    assert permissions(POLICIES) == ["orgpolicy.policy.get", "storage.buckets.get", "storage.buckets.list"]
