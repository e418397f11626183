"""Fixtures for the OpenAI scanner tests: the loopback Admin API server and ways to run a scan.

Nothing contacts a non-loopback address: the SDK is pointed at the server by its base URL.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.inventory import InventoryRecord, read_inventory
from auditor.model import CoverageGap, StorageResource
from auditor.policy.loader import load_zones
from auditor.scan.base import AttributeNeeds
from auditor.scan.calls import RetrySettings
from auditor.scan.openai import OpenAiScanner
from tests.conftest import SHIPPED_POLICIES

from .admin_server import AdminApiServer, project

# Shaped like a real Admin API key; any answer, log or file that holds it is a leak.
ADMIN_KEY = "sk-admin-Zq8tN4wLr2Vb6Yc1Hd9Ke3Mf7Pg5Sj0UxAo"
ORGANIZATION = "org-auditortest01"
EKM_KEYS: dict[str, dict[str, Any]] = {
    "ek_aws_frankfurt": {
        "id": "ek_aws_frankfurt",
        "object": "organization.external_key",
        "name": "frankfurt kms",
        "type": "aws",
        "purpose": "ekm",
        "created_at": 1_730_000_000,
        "workspace_id": "ws_1",
        "api_project_ids": ["proj_ekm_eu"],
        "kms_arn": "arn:aws:kms:eu-central-1:111122223333:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "role_arn": "arn:aws:iam::111122223333:role/openai-ekm",
        "external_id": ORGANIZATION,
    },
    "ek_gcp_iowa": {
        "id": "ek_gcp_iowa",
        "object": "organization.external_key",
        "name": "iowa kms",
        "type": "gcp",
        "purpose": "ekm",
        "created_at": 1_730_000_000,
        "workspace_id": "ws_1",
        "api_project_ids": ["proj_ekm_us"],
        "kms_project_id": "acme-keys",
        "kms_key_location": "us-central1",
        "kms_key_ring_name": "openai",
        "kms_key_name": "ekm",
        "audience": ORGANIZATION,
    },
    "ek_azure_vault": {
        "id": "ek_azure_vault",
        "object": "organization.external_key",
        "name": "vault",
        "type": "azure",
        "purpose": "ekm",
        "created_at": 1_730_000_000,
        "workspace_id": "ws_1",
        "api_project_ids": ["proj_ekm_vault"],
        "vault_uri": "https://acme-ekm.vault.azure.net/",
        "key_name": "ekm",
        "tenant_id": "11111111-2222-4333-8444-555555555555",
    },
}


@pytest.fixture
def admin_server() -> Iterator[AdminApiServer]:
    """A fresh Admin API server for one organization, answering for `ADMIN_KEY`."""
    server = AdminApiServer(ADMIN_KEY, ORGANIZATION).start()
    try:
        yield server
    finally:
        server.stop()


def policies_with(tmp_path: Path, *files: str, zones: bool = False) -> Path:
    """A policy directory holding only the named shipped policy files."""
    target = tmp_path / "policies"
    target.mkdir(exist_ok=True)
    for name in files:
        shutil.copy(SHIPPED_POLICIES / name, target / name)
    if zones:
        shutil.copytree(SHIPPED_POLICIES / "zones", target / "zones")
    return target


def scan_records(
    server: AdminApiServer,
    policies: Path = SHIPPED_POLICIES,
    *,
    admin_key: str | None = ADMIN_KEY,
    organization: str | None = None,
    retry: RetrySettings | None = None,
    needs: AttributeNeeds | None = None,
) -> tuple[list[InventoryRecord], OpenAiScanner]:
    """Run the scanner in-process against `server` and return its records."""
    scanner = OpenAiScanner(
        needs or AttributeNeeds.from_policy_paths([policies]),
        load_zones([policies]),
        admin_key=admin_key,
        organization=organization,
        base_url=server.base_url,
        retry_settings=retry or RetrySettings(max_attempts=2),
    )
    return list(scanner.scan()), scanner


def resources(records: list[InventoryRecord]) -> dict[str, StorageResource]:
    """Resource records by name."""
    return {r.name: r for r in records if isinstance(r, StorageResource)}


def gaps(records: list[InventoryRecord]) -> list[CoverageGap]:
    """The coverage gaps among `records`."""
    return [r for r in records if isinstance(r, CoverageGap)]


@dataclass
class CliScan:
    """What `auditor scan openai` wrote."""

    result: Result
    inventory: Path
    records: list[InventoryRecord]


def cli_scan(tmp_path: Path, env: dict[str, str | None], *args: str) -> CliScan:
    """`auditor scan openai ARGS --output tmp/ai.jsonl` in-process with `env`."""
    inventory = tmp_path / "ai.jsonl"
    result = CliRunner(env=env).invoke(
        cli, ["scan", "openai", *args, "--no-progress", "--output", str(inventory)]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output,
        result.exception,
    )
    records = list(read_inventory(inventory)) if inventory.exists() else []
    return CliScan(result, inventory, records)


def check_statuses(inventory: Path, *params: str, policies: Path | None = None) -> dict[tuple[str, str], str]:
    """`auditor check --format json`: status by (policy id, resource id)."""
    args = ["check", "--inventory", str(inventory), "--format", "json"]
    if policies is not None:
        args += ["--policies", str(policies)]
    for param in params:
        args += ["--param", param]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (0, 1, 3), (result.output, result.exception)
    document: dict[str, Any] = json.loads(result.stdout)
    return {(f["policy_id"], f["resource"]["id"]): f["status"] for f in document["findings"]}


def project_id(name: str) -> str:
    """The record id of project `name` of the test organization."""
    return f"openai:organization/{ORGANIZATION}/project/{name}"


# One project per residency case, EKM keys of every cloud, an archived project: 13 projects, listed
# in pages of 4 by `estate_server` (the API's page is 100; the server caps it to page with few).
ESTATE: list[dict[str, Any]] = [
    project("proj_global", "global-default", residency="GLOBAL"),
    project("proj_eu", "eu-processing", residency="EU_STORAGE_PROCESSING"),
    project("proj_us", "us-processing", residency="US_STORAGE_PROCESSING"),
    project("proj_jp_storage", "jp-storage", residency="JP_STORAGE"),
    project("proj_future", "future-geography", residency="ZZ_STORAGE_PROCESSING"),
    project("proj_odd", "odd-residency", residency="EVERYWHERE"),
    project("proj_null", "null-residency", residency=None),
    project("proj_missing", "missing-residency", omit=("residency",)),
    project("proj_archived", "archived-global", residency="GLOBAL", status="archived"),
    project(
        "proj_ekm_eu", "ekm-frankfurt", residency="EU_STORAGE_PROCESSING", external_key_id="ek_aws_frankfurt"
    ),
    project("proj_ekm_us", "ekm-iowa", residency="US_STORAGE_PROCESSING", external_key_id="ek_gcp_iowa"),
    project(
        "proj_ekm_vault", "ekm-vault", residency="EU_STORAGE_PROCESSING", external_key_id="ek_azure_vault"
    ),
    project(
        "proj_ekm_gone", "ekm-deleted-key", residency="EU_STORAGE_PROCESSING", external_key_id="ek_deleted"
    ),
]
ESTATE_PAGE = 4


def load_estate(server: AdminApiServer) -> AdminApiServer:
    """Serve `ESTATE` (and its external keys) in pages of `ESTATE_PAGE`."""
    server.projects = [dict(p) for p in ESTATE]
    server.external_keys = {key: dict(value) for key, value in EKM_KEYS.items()}
    server.max_page_size = ESTATE_PAGE
    return server


@pytest.fixture
def estate_server(admin_server: AdminApiServer) -> AdminApiServer:
    """The Admin API server serving `ESTATE`."""
    return load_estate(admin_server)
