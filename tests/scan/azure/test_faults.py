"""Every storage call the Azure scanner makes, broken every way a network or service breaks it.

(The Cognitive Services calls are broken the same ways in tests/scan/azure/test_ai.py.)

A fault-injecting proxy (tests/fault_proxy.py) sits in front of a two-account ARM server (TLS, the
test certificate) and of Azurite (plain HTTP). For each call kind x fault kind the scan must end in
bounded time without a traceback, lose no container (each is recorded or covered by a gap), make the
attributes the broken call feeds unknown with the right code, keep the unparsable answer (bounded)
as evidence, and never let a policy that needs a broken attribute pass.
"""

from __future__ import annotations

import copy
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.identity import EnvironmentCredential

from auditor.evaluate import Evaluator, compile_policies
from auditor.inventory import InventoryRecord
from auditor.model import CoverageGap, StorageResource, UnknownCode
from auditor.policy.loader import load_policies, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.azure import RAW_EVIDENCE_BYTES, AzureScanner, StaticTokenCredential
from auditor.scan.base import AttributeNeeds
from tests.fault_proxy import FAULT_KINDS, FaultKind, FaultProxy, FaultRule

from .arm_server import ArmServer, load_recorded, make_certificate
from .conftest import RECORDED, SUBSCRIPTION, TOKEN, Azurite, account_key, split, storage_only

ACCOUNTS = ("euwcmk", "euwscope")
# euwcmk: containers on the data plane, a Key Vault account key (vault auditkvweu).
# euwscope: no shared key, so containers come from ARM with a GET each for metadata; a Key Vault scope.
EXPECTED = {"euwcmk/cmkdata", "euwscope/plain", "euwscope/scoped", "euwscope/scopedopen"}
READ_TIMEOUT = 0.4
RETRIES = 1
SCAN_BOUND = 20.0  # seconds; the slowest case (every container GET hangs) takes about 3


@dataclass(frozen=True)
class CallKind:
    plane: str  # "arm" or "blob"
    path: str  # regex on the request path and query
    operation: str  # the scanner's name for the call
    probe: tuple[str, str] | None  # (resource key, attribute) the call feeds; None: a gap
    blob_credential: str = "shared-key"


CALLS: dict[str, CallKind] = {
    "account-listing": CallKind(
        "arm", r"/providers/Microsoft\.Storage/storageAccounts\?", "storage:StorageAccounts.List", None
    ),
    "container-listing-data-plane": CallKind(
        "blob", r"comp=list", "blob:ListContainers", ("euwcmk", "tags.ai-training")
    ),
    "container-listing-arm": CallKind(
        "arm",
        r"/blobServices/default/containers\?",
        "storage:BlobContainers.List",
        ("euwscope", "tags.ai-training"),
    ),
    "container-get": CallKind(
        "arm",
        r"/blobServices/default/containers/[a-z]+\?",
        "storage:BlobContainers.Get",
        ("euwscope/scoped", "tags.ai-training"),
    ),
    "encryption-scopes": CallKind(
        "arm",
        r"/encryptionScopes\?",
        "storage:EncryptionScopes.List",
        ("euwcmk/cmkdata", "encryption.key_id"),
    ),
    "key-vault-lookup": CallKind(
        "arm", r"/resources\?", "resources:Resources.List", ("euwcmk/cmkdata", "encryption.key_location")
    ),
}

MALFORMED: set[FaultKind] = {"empty", "truncated", "garbled"}
EXPECTED_CODE: dict[FaultKind, UnknownCode] = {
    "empty": UnknownCode.ERROR,
    "truncated": UnknownCode.ERROR,
    "garbled": UnknownCode.ERROR,
    "short_read": UnknownCode.ERROR,
    "reset": UnknownCode.ERROR,
    "hang": UnknownCode.TIMEOUT,
    "status": UnknownCode.THROTTLED,
}


