"""Azure OpenAI / AI Foundry through ARM: accounts and deployments, verdicts per zone, calls only when needed.

The recorded ARM estate (fixtures/recorded/azure) holds, in subscription 11111111-...: `aoai-swc`
(OpenAI, swedencentral, in the EU data zone, public network disabled, six deployments on two pages:
Standard, DataZoneStandard, GlobalStandard, DataZoneFutureThing, ProvisionedManaged, DataZoneBatch),
`aoai-uks` (uksouth, in no data zone, public network enabled), `foundry-eus` (AIServices, eastus,
customer-managed key in Key Vault `auditkveus`), `aoai-weu` (its deployments listing is denied),
`aoai-frc` (no deployments; its Key Vault is in another subscription) and `lang-weu` (a TextAnalytics
account: no AI resource). Subscription 22222222-... refuses the account listing.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from pydantic import ValidationError

from auditor.cli import cli
from auditor.evaluate import Evaluator, compile_policies
from auditor.inventory import InventoryRecord, read_inventory
from auditor.model import AI_KINDS, STORAGE_KINDS, CoverageGap, StorageResource, UnknownCode
from auditor.policy.loader import load_policies, shipped_policies_dir
from auditor.policy.zones import ZoneCatalog
from auditor.scan.azure import RAW_EVIDENCE_BYTES, AzureScanner, StaticTokenCredential
from auditor.scan.azure_ai import (
    API_VERSION,
    DATA_PRIVACY,
    ENCRYPTION_AT_REST,
    OP_AI_ACCOUNTS,
    OP_AI_DEPLOYMENTS,
    SKU_PROCESSING,
)
from auditor.scan.azure_source import AzureCatalog
from auditor.scan.base import AttributeNeeds
from tests.fault_proxy import FAULT_KINDS, FaultKind, FaultProxy, FaultRule

from .arm_server import ArmServer, Fault, load_recorded, throttled
from .conftest import DENIED_SUBSCRIPTION, RECORDED, SUBSCRIPTION, TOKEN, ScanFactory, split

AI_ACCOUNTS_PATH = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.CognitiveServices/accounts"
AI_BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts"
SWC_DEPLOYMENTS = f"{AI_BASE}/aoai-swc/deployments"
ACCOUNTS = {"aoai-swc", "aoai-uks", "foundry-eus", "aoai-weu", "aoai-frc"}
DEPLOYMENTS = {
    "aoai-swc/gpt4o-std",
    "aoai-swc/gpt4o-dz",
    "aoai-swc/gpt4o-global",
    "aoai-swc/future",
    "aoai-swc/gpt4o-ptu",
    "aoai-swc/gpt4o-dzbatch",
    "aoai-uks/gpt4o-std",
    "aoai-uks/gpt4o-dz",
    "foundry-eus/gpt4o-dz",
    "foundry-eus/gpt4o-ptu",
    "foundry-eus/llama-gs",
}
PROCESSING = "residency.processing-in-zone"
DATA_IN_ZONE = "residency.data-in-zone"
KEY_IN_ZONE = "residency.key-in-zone"
OPT_OUT = "training.provider-opt-out"
SWEDEN = ["swedencentral", "swedensouth"]


# --- policy sets scoped to some kinds only ----------------------------------------------------------


def scoped_policies(directory: Path, kinds: tuple[str, ...]) -> Path:
    """The shipped residency and training policies, each scoped to its kinds among `kinds` only."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("residency.yaml", "training.yaml"):
        document = yaml.safe_load((shipped_policies_dir() / name).read_text(encoding="utf-8"))
        kept = []
        for policy in document["policies"]:
            scope = policy.setdefault("scope", {})
            chosen = [kind for kind in scope.get("kinds", STORAGE_KINDS) if kind in kinds]
            if chosen:
                scope["kinds"] = chosen
                kept.append(policy)
        document["policies"] = kept
        (directory / name).write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def ai_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scoped_policies(tmp_path_factory.mktemp("ai-policies"), AI_KINDS)


@pytest.fixture(scope="module")
def storage_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scoped_policies(tmp_path_factory.mktemp("storage-policies"), STORAGE_KINDS)


# --- one CLI scan of the AI estate with the AI-only policy set --------------------------------------


@dataclass
class AiScan:
    result: Result
    inventory: Path
    resources: dict[str, StorageResource]
    gaps: list[CoverageGap]
    requests: list[Any]
    seconds: float

    def seen(self, path_part: str) -> list[Any]:
        return [r for r in self.requests if path_part.lower() in r.path.lower()]


