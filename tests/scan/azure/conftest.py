"""Azure test estate: Azurite (npm) for the blob data plane, a loopback HTTPS ARM server for the rest.

The storage accounts recorded in fixtures/recorded/azure exist in Azurite under the same names
(AZURITE_ACCOUNTS), holding the containers listed in `DATA_PLANE` below. The recorded ARM answers also
hold Cognitive Services (Azure OpenAI / AI Foundry) accounts and deployments (tests/scan/azure/test_ai.py);
the storage tests scan with `storage_only` needs, as a storage-scoped policy set has them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from auditor.inventory import InventoryRecord
from auditor.model import STORAGE_KINDS, CoverageGap, StorageResource
from auditor.policy.loader import load_zones
from auditor.policy.zones import ZoneCatalog
from auditor.scan.azure import AzureScanner, StaticTokenCredential
from auditor.scan.base import AttributeNeeds

from .arm_server import ArmServer, load_recorded

REPO = Path(__file__).resolve().parents[3]
RECORDED = REPO / "fixtures" / "recorded" / "azure"
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite-blob"

SUBSCRIPTION = "11111111-1111-4111-8111-111111111111"
DENIED_SUBSCRIPTION = "22222222-2222-4222-8222-222222222222"
TOKEN = "test-arm-token"
ARM_PAGE_SIZE = 5
ACCOUNTS_PATH = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Storage/storageAccounts"

# Containers on the data plane: account -> {container: (metadata, public access)}. The recorded
# account 'euwscope' is not here: the scanner has no key for it and lists its containers through ARM.
DATA_PLANE: dict[str, dict[str, tuple[dict[str, str], str | None]]] = {
    "euwlrs": {
        "training": ({"ai_training": "opt-in", "ai_training_consent": "DPA-2024-117"}, None),
        "analytics": ({"AI_Training": "yes"}, None),
        "plain": ({}, None),
    },
    "eungrs": {"logs": ({}, None)},
    "seagrs": {"sgdata": ({}, None)},
    "sealrs": {"sgdata": ({}, None)},
    "brsgrs": {"brdata": ({}, None)},
    "itnlrs": {"itdata": ({}, None)},
    "itngrs": {"itdata": ({}, None)},
    "euwtls10": {"data": ({}, None)},
    "euwhttp": {"public": ({}, "container")},
    "euwnotls": {"data": ({}, None)},
    "euwcmk": {"cmkdata": ({}, None)},
    "euwcmkx": {"cmkdata": ({}, None)},
    "euwdenied": {"hidden": ({"ai_training": "opt-in"}, None)},
    "euwempty": {},
    "euwpaged": {f"c{i:02d}": ({}, None) for i in range(1, 6)},
    "euwslow": {"data": ({}, None)},
}
# The scanner holds a wrong key for it, so the data plane answers 403.
WRONG_KEY = {"euwdenied"}


def account_key(name: str) -> str:
    """A stable base64 shared key per account."""
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


def keys_text(names: list[str]) -> str:
    """Keys in the AZURITE_ACCOUNTS format."""
    return ";".join(f"{name}:{account_key(name)}" for name in names)


def scanner_keys() -> dict[str, str]:
    """The shared keys the scanner is given (wrong for WRONG_KEY accounts)."""
    return {
        name: account_key(name + "-wrong") if name in WRONG_KEY else account_key(name) for name in DATA_PLANE
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Azurite:
    """A running azurite-blob and the endpoint template of its accounts."""

    port: int

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{account}}"

    def client(self, account: str) -> BlobServiceClient:
        return BlobServiceClient(
            self.template.format(account=account),
            credential={"account_name": account, "account_key": account_key(account)},
        )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite from node_modules (installed by `npm ci`), with every test account, populated."""
    if not AZURITE_BIN.exists():
        pytest.fail(f"{AZURITE_BIN} is missing: run `npm ci` at the repository root", pytrace=False)
    location = tmp_path_factory.mktemp("azurite")
    port = _free_port()
    env = {**os.environ, "AZURITE_ACCOUNTS": keys_text(sorted(DATA_PLANE))}
    log = (location / "azurite.log").open("wb")
    process = subprocess.Popen(
        [
            str(AZURITE_BIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"azurite-blob exited with {process.returncode}: {(location / 'azurite.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("azurite-blob did not listen within 30 s")
                time.sleep(0.1)
        server = Azurite(port)
        for account, containers in DATA_PLANE.items():
            with server.client(account) as client:
                for name, (metadata, public) in containers.items():
                    client.create_container(name, metadata=metadata or None, public_access=public)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def arm_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArmServer]:
    """The recorded ARM answers over loopback HTTPS, paged by 5."""
    with ArmServer(
        load_recorded(RECORDED),
        token=TOKEN,
        cert_dir=tmp_path_factory.mktemp("arm"),
        page_size=ARM_PAGE_SIZE,
    ) as server:
        yield server


@pytest.fixture
def arm(arm_session: ArmServer) -> ArmServer:
    """The ARM server with no pending faults and no seen requests."""
    arm_session.reset()
    return arm_session


@pytest.fixture(scope="session")
def catalog() -> ZoneCatalog:
    """The shipped zone catalog."""
    return load_zones([])


ScanFactory = Callable[..., AzureScanner]


def storage_only(needs: AttributeNeeds) -> AttributeNeeds:
    """`needs` as policies scoped to storage kinds only have them: no AI call is made."""
    return AttributeNeeds(needs.paths, {kind: needs.paths for kind in STORAGE_KINDS})


@pytest.fixture(scope="session")
def make_scanner(azurite: Azurite, arm_session: ArmServer, catalog: ZoneCatalog) -> ScanFactory:
    """Build an AzureScanner against the test servers (keyword arguments override the defaults).

    Without `needs`, every attribute of the storage kinds (the storage estate only).
    """

    def build(needs: AttributeNeeds | None = None, **overrides: Any) -> AzureScanner:
        options: dict[str, Any] = {
            "subscriptions": [SUBSCRIPTION, DENIED_SUBSCRIPTION],
            "credential": StaticTokenCredential(TOKEN),
            "arm_endpoint": arm_session.base_url,
            "blob_endpoint_template": azurite.template,
            "ca_bundle": str(arm_session.ca_file),
            "blob_credential": "shared-key",
            "account_keys": scanner_keys(),
            "container_page_size": 2,
            "retry_total": 2,
            "retry_backoff": 0.01,
        }
        options.update(overrides)
        return AzureScanner(needs or storage_only(AttributeNeeds.everything()), catalog, 8, **options)

    return build


def record_key(record: StorageResource) -> str:
    """'<storage account>/<container>', a storage or AI account's name, '<AI account>/<deployment>'."""
    if record.kind in ("account", "ai-account"):
        return record.name
    if record.kind == "ai-deployment":
        return f"{record.id.split('/accounts/')[1].split('/')[0]}/{record.name}"
    return f"{record.storage_account}/{record.name}"


def split(records: list[InventoryRecord]) -> tuple[dict[str, StorageResource], list[CoverageGap]]:
    """Resources keyed by `record_key`, and gaps."""
    resources: dict[str, StorageResource] = {}
    gaps: list[CoverageGap] = []
    for record in records:
        if isinstance(record, CoverageGap):
            gaps.append(record)
        else:
            key = record_key(record)
            assert key not in resources, f"duplicate record {key}"
            resources[key] = record
    return resources, gaps
