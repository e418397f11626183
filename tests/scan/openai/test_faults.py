"""Failures of the Admin API: each becomes a coverage gap or an unknown with its reason, never a pass,
and the key never shows."""

from __future__ import annotations

from pathlib import Path

from auditor.inventory import InventoryRecord, dump_record
from auditor.model import CoverageGap, UnknownCode
from auditor.scan.calls import RetrySettings
from auditor.scan.openai_source import GET_EXTERNAL_KEY, LIST_PROJECTS

from .admin_server import (
    MISSING_SCOPE,
    PROJECTS,
    AdminApiServer,
    Fault,
    forbidden,
    masked,
    project,
    rate_limited,
)
from .conftest import (
    ADMIN_KEY,
    ESTATE_PAGE,
    ORGANIZATION,
    check_statuses,
    cli_scan,
    gaps,
    resources,
    scan_records,
)


def _only_gaps(records: list[InventoryRecord]) -> list[CoverageGap]:
    assert not resources(records), "nothing may be recorded as a resource"
    return gaps(records)


def test_a_denied_listing_is_a_gap_and_exit_3(estate_server: AdminApiServer, tmp_path: Path) -> None:
    estate_server.faults.append(forbidden())
    env = {"OPENAI_ADMIN_KEY": ADMIN_KEY, "OPENAI_BASE_URL": estate_server.base_url, "OPENAI_ORG_ID": None}
    run = cli_scan(tmp_path, env)
    assert run.result.exit_code == 3, run.result.output
    found = _only_gaps(run.records)
    assert [(g.scope, g.code) for g in found] == [
        ("projects", UnknownCode.ACCESS_DENIED),
        ("settings", UnknownCode.ACCESS_DENIED),
    ]
    assert "HTTP 403: access denied" in found[0].reason and "api.management.read" in found[0].reason
    assert found[0].reason.endswith("not listed: its projects")
    assert found[0].evidence[0].response["status"] == 403
    assert MISSING_SCOPE in found[0].evidence[0].response["head"]
    assert "nothing scanned: every scope failed" in run.result.stdout
    assert len(estate_server.served(PROJECTS)) == 1  # a 403 is not retried


def test_with_a_configured_organization_the_settings_survive_a_denied_listing(
    estate_server: AdminApiServer,
) -> None:
    estate_server.faults.append(forbidden())
    records, _ = scan_records(estate_server, organization=ORGANIZATION)
    assert [g.scope for g in gaps(records)] == ["projects"]
    assert [r.kind for r in resources(records).values()] == ["ai-settings"]


def test_a_wrong_key_is_access_denied_and_never_echoed(estate_server: AdminApiServer) -> None:
    wrong = "sk-admin-WRONGwrongWRONGwrongWRONG0000"
    records, _ = scan_records(estate_server, admin_key=wrong)
    found = _only_gaps(records)
    assert found[0].code is UnknownCode.ACCESS_DENIED and "HTTP 401" in found[0].reason
    assert "invalid_api_key" in found[0].reason and masked(wrong) in found[0].reason
    assert all(
        wrong.encode() not in dump_record(g) and ADMIN_KEY.encode() not in dump_record(g) for g in found
    )


def test_a_missing_key_is_a_gap_and_nothing_is_sent(estate_server: AdminApiServer, tmp_path: Path) -> None:
    run = cli_scan(tmp_path, {"OPENAI_ADMIN_KEY": None, "OPENAI_BASE_URL": estate_server.base_url})
    assert run.result.exit_code == 3
    found = _only_gaps(run.records)
    assert [(g.scope, g.code) for g in found] == [("organization", UnknownCode.NO_CREDENTIALS)]
    assert "OPENAI_ADMIN_KEY is not set" in found[0].reason
    assert estate_server.served() == []