def scan_args(arm: ArmServer, policies: Path, output: Path, *subscriptions: str) -> list[str]:
    args = ["scan", "azure", "--policies", str(policies)]
    for subscription in subscriptions:
        args += ["--subscription", subscription]
    return [
        *args,
        "--arm-endpoint",
        arm.base_url,
        "--ca-bundle",
        str(arm.ca_file),
        "--blob-credential",
        "none",
        "--max-retries",
        "2",
        "--retry-backoff",
        "0.01",
        "--no-progress",
        "--output",
        str(output),
    ]


@pytest.fixture(scope="module")
def ai_scan(arm_session: ArmServer, ai_policies: Path, tmp_path_factory: pytest.TempPathFactory) -> AiScan:
    arm_session.reset()
    arm_session.add_fault(AI_ACCOUNTS_PATH, throttled(retry_after=1))
    inventory = tmp_path_factory.mktemp("azure-ai") / "inv.jsonl"
    args = scan_args(arm_session, ai_policies, inventory, SUBSCRIPTION, DENIED_SUBSCRIPTION)
    started = time.monotonic()
    result = CliRunner(env={"AUDITOR_AZURE_ACCESS_TOKEN": TOKEN}).invoke(cli, args)
    seconds = time.monotonic() - started
    assert result.exit_code == 0, (result.output, result.exception)
    resources, gaps = split(list(read_inventory(inventory)))
    return AiScan(result, inventory, resources, gaps, list(arm_session.requests), seconds)