@pytest.fixture(scope="module")
def small_arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmServer]:
    """The recorded ARM answers cut to two accounts, unpaged, so every request goes through the proxy."""
    documents = copy.deepcopy(load_recorded(RECORDED))
    listing = f"/subscriptions/{SUBSCRIPTION}/providers/microsoft.storage/storageaccounts"
    documents[listing]["value"] = [a for a in documents[listing]["value"] if a["name"] in ACCOUNTS]
    with ArmServer(documents, token=TOKEN, cert_dir=tmp_path_factory.mktemp("small-arm")) as server:
        yield server


@pytest.fixture(scope="module")
def arm_proxy(small_arm: ArmServer) -> Iterator[FaultProxy]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(small_arm.ca_file, small_arm.ca_file.parent / "arm-key.pem")
    proxy = FaultProxy(small_arm.base_url, server_ssl=context, hang_seconds=5).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def blob_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    proxy = FaultProxy(f"http://127.0.0.1:{azurite.port}", hang_seconds=5).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxies(arm_proxy: FaultProxy, blob_proxy: FaultProxy) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    arm_proxy.clear()
    blob_proxy.clear()
    yield arm_proxy, blob_proxy
    arm_proxy.clear()
    blob_proxy.clear()


def scanner_for(
    catalog: ZoneCatalog,
    small_arm: ArmServer,
    arm_proxy: FaultProxy,
    blob_proxy: FaultProxy,
    **overrides: Any,
) -> AzureScanner:
    options: dict[str, Any] = {
        "subscriptions": [SUBSCRIPTION],
        "credential": StaticTokenCredential(TOKEN),
        "arm_endpoint": arm_proxy.url,
        "blob_endpoint_template": blob_proxy.url + "/{account}",
        "ca_bundle": str(small_arm.ca_file),
        "blob_credential": "shared-key",
        "account_keys": {"euwcmk": account_key("euwcmk")},
        "retry_total": RETRIES,
        "retry_backoff": 0.01,
        "retry_backoff_max": 0.05,
        "retry_after_max": 2.0,
        "connection_timeout": 2.0,
        "read_timeout": READ_TIMEOUT,
    }
    options.update(overrides)
    return AzureScanner(storage_only(AttributeNeeds.everything()), catalog, 4, **options)