def test_a_429_is_retried_after_retry_after(estate_server: AdminApiServer) -> None:
    estate_server.faults.append(rate_limited(1, retry_after="1"))
    records, scanner = scan_records(estate_server, retry=RetrySettings(max_attempts=2))
    assert gaps(records) == [] and "ekm-frankfurt" in resources(records)
    first, second = estate_server.served(PROJECTS)[:2]
    assert second.at - first.at >= 0.9  # the SDK waited as Retry-After asked
    assert second.query == first.query  # the same page again
    assert scanner.calls.snapshot()[LIST_PROJECTS] == -(-13 // ESTATE_PAGE)  # a retry is not another call


def test_a_persistent_429_is_throttled_never_pass(estate_server: AdminApiServer, tmp_path: Path) -> None:
    estate_server.faults.append(rate_limited(10, retry_after="0.05"))
    run = cli_scan(
        tmp_path,
        {"OPENAI_ADMIN_KEY": ADMIN_KEY, "OPENAI_BASE_URL": estate_server.base_url, "OPENAI_ORG_ID": None},
        "--max-attempts",
        "3",
    )
    assert run.result.exit_code == 3
    found = _only_gaps(run.records)
    assert found[0].code is UnknownCode.THROTTLED and "rate_limit_exceeded" in found[0].reason
    assert len(estate_server.served(PROJECTS)) == 3  # --max-attempts 3: three attempts, then the gap
    statuses = check_statuses(run.inventory, "zone=eu")
    assert "pass" not in statuses.values()


def test_a_throttled_later_page_keeps_the_pages_read(estate_server: AdminApiServer) -> None:
    estate_server.faults.append(
        Fault("projects", status=429, headers={"retry-after": "0.05"}, times=5, page=2)
    )
    records, _ = scan_records(estate_server)
    assert len([r for r in resources(records).values() if r.kind == "ai-project"]) == ESTATE_PAGE
    (gap,) = gaps(records)
    assert gap.code is UnknownCode.THROTTLED
    assert gap.reason.startswith(f"listing stopped at page 2 after {ESTATE_PAGE} projects: HTTP 429")
    assert gap.reason.endswith("not listed: its projects from page 2 on")


def test_a_garbled_page_is_a_gap_with_its_bounded_bytes(estate_server: AdminApiServer) -> None:
    garbled = b'{"object": "list", "data": [{"id": "proj_glo' + b"x" * 5000
    estate_server.faults.append(Fault("projects", status=200, body=garbled))
    records, _ = scan_records(estate_server)
    (gap, settings_gap) = _only_gaps(records)
    assert settings_gap.scope == "settings" and settings_gap.code is UnknownCode.ERROR
    assert gap.code is UnknownCode.ERROR and "malformed/empty answer: listing page is not JSON" in gap.reason
    response = gap.evidence[0].response
    assert response["bytes"] == len(garbled) and response["head_truncated"] is True
    assert response["head"] == garbled[:2048].decode()


def test_a_page_that_says_more_but_lists_nothing_is_a_gap(estate_server: AdminApiServer) -> None:
    estate_server.faults.append(
        Fault(
            "projects",
            body={"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": True},
        )
    )
    records, _ = scan_records(estate_server)
    (gap,) = gaps(records)
    assert "'has_more' is true but the page lists no project" in gap.reason


def test_an_entry_without_an_id_is_a_gap_and_the_others_are_kept(estate_server: AdminApiServer) -> None:
    estate_server.projects.insert(1, {"object": "organization.project", "name": "anonymous"})
    records, _ = scan_records(estate_server)
    (gap,) = gaps(records)
    assert "entry 2 of listing page 1 names no project" in gap.reason
    assert gap.reason.endswith("not listed: that project")
    assert "ekm-deleted-key" in resources(records)


def test_a_server_error_after_retries_is_an_error_gap(estate_server: AdminApiServer) -> None:
    estate_server.faults.append(
        Fault(
            "projects",
            status=500,
            body={"error": {"message": "The server had an error", "type": "server_error"}},
            times=9,
        )
    )
    records, _ = scan_records(estate_server, retry=RetrySettings(max_attempts=2))
    gap = gaps(records)[0]
    assert gap.code is UnknownCode.ERROR and "HTTP 500" in gap.reason
    assert len(estate_server.served(PROJECTS)) == 2


def test_no_answer_within_the_timeout_is_a_timeout_gap(estate_server: AdminApiServer) -> None:
    estate_server.faults.append(Fault("projects", delay=2.0, times=1))
    records, _ = scan_records(estate_server, retry=RetrySettings(max_attempts=1, timeout=0.3))
    gap = gaps(records)[0]
    assert gap.code is UnknownCode.TIMEOUT and gap.reason.startswith("no answer within the timeout")


def test_a_denied_external_key_leaves_its_location_unknown(
    estate_server: AdminApiServer, tmp_path: Path
) -> None:
    estate_server.faults.append(forbidden("external_keys"))
    records, _ = scan_records(estate_server)
    record = resources(records)["ekm-frankfurt"]
    unknown = record.unknown_reason("encryption.key_location")
    assert unknown is not None and unknown.code is UnknownCode.ACCESS_DENIED
    assert unknown.reason.startswith("an EKM key id names no location") and GET_EXTERNAL_KEY in unknown.reason
    assert record.encryption is not None and record.encryption.key_location is None
    inventory = tmp_path / "ai.jsonl"
    inventory.write_bytes(b"".join(dump_record(r) for r in records))
    key_id = f"openai:organization/{ORGANIZATION}/project/proj_ekm_eu"
    assert check_statuses(inventory, "zone=eu")[("residency.key-in-zone", key_id)] == "error"


def test_an_unknown_status_keeps_the_project_in_scope(admin_server: AdminApiServer, tmp_path: Path) -> None:
    admin_server.projects = [
        project("proj_odd_state", "odd-state", status="suspended"),
        project("proj_plain", "plain"),
    ]
    admin_server.projects[1].pop("status")
    records, _ = scan_records(admin_server)
    found = resources(records)
    assert (found["odd-state"].state, found["plain"].state) == ("suspended", None)
    inventory = tmp_path / "ai.jsonl"
    inventory.write_bytes(b"".join(dump_record(r) for r in records))
    statuses = check_statuses(inventory, "zone=eu")
    assert {resource_id.rsplit("/", 1)[1] for (_, resource_id) in statuses} >= {
        "proj_odd_state",
        "proj_plain",
    }


def test_an_answer_that_echoes_the_key_is_scrubbed(estate_server: AdminApiServer) -> None:
    echoed = {
        "error": {
            "message": f"key {ADMIN_KEY} and sk-proj-{'x' * 40} refused",
            "type": "invalid_request_error",
        }
    }
    estate_server.faults.append(Fault("projects", status=400, body=echoed))
    records, _ = scan_records(estate_server)
    gap = gaps(records)[0]
    assert "key [redacted] and [redacted] refused" in gap.reason
    assert "[redacted]" in gap.evidence[0].response["head"]
    assert all(
        ADMIN_KEY.encode() not in dump_record(r) and b"sk-proj-xxxx" not in dump_record(r) for r in records
    )