def check(inventory: Path, zone: str, *policies: Path) -> dict[tuple[str, str], str]:
    """Finding status by (policy, record key) from `auditor check --format json` (shipped policies)."""
    args = ["check", "--inventory", str(inventory), "--param", f"zone={zone}", "--format", "json"]
    for policy in policies:
        args += ["--policies", str(policy)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    keys = {record.id: key for key, record in split(list(read_inventory(inventory)))[0].items()}
    document: dict[str, Any] = json.loads(result.stdout)
    return {(f["policy_id"], keys[f["resource"]["id"]]): f["status"] for f in document["findings"]}


@pytest.fixture(scope="module")
def eu(ai_scan: AiScan) -> dict[tuple[str, str], str]:
    return check(ai_scan.inventory, "eu")


@pytest.fixture(scope="module")
def us(ai_scan: AiScan) -> dict[tuple[str, str], str]:
    return check(ai_scan.inventory, "us")


# --- inventory -----------------------------------------------------------------------------------------


def test_every_ai_account_and_deployment_is_one_record(ai_scan: AiScan) -> None:
    assert set(ai_scan.resources) == ACCOUNTS | DEPLOYMENTS
    kinds = {key: record.kind for key, record in ai_scan.resources.items()}
    assert {kinds[key] for key in ACCOUNTS} == {"ai-account"}
    assert {kinds[key] for key in DEPLOYMENTS} == {"ai-deployment"}
    assert all(r.provider == "azure" and r.account == SUBSCRIPTION for r in ai_scan.resources.values())
    record = ai_scan.resources["aoai-swc/gpt4o-dz"]
    assert record.id == f"{AI_BASE}/aoai-swc/deployments/gpt4o-dz"
    assert ai_scan.resources["aoai-swc"].id == f"{AI_BASE}/aoai-swc"


def test_a_cognitive_services_kind_that_hosts_no_models_is_not_an_ai_resource(ai_scan: AiScan) -> None:
    assert "lang-weu" not in ai_scan.resources
    assert not ai_scan.seen("/lang-weu/")  # its deployments are never listed


def test_an_ai_only_policy_set_makes_no_storage_request(ai_scan: AiScan) -> None:
    assert ai_scan.requests and not ai_scan.seen("Microsoft.Storage")
    assert "storage:" not in ai_scan.result.output and "blob:" not in ai_scan.result.output
    assert f"{OP_AI_ACCOUNTS}: " in ai_scan.result.stdout


def test_an_arm_token_is_enough_when_no_container_is_listed(
    arm: ArmServer, ai_policies: Path, tmp_path: Path
) -> None:
    # The default --blob-credential token needs a storage token, but AI-only policies list no container.
    args = scan_args(arm, ai_policies, tmp_path / "inv.jsonl", SUBSCRIPTION)
    args.remove("--blob-credential")
    args.remove("none")
    result = CliRunner(env={"AUDITOR_AZURE_ACCESS_TOKEN": TOKEN}).invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert not arm.seen("Microsoft.Storage") and arm.seen("Microsoft.CognitiveServices")


def test_every_request_names_the_api_version(ai_scan: AiScan) -> None:
    cognitive = ai_scan.seen("Microsoft.CognitiveServices")
    assert cognitive and {r.query["api-version"][0] for r in cognitive} == {API_VERSION}
    assert all(r.status != 400 for r in cognitive)  # the server refuses api-versions it does not serve


def test_account_listing_honours_retry_after_and_follows_next_links(ai_scan: AiScan) -> None:
    listing = ai_scan.seen(AI_ACCOUNTS_PATH)
    first = [r for r in listing if "$skipToken" not in r.query]
    assert [r.status for r in first] == [429, 200]
    assert ai_scan.seconds >= 1.0  # the Retry-After of 1 s was waited for
    assert [r.query["$skipToken"] for r in listing if "$skipToken" in r.query] == [["5"]]  # 6 accounts


def test_deployment_listing_follows_next_links(ai_scan: AiScan) -> None:
    pages = ai_scan.seen(SWC_DEPLOYMENTS)
    assert [r.query.get("$skipToken") for r in pages] == [None, ["5"]]
    evidence = next(
        e for e in ai_scan.resources["aoai-swc/gpt4o-dzbatch"].evidence if e.call == OP_AI_DEPLOYMENTS
    )
    assert evidence.request is not None and evidence.request["page"] == 2


def test_account_at_rest_location_is_its_geography(ai_scan: AiScan) -> None:
    location = ai_scan.resources["aoai-swc"].location
    assert location is not None
    assert (location.type, location.primary, location.regions) == ("geography", "swedencentral", SWEDEN)
    weu = ai_scan.resources["aoai-weu"].location
    assert weu is not None and weu.raw == "West Europe" and weu.regions == ["westeurope", "northeurope"]


def test_microsoft_managed_key_by_default_and_by_setting(ai_scan: AiScan) -> None:
    default = ai_scan.resources["aoai-swc"].encryption  # no encryption setting at all
    assert default is not None
    assert (default.key_management, default.algorithm, default.key_id) == ("provider-managed", "AES256", None)
    assert default.provider_default is True and default.source == ENCRYPTION_AT_REST
    assert "encryption" not in ai_scan.resources["aoai-swc"].evidence[0].response["properties"]
    chosen = ai_scan.resources["aoai-weu"].encryption  # keySource Microsoft.CognitiveServices
    assert chosen is not None and chosen.key_management == "provider-managed"
    assert chosen.provider_default is False


def test_customer_managed_key_and_its_vault_location(ai_scan: AiScan) -> None:
    record = ai_scan.resources["foundry-eus"]
    encryption = record.encryption
    assert encryption is not None
    assert encryption.key_management == "customer-managed"
    assert (
        encryption.key_id
        == "https://auditkveus.vault.azure.net/keys/aoai-cmk/7c1e0b9a4d2f4e6a8b3c5d7e9f1a2b4c"
    )
    assert encryption.key_location == "eastus"
    vault = [e for e in record.evidence if e.call == "resources:Resources.List"]
    assert vault and vault[0].response["value"][0]["name"] == "auditkveus"
    other = ai_scan.resources["aoai-frc"]  # vault in another subscription
    reason = other.unknown_reason("encryption.key_location")
    assert reason is not None and "VaultNotFound" in reason.reason and "partnerkv" in reason.reason


@pytest.fixture(scope="module")
def full_ai(arm_session: ArmServer, catalog: ZoneCatalog) -> dict[str, StorageResource]:
    """Every attribute of the AI kinds (the shipped policies read neither access nor tags)."""
    arm_session.reset()
    resources, _ = split(list(ai_scanner(arm_session, catalog, needs_for(AI_KINDS)).scan()))
    return resources


def test_groups_no_policy_reads_are_not_collected(ai_scan: AiScan) -> None:
    record = ai_scan.resources["aoai-swc"]
    assert (record.access, record.tags) == (None, None)
    assert record.unknown_reason("access.public_access_blocked") is not None  # not_collected, never a pass
    assert record.evidence[0].attributes == ["location", "encryption", "training"]


def test_network_access(full_ai: dict[str, StorageResource]) -> None:
    closed = full_ai["aoai-swc"].access
    assert closed is not None and closed.public_access_blocked is True
    assert closed.detail is not None and closed.detail["networkAcls"]["defaultAction"] == "Deny"
    opened = full_ai["foundry-eus"].access
    assert opened is not None and opened.public_access_blocked is False
    assert opened.detail == {
        "publicNetworkAccess": "Enabled",
        "restrictOutboundNetworkAccess": True,
        "networkAcls": {
            "defaultAction": "Deny",
            "virtualNetworkRules": [],
            "ipRules": [{"value": "203.0.113.0/24"}],
        },
    }
    uks = full_ai["aoai-uks"].access
    assert uks is not None and uks.public_access_blocked is False


def test_tags_and_the_documented_training_default(
    ai_scan: AiScan, full_ai: dict[str, StorageResource]
) -> None:
    assert full_ai["aoai-swc"].tags == {"data-class": "internal", "owner": "ml-platform"}
    assert full_ai["aoai-uks"].tags == {}
    for key in ("aoai-swc", "aoai-swc/gpt4o-global", "foundry-eus/llama-gs"):
        training = ai_scan.resources[key].training
        assert training is not None
        assert (training.provider_may_train, training.decided_by) == (False, "provider-default")
        assert training.source == DATA_PRIVACY and training.as_of is not None
    # A deployment carries only processing and training (KIND_GROUPS), whatever is wanted.
    deployment = full_ai["aoai-swc/gpt4o-std"]
    assert (deployment.location, deployment.encryption, deployment.access, deployment.tags) == (None,) * 4
    assert deployment.processing is not None and deployment.training is not None


@pytest.mark.parametrize(
    ("key", "scope", "regions"),
    [
        ("aoai-swc/gpt4o-std", "geography", SWEDEN),
        ("aoai-swc/gpt4o-ptu", "geography", SWEDEN),
        ("aoai-uks/gpt4o-std", "geography", ["uksouth", "ukwest"]),
        ("aoai-swc/gpt4o-global", "global", ["*"]),
        ("foundry-eus/llama-gs", "global", ["*"]),
    ],
)
def test_processing_by_sku(ai_scan: AiScan, key: str, scope: str, regions: list[str]) -> None:
    record = ai_scan.resources[key]
    assert record.processing is not None
    assert (record.processing.scope, record.processing.regions) == (scope, regions)
    assert record.processing.raw == record.evidence[1].response["sku"]["name"]
    assert record.unknown_reason("processing.regions") is None


def test_a_data_zone_sku_processes_in_the_accounts_data_zone(ai_scan: AiScan, catalog: ZoneCatalog) -> None:
    zones = catalog.section("azure", AzureCatalog).data_zones
    for key, zone in (
        ("aoai-swc/gpt4o-dz", "eu"),
        ("aoai-swc/gpt4o-dzbatch", "eu"),
        ("foundry-eus/gpt4o-dz", "us"),
    ):
        processing = ai_scan.resources[key].processing
        assert processing is not None and processing.scope == "data-zone"
        assert processing.regions == zones[zone].members


def test_a_data_zone_sku_outside_every_data_zone_is_unknown(ai_scan: AiScan) -> None:
    record = ai_scan.resources["aoai-uks/gpt4o-dz"]
    reason = record.unknown_reason("processing.regions")
    assert reason is not None and reason.code == UnknownCode.NOT_SUPPORTED
    assert "NoDataZone" in reason.reason and "uksouth" in reason.reason
    assert record.processing is not None and record.processing.regions == []


def test_an_unknown_sku_is_unknown_whatever_its_name(ai_scan: AiScan) -> None:
    record = ai_scan.resources["aoai-swc/future"]
    assert record.processing is not None and record.processing.raw == "DataZoneFutureThing"
    for path in ("processing.scope", "processing.regions"):
        reason = record.unknown_reason(path)
        assert reason is not None and reason.code == UnknownCode.NOT_SUPPORTED
        assert "UnknownSku" in reason.reason and OP_AI_DEPLOYMENTS in reason.reason


def test_a_denied_deployment_listing_is_a_gap_not_zero_deployments(ai_scan: AiScan) -> None:
    assert not [k for k in ai_scan.resources if k.startswith("aoai-weu/")]
    assert "aoai-weu" in ai_scan.resources  # the account itself is recorded
    [gap] = [g for g in ai_scan.gaps if g.scope == "ai-deployments:aoai-weu"]
    assert gap.account == SUBSCRIPTION and gap.code == UnknownCode.ACCESS_DENIED
    assert f"{AI_BASE}/aoai-weu" in gap.reason and "AuthorizationFailed" in gap.reason
    (evidence,) = gap.evidence
    assert evidence.call == OP_AI_DEPLOYMENTS and evidence.error
    assert evidence.request == {
        "subscription": SUBSCRIPTION,
        "resourceGroup": "rg-ai",
        "account": "aoai-weu",
        "page": 1,
    }


def test_an_account_without_deployments_has_none_and_no_gap(ai_scan: AiScan) -> None:
    assert ai_scan.seen(f"{AI_BASE}/aoai-frc/deployments")
    assert not [k for k in ai_scan.resources if k.startswith("aoai-frc/")]
    assert not [g for g in ai_scan.gaps if "aoai-frc" in g.scope]


def test_a_denied_account_listing_is_a_gap(ai_scan: AiScan) -> None:
    assert sorted((g.account, g.scope, g.code) for g in ai_scan.gaps) == [
        (SUBSCRIPTION, "ai-deployments:aoai-weu", UnknownCode.ACCESS_DENIED),
        (DENIED_SUBSCRIPTION, "ai-accounts", UnknownCode.ACCESS_DENIED),
    ]
    [gap] = [g for g in ai_scan.gaps if g.scope == "ai-accounts"]
    assert gap.reason.startswith("AuthorizationFailed:") and OP_AI_ACCOUNTS in gap.reason


def test_the_token_is_in_no_record(ai_scan: AiScan) -> None:
    assert TOKEN not in ai_scan.inventory.read_text() and TOKEN not in ai_scan.result.output


# --- verdicts per zone (auditor check, shipped policies) ----------------------------------------------


@pytest.mark.parametrize(
    ("key", "in_eu", "in_us"),
    [
        ("aoai-swc/gpt4o-std", "pass", "fail"),  # Standard: the Sweden geography
        ("aoai-swc/gpt4o-ptu", "pass", "fail"),  # ProvisionedManaged: likewise
        ("aoai-swc/gpt4o-dz", "pass", "fail"),  # the EU data zone
        ("aoai-swc/gpt4o-dzbatch", "pass", "fail"),
        ("aoai-swc/gpt4o-global", "fail", "fail"),  # any region
        ("aoai-swc/future", "error", "error"),  # an unknown SKU
        ("aoai-uks/gpt4o-std", "fail", "fail"),  # the UK geography
        ("aoai-uks/gpt4o-dz", "error", "error"),  # uksouth is in no data zone
        ("foundry-eus/gpt4o-dz", "fail", "pass"),  # the US data zone
        ("foundry-eus/gpt4o-ptu", "fail", "pass"),
        ("foundry-eus/llama-gs", "fail", "fail"),
    ],
)
def test_processing_in_zone(
    eu: dict[tuple[str, str], str], us: dict[tuple[str, str], str], key: str, in_eu: str, in_us: str
) -> None:
    assert (eu[(PROCESSING, key)], us[(PROCESSING, key)]) == (in_eu, in_us)


@pytest.mark.parametrize(
    ("key", "in_eu", "in_us"),
    [
        ("aoai-swc", "pass", "fail"),
        ("aoai-weu", "pass", "fail"),  # westeurope and northeurope
        ("aoai-uks", "fail", "fail"),
        ("foundry-eus", "fail", "pass"),
    ],
)
def test_data_at_rest_in_zone(
    eu: dict[tuple[str, str], str], us: dict[tuple[str, str], str], key: str, in_eu: str, in_us: str
) -> None:
    assert (eu[(DATA_IN_ZONE, key)], us[(DATA_IN_ZONE, key)]) == (in_eu, in_us)


def test_key_in_zone(eu: dict[tuple[str, str], str], us: dict[tuple[str, str], str]) -> None:
    assert (eu[(KEY_IN_ZONE, "foundry-eus")], us[(KEY_IN_ZONE, "foundry-eus")]) == ("fail", "pass")
    assert eu[(KEY_IN_ZONE, "aoai-frc")] == "error"  # its vault's location is unknown
    assert (KEY_IN_ZONE, "aoai-swc") not in eu  # Microsoft-managed keys are out of scope


def test_provider_may_not_train(eu: dict[tuple[str, str], str]) -> None:
    statuses = {key: status for (policy, key), status in eu.items() if policy == OPT_OUT}
    assert set(statuses) == ACCOUNTS | DEPLOYMENTS
    assert set(statuses.values()) == {"pass"}


# --- only the calls the policies need -------------------------------------------------------------------


def test_a_storage_only_policy_set_makes_no_cognitive_services_request(
    make_scanner: ScanFactory, arm: ArmServer, storage_policies: Path
) -> None:
    scanner = make_scanner(AttributeNeeds.from_policy_paths([storage_policies]), subscriptions=[SUBSCRIPTION])
    resources, _ = split(list(scanner.scan()))
    assert resources and {r.kind for r in resources.values()} <= {"container", "account"}
    assert arm.requests and not arm.seen("Microsoft.CognitiveServices")
    assert not [op for op in scanner.calls.snapshot() if op.startswith("cognitiveservices:")]


def test_everything_scans_storage_and_ai(make_scanner: ScanFactory, arm: ArmServer) -> None:
    scanner = make_scanner(AttributeNeeds.everything(), subscriptions=[SUBSCRIPTION])
    resources, _ = split(list(scanner.scan()))
    kinds = {r.kind for r in resources.values()}
    assert {"container", "account", "ai-account", "ai-deployment"} <= kinds


def needs_for(kinds: tuple[str, ...]) -> AttributeNeeds:
    paths = AttributeNeeds.everything().paths
    return AttributeNeeds(paths, {kind: paths for kind in kinds})


def ai_scanner(arm: ArmServer, catalog: ZoneCatalog, needs: AttributeNeeds, **overrides: Any) -> AzureScanner:
    options: dict[str, Any] = {
        "subscriptions": [SUBSCRIPTION],
        "credential": StaticTokenCredential(TOKEN),
        "arm_endpoint": arm.base_url,
        "ca_bundle": str(arm.ca_file),
        "blob_credential": "none",
        "retry_total": 1,
        "retry_backoff": 0.01,
    }
    options.update(overrides)
    return AzureScanner(needs, catalog, 4, **options)


def test_deployment_policies_alone_list_accounts_but_record_none(
    arm: ArmServer, catalog: ZoneCatalog
) -> None:
    scanner = ai_scanner(arm, catalog, needs_for(("ai-deployment",)))
    resources, _ = split(list(scanner.scan()))
    assert set(resources) == DEPLOYMENTS
    assert not arm.seen("/resources")  # no account record, so no key vault lookup


def test_account_policies_alone_list_no_deployment(arm: ArmServer, catalog: ZoneCatalog) -> None:
    scanner = ai_scanner(arm, catalog, needs_for(("ai-account",)))
    resources, _ = split(list(scanner.scan()))
    assert set(resources) == ACCOUNTS
    assert not arm.seen("/deployments")
    assert set(scanner.calls.snapshot()) == {OP_AI_ACCOUNTS, "resources:Resources.List"}


def test_training_only_reads_no_key_vault(arm: ArmServer, catalog: ZoneCatalog) -> None:
    paths = frozenset({"training.provider_may_train"})
    needs = AttributeNeeds(paths, {"ai-account": paths, "ai-deployment": paths})
    resources, _ = split(list(ai_scanner(arm, catalog, needs).scan()))
    assert not arm.seen("/resources")
    record = resources["foundry-eus"]
    assert record.training is not None and (record.location, record.encryption, record.tags) == (None,) * 3
    assert resources["aoai-swc/gpt4o-std"].processing is None
    assert record.evidence[0].attributes == ["training"]


def invoke_permissions(policies: Path) -> list[str]:
    result = CliRunner().invoke(cli, ["permissions", "azure", "--policies", str(policies)])
    assert result.exit_code == 0, result.output
    actions: list[str] = json.loads(result.output)["Actions"]
    return actions


def test_permissions_follow_the_kinds_the_policies_target(ai_policies: Path, storage_policies: Path) -> None:
    ai = invoke_permissions(ai_policies)
    assert "Microsoft.CognitiveServices/accounts/read" in ai
    assert "Microsoft.CognitiveServices/accounts/deployments/read" in ai
    assert "Microsoft.KeyVault/vaults/read" in ai  # key-in-zone reads the AI account's key vault
    assert not [a for a in ai if a.startswith("Microsoft.Storage/")]
    storage = invoke_permissions(storage_policies)
    assert "Microsoft.Storage/storageAccounts/read" in storage
    assert not [a for a in storage if a.startswith("Microsoft.CognitiveServices/")]


# --- failures -------------------------------------------------------------------------------------------


def deployment_gap(records: list[InventoryRecord], account: str = "aoai-swc") -> CoverageGap:
    [gap] = [r for r in records if isinstance(r, CoverageGap) and r.scope == f"ai-deployments:{account}"]
    return gap


def test_throttled_deployment_listing_is_a_throttled_gap(arm: ArmServer, catalog: ZoneCatalog) -> None:
    arm.add_fault(SWC_DEPLOYMENTS, throttled(retry_after=0), throttled(retry_after=0))
    records = list(ai_scanner(arm, catalog, needs_for(AI_KINDS)).scan())
    gap = deployment_gap(records)
    assert gap.code == UnknownCode.THROTTLED and "TooManyRequests" in gap.reason
    assert len(arm.seen(SWC_DEPLOYMENTS)) == 2  # the first try and one retry
    resources, _ = split(records)
    assert not [k for k in resources if k.startswith("aoai-swc/")]


def test_a_second_page_that_fails_keeps_the_first(arm: ArmServer, catalog: ZoneCatalog) -> None:
    entries = arm.documents[SWC_DEPLOYMENTS.lower()]["value"]
    next_link = f"{arm.base_url}{SWC_DEPLOYMENTS}?api-version={API_VERSION}&%24skipToken=5"
    denied = Fault(403, {"error": {"code": "AuthorizationFailed", "message": "denied"}})
    # The first page as the server pages it, then the next link (the same path) is refused.
    arm.add_fault(SWC_DEPLOYMENTS, Fault(200, {"value": entries[:5], "nextLink": next_link}), denied)
    records = list(ai_scanner(arm, catalog, needs_for(AI_KINDS)).scan())
    resources, _ = split(records)
    listed = {k for k in resources if k.startswith("aoai-swc/")}
    assert listed == {f"aoai-swc/{e['name']}" for e in entries[:5]}
    gap = deployment_gap(records)
    assert gap.code == UnknownCode.ACCESS_DENIED and "listed only in part (5 listed)" in gap.reason
    assert gap.evidence[0].request is not None and gap.evidence[0].request["page"] == 2


def test_a_slow_deployment_listing_times_out(arm: ArmServer, catalog: ZoneCatalog) -> None:
    slow = Fault(200, {"value": []}, delay=1.5)
    arm.add_fault(SWC_DEPLOYMENTS, slow, slow)
    records = list(ai_scanner(arm, catalog, needs_for(AI_KINDS), read_timeout=0.3).scan())
    assert deployment_gap(records).code == UnknownCode.TIMEOUT


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (b"\xff\xfe<garbled>{", "malformed/empty answer"),
        (b"{}", "without a 'value' list"),
        (b'{"value": [{"sku": {"name": "Standard"}}]}', "a deployment entry without a name"),
        (b'{"value": [], "nextLink": "https://elsewhere.example/next"}', "nextLink leaves the ARM endpoint"),
    ],
)
def test_an_unreadable_deployment_listing_is_a_gap_with_its_raw_answer(
    arm: ArmServer, catalog: ZoneCatalog, answer: bytes, detail: str
) -> None:
    arm.add_fault(SWC_DEPLOYMENTS, Fault(200, None, raw=answer))
    records = list(ai_scanner(arm, catalog, needs_for(AI_KINDS)).scan())
    gap = deployment_gap(records)
    assert gap.code == UnknownCode.ERROR and detail in gap.reason
    raw = gap.evidence[0].response
    assert raw["status"] == 200 and raw["bytes"] == len(answer)
    assert (
        len(arm.seen(SWC_DEPLOYMENTS)) == 1
    )  # a malformed answer is not retried, a foreign link not followed


