"""`auditor scan arm ... -o i.jsonl && auditor check --inventory i.jsonl --param zone=...`: asserted
verdicts per policy per resource, undecidable values as `error`, evidence lines, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import REPO

FIXTURES = REPO / "fixtures" / "iac" / "arm"
TEMPLATES = [
    "storage-blob-container.json",
    "nested-legacy.json",
    "customer-managed-key.json",
    "bicep-symbolic.json",
    "unresolvable.json",
]
PARAMETERS = "storage-blob-container.parameters.json"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
SPEC = "https://github.com/Azure/azure-rest-api-specs/blob/main/specification/storage/resource-manager/"

TRAINING, AT_REST, CMK = (
    "training.ai-training-consent",
    "encryption.at-rest-aes256",
    "encryption.customer-managed-key",
)
RESIDENCY, KEY_IN_ZONE = "residency.data-in-zone", "residency.key-in-zone"
PLAINTEXT, TLS = "transport.plaintext-refused", "transport.tls-minimum"

# resource name -> policy -> status with --param zone=eu ("none": out of scope, no finding)
EU = {
    # West Europe GRS: the pair northeurope stays in the EU; `exports` opts in to training without consent
    "logs": {
        TRAINING: "pass",
        AT_REST: "pass",
        CMK: "none",
        RESIDENCY: "pass",
        KEY_IN_ZONE: "none",
        PLAINTEXT: "pass",
        TLS: "pass",
    },
    "exports": {TRAINING: "fail", RESIDENCY: "pass", PLAINTEXT: "pass", TLS: "pass"},
    # nested resources arrays; TLS1_0 and HTTPS-only off declared
    "archive": {TRAINING: "pass", RESIDENCY: "pass", PLAINTEXT: "fail", TLS: "fail"},
    # apiVersion 2018-07-01 and nothing declared: no documented default, so unknown (not_supported)
    "acmeold": {AT_REST: "pass", RESIDENCY: "pass", PLAINTEXT: "error", TLS: "error"},
    # customer-managed key in a vault the template declares in germanywestcentral; TLS1_3
    "restricted": {CMK: "pass", KEY_IN_ZONE: "pass", RESIDENCY: "pass", TLS: "pass", PLAINTEXT: "pass"},
    # the vault URI is reference(): the key id is known at deployment only, the vault's region (eastus) now
    "acmevault02": {CMK: "error", KEY_IN_ZONE: "fail", RESIDENCY: "pass"},
    # languageVersion 2.0 (symbolic names): southeastasia RA-GRS keeps a copy in Hong Kong
    "sgdocs": {TRAINING: "pass", RESIDENCY: "fail", PLAINTEXT: "pass", TLS: "pass", CMK: "none"},
    "acmesglocal": {RESIDENCY: "fail", PLAINTEXT: "pass"},
    # location from a parameter given only at deployment; HTTPS-only from if() on another such parameter
    "cache": {RESIDENCY: "error", PLAINTEXT: "error", TLS: "pass", AT_REST: "pass", TRAINING: "pass"},
}
SG = {"sgdocs": {RESIDENCY: "fail"}, "acmesglocal": {RESIDENCY: "pass"}}


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)


def scan(run_cli: Callable[..., Result], output: Path, *extra: str) -> Result:
    return run_cli(
        "scan",
        "arm",
        *TEMPLATES,
        "--parameters",
        PARAMETERS,
        "--location",
        "West Europe",
        "--subscription",
        SUBSCRIPTION,
        "-o",
        output,
        *extra,
    )


def records(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["name"]: r for r in lines if r["record"] == "resource"}


def verdicts(
    run_cli: Callable[..., Result], inventory: Path, zone: str, out: Path
) -> dict[str, dict[str, Any]]:
    result = run_cli(
        "check", "--inventory", inventory, "--param", f"zone={zone}", "--format", "json", "-o", out
    )
    assert result.exit_code in (1, 3), result.output
    found: dict[str, dict[str, Any]] = {}
    for finding in json.loads(out.read_text())["findings"]:
        found.setdefault(finding["resource"]["name"], {})[finding["policy_id"]] = finding
    return found


def object_line(file: str, needle: str) -> int:
    """The line of the `{` that opens the object holding the first line containing `needle`."""
    lines = (FIXTURES / file).read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if needle in line)
    return next(i for i in range(at, -1, -1) if lines[i].rstrip().endswith("{")) + 1


@pytest.mark.usefixtures("in_fixtures")
def test_verdicts_per_policy_per_resource(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    inventory = tmp_path / "i.jsonl"
    result = scan(run_cli, inventory)
    assert result.exit_code == 0, result.output
    written = records(inventory)
    assert sorted(written) == sorted(EU)
    for zone, expected in (("eu", EU), ("sg", SG)):
        found = verdicts(run_cli, inventory, zone, tmp_path / f"{zone}.json")
        for name, policies in expected.items():
            for policy, status in policies.items():
                got = found.get(name, {}).get(policy)
                assert (got["status"] if got else "none") == status, (
                    zone,
                    name,
                    policy,
                    got and got["message"],
                )


@pytest.mark.usefixtures("in_fixtures")
def test_records_have_the_live_shape(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    inventory = tmp_path / "i.jsonl"
    assert scan(run_cli, inventory).exit_code == 0
    found = records(inventory)
    for record in found.values():
        assert record["provider"] == "azure" and record["origin"] == "arm"
        assert record["account"] == SUBSCRIPTION
    logs = found["logs"]
    assert logs["kind"] == "container" and logs["storage_account"] == "acmeeudata"
    assert logs["location"]["regions"] == ["westeurope", "northeurope"]
    assert logs["location"]["replicas"] == [
        {"region": "northeurope", "kind": "geo-secondary", "target": None}
    ]
    assert logs["encryption"]["scheme"] == "microsoft-managed" and logs["encryption"]["provider_default"]
    assert logs["tags"] == {"data-class": "internal", "owner": "platform"}
    assert found["acmeold"]["kind"] == "account" and found["acmesglocal"]["kind"] == "account"
    assert (
        found["restricted"]["encryption"]["key_id"] == "https://kv-acme-eu.vault.azure.net/keys/storage-key"
    )
    assert found["restricted"]["encryption"]["key_location"] == "germanywestcentral"
    assert found["archive"]["transport"]["min_tls_version"] == "TLS1_0"
    assert found["restricted"]["transport"]["min_tls_version"] == "TLS1_3"
    # symbolic names (languageVersion 2.0) name the record; a name that cannot be evaluated keeps its text
    assert found["sgdocs"]["id"] == "bicep-symbolic.json#container"
    assert found["cache"]["storage_account"] == "[variables('storageName')]"
    assert found["cache"]["id"].startswith(
        "unresolvable.json#Microsoft.Storage/storageAccounts/blobServices/"
    )


@pytest.mark.usefixtures("in_fixtures")
def test_undecidable_values_say_why(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    inventory = tmp_path / "i.jsonl"
    assert scan(run_cli, inventory).exit_code == 0
    found = records(inventory)
    cache = found["cache"]["unknown"]
    assert cache["location"]["code"] == "not_known_until_apply"
    assert (
        "parameter 'region'" in cache["location"]["reason"]
        and "unresolvable.json:" in cache["location"]["reason"]
    )
    assert cache["transport.plaintext_refused"]["code"] == "not_known_until_apply"
    vault02 = found["acmevault02"]["unknown"]
    assert vault02["encryption.key_id"]["code"] == "not_known_until_apply"
    old = found["acmeold"]["unknown"]
    assert old["transport.min_tls_version"]["code"] == "not_supported"
    assert "2018-07-01" in old["transport.min_tls_version"]["reason"]
    findings = verdicts(run_cli, inventory, "eu", tmp_path / "f.json")
    assert findings["cache"][RESIDENCY]["status"] == "error"


@pytest.mark.usefixtures("in_fixtures")
def test_evidence_points_at_the_resource_line(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    inventory = tmp_path / "i.jsonl"
    assert scan(run_cli, inventory).exit_code == 0
    found = records(inventory)
    logs = {e["call"]: [] for e in found["logs"]["evidence"]}
    for item in found["logs"]["evidence"]:
        logs[item["call"]].append(item)
    account, container = logs["arm:template"]
    assert account["location"] == {
        "file": "storage-blob-container.json",
        "line": object_line("storage-blob-container.json", '"type": "Microsoft.Storage/storageAccounts",'),
        "address": "Microsoft.Storage/storageAccounts/[parameters('storageAccountName')]",
    }
    assert container["location"]["line"] == object_line(
        "storage-blob-container.json", "parameters('logsContainerName'))]\","
    )
    assert account["request"] == {
        "resource": "Microsoft.Storage/storageAccounts/[parameters('storageAccountName')]"
    }
    assert account["response"]["properties"]["minimumTlsVersion"] == "TLS1_2"
    archive = [e for e in found["archive"]["evidence"] if e["call"] == "arm:template"]
    assert archive[-1]["location"]["line"] == object_line("nested-legacy.json", '"type": "containers",')
    sgdocs = [e for e in found["sgdocs"]["evidence"] if e["call"] == "arm:template"]
    assert sgdocs[-1]["location"]["address"] == "container"
    # an undeclared property takes its documented default, with the source
    defaults = [e for e in found["sgdocs"]["evidence"] if e["call"] == "arm:default"]
    https = next(e for e in defaults if e["attributes"] == ["transport.plaintext_refused"])
    assert https["response"]["value"] is True and https["response"]["source"].startswith(SPEC)
    assert "since API version 2019-04-01" in https["response"]["documented"]


def test_nested_deployments_are_coverage_gaps(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    template = tmp_path / "main.json"
    template.write_text(
        json.dumps(
            {
                "resources": [
                    {
                        "type": "Microsoft.Resources/deployments",
                        "apiVersion": "2022-09-01",
                        "name": "storage",
                        "properties": {
                            "mode": "Incremental",
                            "templateLink": {"uri": "https://example.invalid/storage.json"},
                        },
                    }
                ]
            }
        )
    )
    output = tmp_path / "i.jsonl"
    result = run_cli("scan", "arm", template, "-o", output)
    assert result.exit_code == 3
    (gap,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert gap["record"] == "gap" and gap["code"] == "not_supported" and "is not audited" in gap["reason"]


BAD = {
    "truncated": (
        '{\n  "resources": [\n    {"type": "Microsoft.Storage/storageAccounts",\n',
        3,
        "invalid JSON: expected a property name in double quotes at the end of the file; is the file truncated?",
    ),
    "not a template": (
        '{\n  "parameters": {"a": {"value": 1}}\n}\n',
        1,
        "not an ARM template: no 'resources'",
    ),
    "unknown function": (
        '{\n  "resources": [\n    {\n      "type": "Microsoft.Storage/storageAccounts",\n'
        '      "name": "[toLowerCase(\'A\')]"\n    }\n  ]\n}\n',
        5,
        "unknown template function 'toLowerCase'",
    ),
    "name segments": (
        '{"resources": [{"type": "Microsoft.Storage/storageAccounts/blobServices/containers",\n'
        '"name": "acct/logs", "apiVersion": "2023-05-01"}]}',
        2,
        "resource name 'acct/logs' has 2 segments, type "
        "'Microsoft.Storage/storageAccounts/blobServices/containers' needs 3",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    run_cli: Callable[..., Result], tmp_path: Path, case: str
) -> None:
    text, line, message = BAD[case]
    template = tmp_path / "bad.json"
    template.write_text(text)
    output = tmp_path / "i.jsonl"
    result = run_cli("scan", "arm", template, "-o", output)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {template}:{line}: {message}"]
    assert not output.exists() and list(tmp_path.iterdir()) == [template]


@pytest.mark.usefixtures("in_fixtures")
def test_a_parameter_no_template_declares_is_bad_input(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    parameters = tmp_path / "p.json"
    parameters.write_text('{\n  "storageAccountName": "x",\n  "typo": 1\n}\n')
    output = tmp_path / "i.jsonl"
    result = run_cli("scan", "arm", TEMPLATES[0], "--parameters", parameters, "-o", output)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {parameters}:3: parameter 'typo' is not declared by any template given"
    )
    assert not output.exists()
    result = run_cli("scan", "arm", PARAMETERS, "-o", output)
    assert result.exit_code == 2 and "a parameters file, not a template" in result.stderr


def test_a_container_encryption_scope_decides_its_key(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """A container's default scope gives its key; without deny-override the weakest declared scope counts."""
    account = "Microsoft.Storage/storageAccounts"
    scope_type = f"{account}/encryptionScopes"

    def container(name: str, deny: bool) -> dict[str, Any]:
        return {
            "type": f"{account}/blobServices/containers",
            "apiVersion": "2023-05-01",
            "name": f"acct/default/{name}",
            "properties": {"defaultEncryptionScope": "cmk", "denyEncryptionScopeOverride": deny},
        }

    template = tmp_path / "scopes.json"
    template.write_text(
        json.dumps(
            {
                "resources": [
                    {
                        "type": "Microsoft.KeyVault/vaults",
                        "apiVersion": "2023-07-01",
                        "name": "kv1",
                        "location": "francecentral",
                    },
                    {
                        "type": account,
                        "apiVersion": "2023-05-01",
                        "name": "acct",
                        "location": "francecentral",
                        "sku": {"name": "Standard_LRS"},
                        "properties": {},
                    },
                    {
                        "type": scope_type,
                        "apiVersion": "2023-05-01",
                        "name": "acct/cmk",
                        "properties": {
                            "source": "Microsoft.KeyVault",
                            "keyVaultProperties": {"keyUri": "https://kv1.vault.azure.net/keys/k1"},
                        },
                    },
                    {
                        "type": scope_type,
                        "apiVersion": "2023-05-01",
                        "name": "acct/plain",
                        "properties": {"source": "Microsoft.Storage"},
                    },
                    container("locked", True),
                    container("open", False),
                ]
            }
        )
    )
    output = tmp_path / "i.jsonl"
    assert run_cli("scan", "arm", template, "-o", output).exit_code == 0
    found = records(output)
    locked = found["locked"]["encryption"]
    assert locked["key_management"] == "customer-managed"
    assert (locked["key_id"], locked["key_location"]) == (
        "https://kv1.vault.azure.net/keys/k1",
        "francecentral",
    )
    assert found["open"]["encryption"]["key_management"] == "provider-managed"
