"""Every call the GCS scanner makes x every way an answer breaks, through tests/fault_proxy.py.

The recorded JSON API server answers one project of four buckets on two listing pages plus one
``unreachable`` bucket (fetched with its own ``buckets.get``); the fault-injecting proxy in front
of it breaks one kind of call. Whatever breaks, the scan must end in bounded time without a
traceback, lose no bucket (each is in the inventory or covered by a coverage gap that says so),
keep a bounded excerpt of a malformed answer as evidence, and `auditor check` must never report
``pass`` for a policy whose attributes could not be read.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from google.cloud.storage.retry import DEFAULT_RETRY

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.policy.loader import load_policies, policy_leaves
from auditor.scan.base import run_scan, scanner_context
from auditor.scan.gcp import GET_CALL, LIST_CALL, MALFORMED, GcsScanner
from auditor.scan.gcp_errors import RAW_EVIDENCE_BYTES
from tests.fault_proxy import GARBLE, FaultKind, FaultProxy, FaultRule, fault_proxy

from .conftest import EMULATOR_PROJECT, POLICIES
from .recorded_server import RecordedGcsServer, RecordedProject

PROJECT = "faulty"
PAGE_ONE = ["faulty-a", "faulty-b"]
PAGE_TWO = ["faulty-c", "faulty-d"]
UNREACHABLE = "faulty-unreachable"
EVERY_BUCKET = {*PAGE_ONE, *PAGE_TWO, UNREACHABLE}
GROUPS = ("location", "encryption", "transport", "access", "tags")

# Short, bounded waits: each attempt 1 s, and a persistent fault gives up after 0.6 s of
# retrying (a transient one has 5 s to recover); backoff starts at 20 ms instead of 1 s.
TIMEOUT = 1.0
PERSISTENT_DEADLINE = 0.6
TRANSIENT_DEADLINE = 5.0
FAST_RETRY = DEFAULT_RETRY.with_delay(initial=0.02, maximum=0.1, multiplier=2.0)
BOUND_SECONDS = 8.0

# Which requests each call kind is (the proxy matches the path with its query).
CALLS = {
    "list-first-page": r"^/storage/v1/b\?(?!.*pageToken=)",
    "list-next-page": r"^/storage/v1/b\?.*pageToken=",
    "get-unreachable": r"^/storage/v1/b/[^/?]+(\?|$)",
}


@dataclass(frozen=True)
class Fault:
    """One way to break an answer, and the code the attributes it feeds must then carry."""

    kind: FaultKind
    code: UnknownCode
    status: int = 503
    malformed: bool = False  # the reason must say "malformed/empty answer"
    body_kept: bool = False  # the bytes reached the scanner, so its evidence keeps them

    @property
    def id(self) -> str:
        return f"status-{self.status}" if self.kind == "status" else self.kind


FAULTS = [
    Fault("empty", UnknownCode.ERROR, malformed=True, body_kept=True),
    Fault("truncated", UnknownCode.ERROR, malformed=True, body_kept=True),
    Fault("garbled", UnknownCode.ERROR, malformed=True, body_kept=True),
    Fault("short_read", UnknownCode.ERROR, malformed=True),
    Fault("reset", UnknownCode.ERROR),
    Fault("hang", UnknownCode.TIMEOUT),
    Fault("status", UnknownCode.THROTTLED, status=429),
    Fault("status", UnknownCode.ERROR, status=503),
]


def _bucket(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "storage#bucket",
        "id": name,
        "name": name,
        "projectNumber": "123456789",
        "location": "EUROPE-WEST1",
        "locationType": "region",
        "storageClass": "STANDARD",
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": True},
            "publicAccessPrevention": "enforced",
        },
        "labels": {"data-class": "personal", "ai-training": "opt-out"},
        **extra,
    }


# The unreachable bucket's own resource is large (64 labels, the most GCS allows), so even half of
# it is more than an evidence excerpt keeps.
BIG_LABELS = {f"label-{i:02d}": "v" * 63 for i in range(62)} | {"ai-training": "opt-out"}


def _project() -> dict[str, RecordedProject]:
    return {
        PROJECT: RecordedProject(
            project=PROJECT,
            buckets=[_bucket(n) for n in PAGE_ONE + PAGE_TWO],
            max_page_size=2,
            unreachable=[f"projects/_/buckets/{UNREACHABLE}"],
            get={UNREACHABLE: _bucket(UNREACHABLE, location="EUROPE-WEST3", labels=BIG_LABELS)},
        )
    }


@pytest.fixture(scope="module")
def proxy(recorded_session: RecordedGcsServer) -> Iterator[FaultProxy]:
    with fault_proxy(recorded_session.url, hang_seconds=3.0) as started:
        yield started


@pytest.fixture
def faulty(
    recorded_session: RecordedGcsServer, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> FaultProxy:
    """The proxy with no rules, in front of the `faulty` project, and the client pointed at it."""
    recorded_session.load(_project())
    proxy.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    return proxy


@dataclass
class Outcome:
    resources: dict[str, StorageResource]
    gaps: list[CoverageGap]
    seconds: float
    inventory: Path


def _scan(tmp_path: Path, deadline: float) -> Outcome:
    needs, catalog = scanner_context([POLICIES])
    scanner = GcsScanner(
        needs, catalog, [PROJECT], timeout=TIMEOUT, retry_deadline=deadline, retry=FAST_RETRY, concurrency=4
    )
    inventory = tmp_path / "inv.jsonl"
    started = time.monotonic()
    run_scan(scanner, inventory, progress=False)
    seconds = time.monotonic() - started
    resources: dict[str, StorageResource] = {}
    gaps: list[CoverageGap] = []
    for record in read_inventory(inventory):
        if isinstance(record, StorageResource):
            assert record.name not in resources, f"{record.name} written twice"
            resources[record.name] = record
        else:
            gaps.append(record)
    return Outcome(resources, gaps, seconds, inventory)


POLICY_ATTRIBUTES = {
    loaded.policy.id: {leaf.attribute for leaf, _ in policy_leaves(loaded)}
    for loaded in load_policies([POLICIES])
}


def _check(outcome: Outcome) -> tuple[dict[tuple[str, str], str], dict[str, Any], int]:
    """`auditor check --format json` of the inventory: status by (policy, resource), the document, exit."""
    result = CliRunner().invoke(
        cli,
        ["check", "--inventory", str(outcome.inventory), "--policies", str(POLICIES), "--format", "json"],
    )
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    assert "Traceback" not in result.output
    document: dict[str, Any] = json.loads(result.stdout)
    statuses = {(f["policy_id"], f["resource"]["id"]): f["status"] for f in document["findings"]}
    return statuses, document, result.exit_code


def _assert_no_false_pass(outcome: Outcome, statuses: dict[tuple[str, str], str]) -> None:
    by_id = {r.id: r for r in outcome.resources.values()}
    for (policy, resource_id), status in statuses.items():
        if status != "pass":
            continue
        resource = by_id[resource_id]
        unreadable = {a for a in POLICY_ATTRIBUTES[policy] if resource.unknown_reason(a) is not None}
        assert not unreadable, f"{policy} passed on {resource_id} although {unreadable} are unknown"


def _assert_nothing_lost(outcome: Outcome) -> None:
    missing = EVERY_BUCKET - set(outcome.resources)
    if missing:
        covering = [g for g in outcome.gaps if g.account == PROJECT and "not listed" in g.reason]
        assert covering, f"{sorted(missing)} are neither in the inventory nor covered by a gap"


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
@pytest.mark.parametrize("call", list(CALLS))
def test_persistent_fault_is_unknown_never_lost_never_a_pass(
    faulty: FaultProxy, tmp_path: Path, call: str, fault: Fault
) -> None:
    rule = faulty.add(FaultRule(fault.kind, path=CALLS[call], method="GET", status=fault.status))
    outcome = _scan(tmp_path, PERSISTENT_DEADLINE)

    assert outcome.seconds < BOUND_SECONDS
    assert faulty.hits_of(rule) >= 1
    _assert_nothing_lost(outcome)
    statuses, document, exit_code = _check(outcome)
    _assert_no_false_pass(outcome, statuses)
    assert exit_code != 0  # a gap or an unreadable bucket is never a clean run
    assert len(document["run"]["coverage"]["gaps"]) == len(outcome.gaps)

    if call == "get-unreachable":
        # Every listed bucket is complete; the unreachable one is kept with every group unknown.
        assert set(outcome.resources) == EVERY_BUCKET and outcome.gaps == []
        bucket = outcome.resources[UNREACHABLE]
        assert all(getattr(bucket, group) is None for group in GROUPS)
        for group in GROUPS:
            unknown = bucket.unknown[group]
            assert unknown.code is fault.code, unknown
            assert f"({GET_CALL})" in unknown.reason
            assert (MALFORMED in unknown.reason) is fault.malformed, unknown.reason
        assert {status for (_, rid), status in statuses.items() if rid == bucket.id} == {"error"}
        (evidence,) = bucket.evidence
        assert evidence.call == GET_CALL and evidence.error
        if fault.body_kept:
            _assert_raw_evidence(fault.kind, evidence.response)
        else:
            assert evidence.response is None
        for name in EVERY_BUCKET - {UNREACHABLE}:
            assert outcome.resources[name].unknown.keys() <= {
                "transport.min_tls_version",
                "transport.min_tls_enforced_by",
            }
        return

    (gap,) = outcome.gaps
    assert gap.provider == "gcp" and gap.account == PROJECT and gap.scope == "project"
    assert gap.code is fault.code, gap
    assert f"({LIST_CALL})" in gap.reason
    assert (MALFORMED in gap.reason) is fault.malformed, gap.reason
    if call == "list-first-page":
        assert outcome.resources == {}
        assert gap.reason.endswith("not listed: its buckets")
    else:
        # Page one (two buckets and the unreachable one) is kept; the gap says what is missing.
        assert set(outcome.resources) == {*PAGE_ONE, UNREACHABLE}
        assert gap.reason.startswith("listing stopped at page 2 after 3 buckets: ")
        assert gap.reason.endswith("not listed: its buckets from page 2 on")
        assert outcome.resources["faulty-a"].location is not None


def _assert_raw_evidence(kind: FaultKind, response: Any) -> None:
    assert isinstance(response, dict) and set(response) == {"bytes", "head", "head_truncated"}
    if kind == "empty":
        assert response == {"bytes": 0, "head": "", "head_truncated": False}
    elif kind == "garbled":
        assert response["bytes"] == len(GARBLE) and not response["head_truncated"]
        assert response["head"] == GARBLE.decode("utf-8", "backslashreplace")
    else:  # truncated: half of a ~5 KB bucket resource, cut to the excerpt's bound
        assert response["bytes"] > RAW_EVIDENCE_BYTES and response["head_truncated"]
        assert len(response["head"]) == RAW_EVIDENCE_BYTES
        assert response["head"].startswith('{"kind": "storage#bucket"')


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.id)
@pytest.mark.parametrize("call", list(CALLS))
def test_transient_fault_is_retried_and_the_record_is_complete(
    faulty: FaultProxy, tmp_path: Path, call: str, fault: Fault
) -> None:
    rule = faulty.add(FaultRule(fault.kind, path=CALLS[call], method="GET", status=fault.status, times=1))
    outcome = _scan(tmp_path, TRANSIENT_DEADLINE)

    assert faulty.hits_of(rule) == 1
    assert outcome.seconds < BOUND_SECONDS
    assert outcome.gaps == []
    assert set(outcome.resources) == EVERY_BUCKET
    for resource in outcome.resources.values():
        # Only the TLS minimum is unknown (no --tls-policy file); everything else was read.
        assert resource.unknown.keys() == {"transport.min_tls_version", "transport.min_tls_enforced_by"}
    unreachable = outcome.resources[UNREACHABLE]
    assert unreachable.location is not None and unreachable.location.regions == ["europe-west3"]
    assert unreachable.tags == BIG_LABELS
    statuses, _, _ = _check(outcome)
    assert statuses[("gcstest.residency", f"gs://{UNREACHABLE}")] == "pass"
    # The retry asked again: one request more for the broken call than for a clean scan.
    asked = [path for method, path in faulty.requests if re.search(CALLS[call], path)]
    assert len(asked) == 2


@pytest.mark.parametrize(("kind", "times"), [("garbled", None), ("status", 1)])
def test_emulator_behind_the_proxy(
    seeded_emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: FaultKind, times: int | None
) -> None:
    # gcp-storage-emulator (another JSON API implementation) behind the same proxy: a garbled
    # listing is a gap for its project; a 503 once is retried and every bucket is read.
    with fault_proxy(seeded_emulator, hang_seconds=3.0) as emulator_proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_proxy.url)
        rule = emulator_proxy.add(FaultRule(kind, path=r"^/storage/v1/b\?", method="GET", times=times))
        needs, catalog = scanner_context([POLICIES])
        scanner = GcsScanner(
            needs,
            catalog,
            [EMULATOR_PROJECT],
            timeout=TIMEOUT,
            retry_deadline=PERSISTENT_DEADLINE,
            retry=FAST_RETRY,
        )
        inventory = tmp_path / "inv.jsonl"
        summary = run_scan(scanner, inventory, progress=False)
        assert emulator_proxy.hits_of(rule) >= 1
    records = list(read_inventory(inventory))
    if times is None:
        assert summary.resources == 0
        (gap,) = records
        assert isinstance(gap, CoverageGap) and gap.account == EMULATOR_PROJECT
        assert gap.code is UnknownCode.ERROR and gap.reason.startswith(
            f"{MALFORMED}: listing page is not JSON"
        )
    else:
        names = {r.name for r in records if isinstance(r, StorageResource)}
        assert {"plain-default", "cmek-in-zone", "labels-dash"} <= names
        assert summary.gaps == []