def test_malformed_account_fields_make_only_their_group_unknown(arm: ArmServer, catalog: ZoneCatalog) -> None:
    path = AI_ACCOUNTS_PATH.lower()
    saved = arm.documents[path]
    changed = copy.deepcopy(saved)
    entry = next(a for a in changed["value"] if a["name"] == "aoai-swc")
    entry["properties"]["publicNetworkAccess"] = "SecuredByPerimeter"  # not a value the scanner knows
    entry["properties"]["encryption"] = {"keyVaultProperties": {}}  # no keySource
    entry["properties"]["locations"] = {"regions": [{"name": "norwayeast", "value": 50}]}
    del next(a for a in changed["value"] if a["name"] == "aoai-uks")["kind"]
    arm.documents[path] = changed
    try:
        records = list(ai_scanner(arm, catalog, needs_for(AI_KINDS)).scan())
    finally:
        arm.documents[path] = saved
    resources, gaps = split(records)
    record = resources["aoai-swc"]
    access = record.unknown_reason("access.public_access_blocked")
    assert (
        access is not None
        and access.code == UnknownCode.NOT_SUPPORTED
        and "SecuredByPerimeter" in access.reason
    )
    key = record.unknown_reason("encryption.key_management")
    assert key is not None and "keySource" in key.reason
    assert record.encryption is not None and record.encryption.algorithm == "AES256"
    regions = record.unknown["location.regions"]
    assert regions.partial == "members" and "MultiRegion" in regions.reason
    assert record.tags is not None and record.unknown_reason("training") is None
    # An entry without a kind may be an AI account: a gap, never silently skipped.
    [gap] = [g for g in gaps if g.scope == "ai-account"]
    assert "aoai-uks" in gap.reason and "kind" in gap.reason
    statuses = evaluate(catalog, {"aoai-swc": record}, "eu")
    assert statuses[(DATA_IN_ZONE, "aoai-swc")] == "error"


