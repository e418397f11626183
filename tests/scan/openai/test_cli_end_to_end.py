"""The acceptance run, as a user types it, in subprocesses: scan the organization, check it against
zone eu, and find the key nowhere; attestations fill what no API exposes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from auditor.inventory import read_inventory
from auditor.model import StorageResource

from .admin_server import AdminApiServer
from .conftest import ADMIN_KEY, ORGANIZATION, policies_with
from .test_scanner import EXPECTED_EU, TRAINING

REPO = Path(__file__).resolve().parents[3]
SETTINGS_ID = f"openai:organization/{ORGANIZATION}/settings"


def auditor(*args: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`auditor ARGS` in a subprocess (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "auditor.cli", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def user_env(**extra: str) -> dict[str, str]:
    """The environment of the run: no OpenAI variable but the ones given; the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def test_scan_then_check_zone_eu(estate_server: AdminApiServer, tmp_path: Path) -> None:
    env = user_env(OPENAI_ADMIN_KEY=ADMIN_KEY, OPENAI_BASE_URL=estate_server.base_url)
    scan = auditor("scan", "openai", "-o", "ai.jsonl", env=env, cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    assert "scan openai: 14 resources, 0 coverage gaps" in scan.stdout
    check = auditor(
        "check", "--inventory", "ai.jsonl", "--param", "zone=eu", "--format", "json", env=env, cwd=tmp_path
    )
    assert check.returncode == 1, check.stderr  # critical failures
    document: dict[str, Any] = json.loads(check.stdout)
    found: dict[str, dict[str, str]] = {}
    for finding in document["findings"]:
        resource_id = finding["resource"]["id"]
        assert finding["resource"]["provider"] == "openai"
        found.setdefault(resource_id.rsplit("/", 1)[1], {})[finding["policy_id"]] = finding["status"]
    assert found.pop("settings") == {TRAINING: "error"}
    assert found == {project: statuses for project, statuses in EXPECTED_EU.items() if statuses}
    assert "proj_archived" not in found  # archived: in the inventory, out of every policy's scope
    archived = [r for r in read_inventory(tmp_path / "ai.jsonl") if getattr(r, "state", None) == "archived"]
    assert [r.name for r in archived if isinstance(r, StorageResource)] == ["archived-global"]
    for text in (scan.stdout, scan.stderr, check.stdout, check.stderr, (tmp_path / "ai.jsonl").read_text()):
        assert ADMIN_KEY not in text


def test_an_attestation_decides_training(estate_server: AdminApiServer, tmp_path: Path) -> None:
    attestations = tmp_path / "attestations.yaml"
    attestations.write_text(
        "attestations:\n"
        "  - id: ATT-OPENAI-SHARING\n"
        "    attribute: training.provider_may_train\n"
        "    value: false\n"
        f"    scope: {{source: openai, accounts: ['{ORGANIZATION}'], kinds: [ai-settings]}}\n"
        "    attested_by: dpo@acme.example\n"
        "    attested_on: 2026-10-01\n"
        "    reference: DPA-2026-014 s.4\n"
        "    expires: 2099-12-31\n",
        encoding="utf-8",
    )
    policies = policies_with(tmp_path, "training.yaml")
    env = user_env(OPENAI_ADMIN_KEY=ADMIN_KEY, OPENAI_BASE_URL=estate_server.base_url)
    scan = auditor(
        "scan",
        "openai",
        "-o",
        "ai.jsonl",
        "--policies",
        policies,
        "--attestations",
        attestations,
        env=env,
        cwd=tmp_path,
    )
    assert scan.returncode == 0, scan.stderr
    check = auditor(
        "check", "--inventory", "ai.jsonl", "--policies", policies, "--format", "json", env=env, cwd=tmp_path
    )
    statuses = {
        (f["policy_id"], f["resource"]["id"]): f["status"] for f in json.loads(check.stdout)["findings"]
    }
    assert statuses == {(TRAINING, SETTINGS_ID): "pass"}


def test_a_storage_only_policy_set_sends_nothing(estate_server: AdminApiServer, tmp_path: Path) -> None:
    policies = policies_with(tmp_path, "encryption.yaml")
    env = user_env(OPENAI_ADMIN_KEY=ADMIN_KEY, OPENAI_BASE_URL=estate_server.base_url)
    scan = auditor("scan", "openai", "-o", "ai.jsonl", "--policies", policies, env=env, cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    assert "scan openai: 0 resources, 0 coverage gaps, 0 API calls" in scan.stdout
    assert estate_server.served() == []
    assert (tmp_path / "ai.jsonl").read_text() == ""