def run_bounded(scanner: AzureScanner, bound: float = SCAN_BOUND) -> tuple[list[InventoryRecord], float]:
    """The scan's records; fails (instead of hanging) if it does not end within `bound`."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["records"] = list(scanner.scan())
        except BaseException as exc:
            out["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"the scan did not end within {bound} s"
    assert "error" not in out, f"the scan raised {out.get('error')!r}"
    return out["records"], elapsed


def findings(
    catalog: ZoneCatalog, resources: dict[str, StorageResource]
) -> tuple[dict[tuple[str, str], str], dict[str, frozenset[str]]]:
    compiled = compile_policies(load_policies([shipped_policies_dir()]), catalog, {"zone": "eu"})
    evaluator = Evaluator(compiled, remember_decisions=False)
    statuses: dict[tuple[str, str], str] = {}
    for key, resource in resources.items():
        for finding in evaluator.evaluate(resource):
            statuses[(finding.policy_id, key)] = finding.status.value
    return statuses, {c.loaded.policy.id: c.attributes for c in compiled}


@pytest.fixture(scope="module")
def baseline(
    catalog: ZoneCatalog, small_arm: ArmServer, arm_proxy: FaultProxy, blob_proxy: FaultProxy
) -> dict[tuple[str, str], str]:
    arm_proxy.clear()
    blob_proxy.clear()
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    resources, gaps = split(records)
    assert set(resources) == EXPECTED and not gaps
    statuses, _ = findings(catalog, resources)
    assert "pass" in statuses.values()
    return statuses


def rule_for(call: CallKind, fault: FaultKind) -> FaultRule:
    if fault == "status":
        return FaultRule(
            "status",
            path=call.path,
            method="GET",
            status=429,
            body=b'{"error": {"code": "TooManyRequests", "message": "throttled"}}',
            headers={"Retry-After": "0", "Content-Type": "application/json"},
        )
    return FaultRule(fault, path=call.path, method="GET")


def covered(key: str, gaps: list[CoverageGap]) -> bool:
    account = key.split("/", 1)[0]
    return any(g.scope == "subscription" or f"/storageAccounts/{account} " in g.reason + " " for g in gaps)


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("call_name", list(CALLS))
def test_a_broken_call_never_passes_never_loses_never_hangs(
    catalog: ZoneCatalog,
    small_arm: ArmServer,
    proxies: tuple[FaultProxy, FaultProxy],
    baseline: dict[tuple[str, str], str],
    call_name: str,
    fault: FaultKind,
) -> None:
    arm_proxy, blob_proxy = proxies
    call = CALLS[call_name]
    proxy = arm_proxy if call.plane == "arm" else blob_proxy
    rule = proxy.add(rule_for(call, fault))
    records, elapsed = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    assert proxy.hits_of(rule) >= 1, "the fault never fired"
    assert elapsed < SCAN_BOUND
    resources, gaps = split(records)

    # No lost resource: every container is in the inventory or covered by a gap.
    for key in EXPECTED:
        assert key in resources or covered(key, gaps), f"{key} is neither recorded nor covered"
    # Every listing gap carries the failed call(s) behind it.
    for gap in gaps:
        assert gap.evidence and all(e.error for e in gap.evidence), gap

    # The attributes the broken call feeds are unknown, with the fault's code.
    code = EXPECTED_CODE[fault]
    if call.probe is None:
        assert not resources
        assert [(g.scope, g.code) for g in gaps] == [("subscription", code)]
        if fault in MALFORMED:
            assert "malformed/empty answer" in gaps[0].reason
    else:
        key, attribute = call.probe
        reason = resources[key].unknown_reason(attribute)
        assert reason is not None, f"{key} {attribute} is known despite a broken {call.operation}"
        assert call.operation in reason.reason
        if call.plane == "blob":
            # The data plane failed, then the ARM fallback (nothing recorded for euwcmk): both named.
            assert "blob data plane" in reason.reason
        else:
            assert reason.code == code, reason
        evidence = [e for e in resources[key].evidence if e.call == call.operation and e.error]
        assert evidence, f"no evidence of the failed {call.operation}"
        if fault in MALFORMED:
            assert "malformed/empty answer" in reason.reason
            raw = evidence[-1].response
            assert isinstance(raw, dict) and raw["status"] == 200
            assert raw["body"] is not None and len(raw["body"]) <= 4 * RAW_EVIDENCE_BYTES
            if fault == "garbled":
                assert "garbled" in raw["body"]
            if fault == "empty":
                assert raw["bytes"] == 0

    # No false pass: a pass needs every attribute the policy reads, and the clean scan's pass.
    statuses, reads = findings(catalog, resources)
    for (policy, key), status in statuses.items():
        if status != "pass":
            continue
        # An account recorded in place of its containers passes only what all of them passed.
        before = [
            v for (p, k), v in baseline.items() if p == policy and (k == key or k.startswith(key + "/"))
        ]
        assert before and set(before) == {"pass"}, (policy, key, before)
        for attribute in reads[policy]:
            unknown = resources[key].unknown_reason(attribute)
            assert unknown is None, f"{policy} passed on {key} though {attribute} is unknown: {unknown}"


def test_raw_answer_kept_as_evidence_is_bounded(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    arm_proxy, blob_proxy = proxies
    big = b"<html>" + b"x" * 20_000 + b"</html>"
    arm_proxy.add(FaultRule("status", path=r"/encryptionScopes\?", status=200, body=big))
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    resources, _ = split(records)
    record = resources["euwcmk/cmkdata"]
    reason = record.unknown_reason("encryption.key_management")
    assert reason is not None and reason.code == UnknownCode.ERROR
    assert "malformed/empty answer to storage:EncryptionScopes.List" in reason.reason
    raw = next(e.response for e in record.evidence if e.call == "storage:EncryptionScopes.List")
    assert raw["bytes"] == len(big) and raw["truncated"] is True
    assert raw["body"] == big[:RAW_EVIDENCE_BYTES].decode()


def test_an_answer_that_parses_to_nothing_is_not_an_empty_listing(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    # '{}' is valid JSON, but an ARM list always has 'value': no accounts is not what it says.
    arm_proxy, blob_proxy = proxies
    arm_proxy.add(FaultRule("status", path=r"/storageAccounts\?", status=200, body=b"{}"))
    arm_proxy.add(FaultRule("status", path=r"/encryptionScopes\?", status=200, body=b'{"value": null}'))
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    resources, gaps = split(records)
    assert not resources
    assert len(gaps) == 1 and gaps[0].scope == "subscription" and gaps[0].code == UnknownCode.ERROR
    assert "malformed/empty answer" in gaps[0].reason


@pytest.mark.parametrize("status", [429, 503])
def test_data_plane_retries_429_like_503_then_reports_throttled(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy], status: int
) -> None:
    arm_proxy, blob_proxy = proxies
    # Transient: the first answer is throttled, the retry succeeds.
    transient = blob_proxy.add(
        FaultRule("status", path="comp=list", status=status, headers={"Retry-After": "1"}, times=1)
    )
    started = time.monotonic()
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    resources, gaps = split(records)
    assert blob_proxy.hits_of(transient) == 1
    assert "euwcmk/cmkdata" in resources and not gaps
    assert [p for m, p in blob_proxy.requests if "comp=list" in p].__len__() == 2

    # Persistent: retried `retry_total` times, then the listing reports it.
    blob_proxy.clear()
    persistent = blob_proxy.add(FaultRule("status", path="comp=list", status=status))
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy, retry_total=2))
    assert blob_proxy.hits_of(persistent) == 3
    resources, _ = split(records)
    reason = resources["euwcmk"].unknown_reason("tags")
    assert reason is not None
    expected = "throttled" if status == 429 else "error"
    failed = [e for e in resources["euwcmk"].evidence if e.call == "blob:ListContainers"]
    assert failed and failed[0].error is not None
    assert str(status) in failed[0].error or ("ServerBusy" in failed[0].error) or expected in reason.code


def test_a_retry_after_beyond_the_bound_ends_retries_as_throttled(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    arm_proxy, blob_proxy = proxies
    rule = arm_proxy.add(
        FaultRule(
            "status",
            path=r"/encryptionScopes\?",
            status=429,
            headers={"Retry-After": "3600"},
            body=b'{"error": {"code": "TooManyRequests", "message": "slow down"}}',
        )
    )
    records, elapsed = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy, retry_total=3))
    assert elapsed < 10
    assert arm_proxy.hits_of(rule) == 2  # one per account, none retried
    resources, _ = split(records)
    reason = resources["euwcmk/cmkdata"].unknown_reason("encryption.key_management")
    assert reason is not None and reason.code == UnknownCode.THROTTLED


def test_no_credentials_at_all_is_a_gap_per_subscription(
    catalog: ZoneCatalog,
    small_arm: ArmServer,
    proxies: tuple[FaultProxy, FaultProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arm_proxy, blob_proxy = proxies
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    other = "33333333-3333-4333-8333-333333333333"
    scanner = scanner_for(
        catalog,
        small_arm,
        arm_proxy,
        blob_proxy,
        subscriptions=[SUBSCRIPTION, other],
        credential=EnvironmentCredential(),
    )
    records, _ = run_bounded(scanner)
    resources, gaps = split(records)
    assert not resources
    assert sorted((g.account, g.scope, g.code) for g in gaps) == [
        (SUBSCRIPTION, "subscription", UnknownCode.NO_CREDENTIALS),
        (other, "subscription", UnknownCode.NO_CREDENTIALS),
    ]
    assert not arm_proxy.requests  # nothing was sent without a token


def test_untrusted_certificate_is_a_gap(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy], tmp_path: Path
) -> None:
    arm_proxy, blob_proxy = proxies
    other_ca, _ = make_certificate(tmp_path)
    records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy, ca_bundle=str(other_ca)))
    resources, gaps = split(records)
    assert not resources
    assert len(gaps) == 1 and gaps[0].scope == "subscription" and gaps[0].code == UnknownCode.ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in gaps[0].reason


def test_unknown_subscription_is_a_gap_and_the_others_go_on(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    arm_proxy, blob_proxy = proxies
    unknown = "44444444-4444-4444-8444-444444444444"
    records, _ = run_bounded(
        scanner_for(catalog, small_arm, arm_proxy, blob_proxy, subscriptions=[unknown, SUBSCRIPTION])
    )
    resources, gaps = split(records)
    assert set(resources) == EXPECTED
    assert [(g.account, g.scope, g.code) for g in gaps] == [(unknown, "subscription", UnknownCode.ERROR)]
    assert "ResourceNotFound" in gaps[0].reason


def test_garbled_account_listing_of_one_subscription_leaves_the_next(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    arm_proxy, blob_proxy = proxies
    second = "55555555-5555-4555-8555-555555555555"
    listing = f"/subscriptions/{SUBSCRIPTION}/providers/microsoft.storage/storageaccounts"
    small_arm.documents[f"/subscriptions/{second}/providers/microsoft.storage/storageaccounts"] = {
        "value": []
    }
    try:
        arm_proxy.add(
            FaultRule("garbled", path=SUBSCRIPTION + r"/providers/Microsoft\.Storage/storageAccounts")
        )
        records, _ = run_bounded(
            scanner_for(catalog, small_arm, arm_proxy, blob_proxy, subscriptions=[SUBSCRIPTION, second])
        )
    finally:
        del small_arm.documents[f"/subscriptions/{second}/providers/microsoft.storage/storageaccounts"]
    resources, gaps = split(records)
    assert not resources
    assert [(g.account, g.code) for g in gaps] == [(SUBSCRIPTION, UnknownCode.ERROR)]
    assert any(second in p for _, p in arm_proxy.requests)  # the next subscription was listed
    # The gap keeps the failed page's evidence, with the raw answer (bounded, redacted).
    (evidence,) = gaps[0].evidence
    assert evidence.call == "storage:StorageAccounts.List"
    assert evidence.request == {"subscription": SUBSCRIPTION, "page": 1}
    assert evidence.response["status"] == 200 and evidence.response["bytes"] > 0
    assert "garbled" in evidence.response["body"] and evidence.error
    assert listing  # (documented path of the broken listing)


def test_malformed_account_fields_make_only_their_group_unknown(
    catalog: ZoneCatalog, small_arm: ArmServer, proxies: tuple[FaultProxy, FaultProxy]
) -> None:
    arm_proxy, blob_proxy = proxies
    listing = f"/subscriptions/{SUBSCRIPTION}/providers/microsoft.storage/storageaccounts"
    saved = small_arm.documents[listing]
    changed = copy.deepcopy(saved)
    for account in changed["value"]:
        if account["name"] == "euwcmk":
            account["sku"]["name"] = "Standard_GRS"
            account["properties"]["secondaryLocation"] = 42  # unreadable secondary
            account["properties"]["allowBlobPublicAccess"] = "nope"
    small_arm.documents[listing] = changed
    try:
        records, _ = run_bounded(scanner_for(catalog, small_arm, arm_proxy, blob_proxy))
    finally:
        small_arm.documents[listing] = saved
    resources, _ = split(records)
    record = resources["euwcmk/cmkdata"]
    assert record.location is not None and record.location.regions == ["westeurope"]
    regions = record.unknown["location.regions"]
    assert regions.partial == "members" and regions.code == UnknownCode.ERROR
    assert "secondaryLocation" in regions.reason
    access = record.unknown_reason("access.public_access_blocked")
    assert access is not None and "allowBlobPublicAccess" in access.reason
    assert record.unknown_reason("transport.min_tls_version") is None
    statuses, _ = findings(catalog, {"euwcmk/cmkdata": record})
    assert statuses[("residency.data-in-zone", "euwcmk/cmkdata")] != "pass"