def evaluate(
    catalog: ZoneCatalog, resources: dict[str, StorageResource], zone: str
) -> dict[tuple[str, str], str]:
    compiled = compile_policies(load_policies([shipped_policies_dir()]), catalog, {"zone": zone})
    evaluator = Evaluator(compiled, remember_decisions=False)
    return {
        (finding.policy_id, key): finding.status.value
        for key, resource in resources.items()
        for finding in evaluator.evaluate(resource)
    }


# --- every AI call broken every way a network breaks it ----------------------------------------------


@pytest.fixture(scope="module")
def small_ai_arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmServer]:
    """The recorded answers with one AI account (aoai-swc), unpaged, so every request is proxied once."""
    documents = copy.deepcopy(load_recorded(RECORDED))
    listing = AI_ACCOUNTS_PATH.lower()
    documents[listing]["value"] = [a for a in documents[listing]["value"] if a["name"] == "aoai-swc"]
    with ArmServer(documents, token=TOKEN, cert_dir=tmp_path_factory.mktemp("small-ai-arm")) as server:
        yield server


@pytest.fixture(scope="module")
def ai_proxy(small_ai_arm: ArmServer) -> Iterator[FaultProxy]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(small_ai_arm.ca_file, small_ai_arm.ca_file.parent / "arm-key.pem")
    proxy = FaultProxy(small_ai_arm.base_url, server_ssl=context, hang_seconds=5).start()
    yield proxy
    proxy.stop()


