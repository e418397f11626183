"""`auditor scan azure` -> `auditor check --param zone=...`: the right status for every case."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import read_inventory
from auditor.model import CoverageGap, StorageResource

from .arm_server import ArmServer, throttled
from .conftest import (
    ACCOUNTS_PATH,
    DATA_PLANE,
    DENIED_SUBSCRIPTION,
    SUBSCRIPTION,
    TOKEN,
    Azurite,
    account_key,
    record_key,
)

RESIDENCY = "residency.data-in-zone"
KEY_IN_ZONE = "residency.key-in-zone"
AT_REST = "encryption.at-rest-aes256"
CMK = "encryption.customer-managed-key"
PLAINTEXT = "transport.plaintext-refused"
TLS = "transport.tls-minimum"
TRAINING = "training.ai-training-consent"


@dataclass
class CliScan:
    """What `auditor scan azure` wrote, with resource ids by '<account>/<container>' (or account)."""

    result: Result
    inventory: Path
    ids: dict[str, str]
    gaps: list[CoverageGap]


def scan_env() -> dict[str, str]:
    keys = {name: account_key(name + "-wrong" if name == "euwdenied" else name) for name in DATA_PLANE}
    return {
        "AUDITOR_AZURE_ACCESS_TOKEN": TOKEN,
        "AUDITOR_AZURE_ACCOUNT_KEYS": ";".join(f"{n}:{k}" for n, k in keys.items()),
    }


def scan_args(arm: ArmServer, azurite: Azurite, output: Path) -> list[str]:
    return [
        "scan",
        "azure",
        "--subscription",
        SUBSCRIPTION,
        "--subscription",
        DENIED_SUBSCRIPTION,
        "--arm-endpoint",
        arm.base_url,
        "--ca-bundle",
        str(arm.ca_file),
        "--blob-endpoint-template",
        azurite.template,
        "--blob-credential",
        "shared-key",
        "--container-page-size",
        "2",
        "--max-retries",
        "2",
        "--retry-backoff",
        "0.01",
        "--no-progress",
        "--output",
        str(output),
    ]


@pytest.fixture(scope="module")
def cli_scan(arm_session: ArmServer, azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> CliScan:
    arm_session.reset()
    arm_session.add_fault(ACCOUNTS_PATH, throttled(retry_after=1))
    inventory = tmp_path_factory.mktemp("azure-cli") / "inv.jsonl"
    result = CliRunner(env=scan_env()).invoke(cli, scan_args(arm_session, azurite, inventory))
    assert result.exit_code == 0, (result.output, result.exception)
    ids: dict[str, str] = {}
    gaps: list[CoverageGap] = []
    for record in read_inventory(inventory):
        if isinstance(record, StorageResource):
            ids[record_key(record)] = record.id
        else:
            gaps.append(record)
    return CliScan(result, inventory, ids, gaps)


def check(inventory: Path, zone: str) -> dict[tuple[str, str], str]:
    result = CliRunner().invoke(
        cli, ["check", "--inventory", str(inventory), "--param", f"zone={zone}", "--format", "json"]
    )
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    return {(f["policy_id"], f["resource"]["id"]): f["status"] for f in document["findings"]}


@pytest.fixture(scope="module")
def eu(cli_scan: CliScan) -> dict[tuple[str, str], str]:
    return check(cli_scan.inventory, "eu")


@pytest.fixture(scope="module")
def sg(cli_scan: CliScan) -> dict[tuple[str, str], str]:
    return check(cli_scan.inventory, "sg")


def test_scan_summary_and_gaps(cli_scan: CliScan) -> None:
    assert "inventory written to" in cli_scan.result.stdout
    assert "blob:ListContainers" in cli_scan.result.stdout
    # The shipped policies target AI kinds too: the recorded estate's AI gaps join the storage ones
    # (tests/scan/azure/test_ai.py).
    assert sorted((g.account, g.scope) for g in cli_scan.gaps) == [
        (SUBSCRIPTION, "ai-deployments:aoai-weu"),
        (SUBSCRIPTION, "containers"),
        (DENIED_SUBSCRIPTION, "ai-accounts"),
        (DENIED_SUBSCRIPTION, "subscription"),
    ]


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("euwlrs/plain", "pass"),  # westeurope LRS
        ("eungrs/logs", "pass"),  # northeurope GRS, pair westeurope
        ("seagrs/sgdata", "fail"),  # southeastasia RA-GRS: copy in Hong Kong
        ("brsgrs/brdata", "fail"),  # brazilsouth GRS, pair southcentralus
        ("itnlrs/itdata", "pass"),  # italynorth has no pair, LRS
        ("itngrs/itdata", "error"),  # geo SKU, no pair known
        ("euwdenied", "pass"),  # containers unreadable, account location known
    ],
)
def test_residency_eu(cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert eu[(RESIDENCY, cli_scan.ids[key])] == status


@pytest.mark.parametrize(("key", "status"), [("sealrs/sgdata", "pass"), ("seagrs/sgdata", "fail")])
def test_residency_sg(cli_scan: CliScan, sg: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert sg[(RESIDENCY, cli_scan.ids[key])] == status


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("euwtls10/data", "fail"),
        ("euwlrs/plain", "pass"),
        ("sealrs/sgdata", "pass"),  # TLS1_3
        ("euwnotls/data", "pass"),  # no setting: the platform floor, TLS 1.2
    ],
)
def test_tls_minimum(cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert eu[(TLS, cli_scan.ids[key])] == status


@pytest.mark.parametrize(("key", "status"), [("euwhttp/public", "fail"), ("euwlrs/plain", "pass")])
def test_plaintext_refused(cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert eu[(PLAINTEXT, cli_scan.ids[key])] == status


def test_encryption_at_rest(cli_scan: CliScan, eu: dict[tuple[str, str], str]) -> None:
    assert eu[(AT_REST, cli_scan.ids["euwlrs/plain"])] == "pass"
    assert eu[(AT_REST, cli_scan.ids["euwslow/data"])] == "pass"  # scopes throttled, AES-256 still known


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("euwcmk/cmkdata", "pass"),  # Key Vault key source
        ("euwscope/scoped", "pass"),  # Key Vault-backed default scope, overrides denied
        ("euwscope/scopedopen", "fail"),  # overrides allowed, a Microsoft-managed scope exists
        ("euwscope/plain", "error"),  # its metadata is unreadable, so its data-class is unknown
    ],
)
def test_customer_managed_key(
    cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str
) -> None:
    assert eu[(CMK, cli_scan.ids[key])] == status


def test_customer_managed_key_scope_is_the_data_class(
    cli_scan: CliScan, eu: dict[tuple[str, str], str]
) -> None:
    assert (CMK, cli_scan.ids["euwlrs/plain"]) not in eu  # data-class internal


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("euwcmk/cmkdata", "pass"),  # vault in westeurope
        ("euwscope/scoped", "pass"),  # scope's vault in northeurope
        ("euwcmkx/cmkdata", "error"),  # vault not in the subscription
    ],
)
def test_key_in_zone(cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert eu[(KEY_IN_ZONE, cli_scan.ids[key])] == status


@pytest.mark.parametrize(
    ("key", "status"),
    [
        ("euwlrs/training", "pass"),  # ai_training=opt-in + ai_training_consent
        ("euwlrs/analytics", "fail"),  # AI_Training=yes
        ("euwlrs/plain", "pass"),  # no tag
        ("euwscope/scoped", "fail"),  # container opt-in without consent overrides the account's opt-out
        ("euwscope/scopedopen", "pass"),  # account tag ai_training=opt-out
        ("euwscope/plain", "error"),  # container GET denied
        ("euwdenied", "error"),  # containers cannot be listed
    ],
)
def test_training_consent(cli_scan: CliScan, eu: dict[tuple[str, str], str], key: str, status: str) -> None:
    assert eu[(TRAINING, cli_scan.ids[key])] == status


def test_plain_http_arm_endpoint_is_bad_input(tmp_path: Path) -> None:
    result = CliRunner(env=scan_env()).invoke(
        cli,
        [
            "scan",
            "azure",
            "--subscription",
            SUBSCRIPTION,
            "--arm-endpoint",
            "http://127.0.0.1:1",
            "-o",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2
    assert "must be an https URL" in result.stderr
    assert not (tmp_path / "x").exists()


def test_static_arm_token_cannot_be_a_storage_token(tmp_path: Path) -> None:
    result = CliRunner(env=scan_env()).invoke(
        cli, ["scan", "azure", "--subscription", SUBSCRIPTION, "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 2
    assert "--blob-credential" in result.stderr