EXPECTED_CODE: dict[FaultKind, UnknownCode] = {
    "empty": UnknownCode.ERROR,
    "truncated": UnknownCode.ERROR,
    "garbled": UnknownCode.ERROR,
    "short_read": UnknownCode.ERROR,
    "reset": UnknownCode.ERROR,
    "hang": UnknownCode.TIMEOUT,
    "status": UnknownCode.THROTTLED,
}
AI_CALLS = {
    "account-listing": r"/Microsoft\.CognitiveServices/accounts\?",
    "deployment-listing": r"/deployments\?",
}


@pytest.mark.parametrize("fault", FAULT_KINDS)
@pytest.mark.parametrize("call", list(AI_CALLS))
def test_a_broken_ai_call_is_a_gap_never_a_pass_never_a_hang(
    catalog: ZoneCatalog, small_ai_arm: ArmServer, ai_proxy: FaultProxy, call: str, fault: FaultKind
) -> None:
    ai_proxy.clear()
    headers = {"Retry-After": "0", "Content-Type": "application/json"}
    body = b'{"error": {"code": "TooManyRequests", "message": "throttled"}}'
    rule = ai_proxy.add(
        FaultRule(fault, path=AI_CALLS[call], method="GET", status=429, body=body, headers=headers)
    )
    scanner = ai_scanner(
        small_ai_arm,
        catalog,
        needs_for(AI_KINDS),
        arm_endpoint=ai_proxy.url,
        retry_backoff_max=0.05,
        connection_timeout=2.0,
        read_timeout=0.4,
    )
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(records=list(scanner.scan())), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the scan did not end"
    assert time.monotonic() - started < 20 and ai_proxy.hits_of(rule) >= 1
    resources, gaps = split(out["records"])
    scope = "ai-accounts" if call == "account-listing" else "ai-deployments:aoai-swc"
    [gap] = gaps
    assert (gap.scope, gap.code) == (scope, EXPECTED_CODE[fault])
    assert gap.evidence and gap.evidence[0].error
    if fault in ("empty", "truncated", "garbled"):
        assert "malformed/empty answer" in gap.reason
        raw = gap.evidence[0].response
        assert raw["status"] == 200 and len(raw["body"]) <= 4 * RAW_EVIDENCE_BYTES
    # Nothing that depended on the broken call is recorded, so nothing passes on it.
    assert not [k for k in resources if k.startswith("aoai-swc/")]
    assert set(resources) == (set() if call == "account-listing" else {"aoai-swc"})


# --- the catalog -----------------------------------------------------------------------------------------


def test_sku_table_names_every_documented_deployment_type() -> None:
    assert set(SKU_PROCESSING.values()) == {"geography", "data-zone", "global"}
    assert {s for s, scope in SKU_PROCESSING.items() if scope == "data-zone"} == {
        "DataZoneStandard",
        "DataZoneProvisionedManaged",
        "DataZoneBatch",
    }


def test_data_zones_are_eu_member_states_and_the_us(catalog: ZoneCatalog) -> None:
    section = catalog.section("azure", AzureCatalog)
    eu_countries = {section.regions[m].country for m in section.data_zones["eu"].members}
    assert eu_countries <= set(catalog.zones["eu27"].countries)
    assert not eu_countries & {"NO", "IS", "LI", "CH", "GB"}
    assert {section.regions[m].country for m in section.data_zones["us"].members} == {"US"}
    assert all(z.source.startswith("https://learn.microsoft.com/") for z in section.data_zones.values())
    # Every Azure region is in exactly one geography (AzureCatalog.reference_errors).
    members = [m for g in section.geographies.values() for m in g.members]
    assert sorted(members) == sorted(section.regions)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda azure: azure["data_zones"]["eu"]["members"].append("atlantis"),
            "names unknown region 'atlantis'",
        ),
        (
            lambda azure: azure["data_zones"]["us"]["members"].append("westeurope"),
            "'westeurope' is in data zone",
        ),
        (
            lambda azure: azure["geographies"]["europe"]["members"].append("uksouth"),
            "'uksouth' is in geography",
        ),
    ],
)
def test_catalog_refuses_unknown_or_shared_members(catalog: ZoneCatalog, change: Any, message: str) -> None:
    document = catalog.model_dump(mode="json")
    change(document["azure"])
    with pytest.raises(ValidationError, match=message):
        ZoneCatalog.model_validate(document)
