"""No error path prints, logs or records a secret: account keys, the ARM token, client secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auditor.cli import cli
from auditor.errors import InputError
from auditor.scan.azure import parse_account_keys
from auditor.scan.azure_credentials import redact, register_environment_secrets

from .arm_server import ArmServer, Fault
from .conftest import SUBSCRIPTION, TOKEN, Azurite, account_key

KEY = account_key("euwlrs")  # the real key Azurite holds for euwlrs
NOT_BASE64 = "not*base64*secret-value-123"
COLON_KEY = "S3cretPart"
SCOPES = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts"
    "/euwlrs/encryptionScopes"
)
CONTAINERS = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts"
    "/euwscope/blobServices/default/containers"
)


def scan(arm: ArmServer, azurite: Azurite, keys: str, output: Path, **env: str) -> Result:
    return CliRunner(
        env={"AUDITOR_AZURE_ACCESS_TOKEN": TOKEN, "AUDITOR_AZURE_ACCOUNT_KEYS": keys, **env}
    ).invoke(
        cli,
        [
            "scan",
            "azure",
            "--subscription",
            SUBSCRIPTION,
            "--arm-endpoint",
            arm.base_url,
            "--ca-bundle",
            str(arm.ca_file),
            "--blob-endpoint-template",
            azurite.template,
            "--blob-credential",
            "shared-key",
            "--max-retries",
            "0",
            "--no-progress",
            "--output",
            str(output),
        ],
    )


def shown(result: Result) -> str:
    return f"{result.stdout}\n{result.stderr}\n{result.exception!r}"


@pytest.mark.parametrize(
    ("keys", "secrets"),
    [
        (f"euwlrs={KEY}", [KEY, KEY.rstrip("=")]),  # '=' instead of ':'
        (KEY, [KEY, KEY.rstrip("=")]),  # no separator, no name
        (f"{KEY}:euwlrs", [KEY, KEY.rstrip("=")]),  # swapped
        (f"euwlrs:{NOT_BASE64}", [NOT_BASE64]),  # not base64
        (f"euwlrs:{COLON_KEY}:{NOT_BASE64}", [COLON_KEY, NOT_BASE64]),  # ':' inside: key1 is not base64
        (f"euwlrs:{KEY};eungrs={KEY}", [KEY, KEY.rstrip("=")]),  # one good, one bad entry
        (f"euwlrs:;eungrs:{KEY}", [KEY]),  # an empty key
    ],
)
def test_malformed_account_keys_never_show_the_key(
    arm: ArmServer, azurite: Azurite, tmp_path: Path, keys: str, secrets: list[str]
) -> None:
    output = tmp_path / "inv.jsonl"
    result = scan(arm, azurite, keys, output)
    assert result.exit_code == 2, shown(result)
    assert "AUDITOR_AZURE_ACCOUNT_KEYS" in result.stderr
    assert "entry" in result.stderr  # says which entry, not what it holds
    for secret in secrets:
        assert secret not in shown(result)
    assert not output.exists()


def test_error_messages_name_the_entry_and_account() -> None:
    with pytest.raises(InputError) as raised:
        parse_account_keys(f"euwlrs:{KEY};eungrs:{NOT_BASE64};")
    assert "entry 2 of 3" in str(raised.value) and "eungrs" in str(raised.value)
    assert NOT_BASE64 not in str(raised.value)
    with pytest.raises(InputError) as raised:
        parse_account_keys(f"euwlrs={KEY}")
    assert "not 'account=key'" in str(raised.value)
    assert parse_account_keys(f"euwlrs:{KEY};") == {"euwlrs": KEY}  # a trailing ';' is fine


def test_secrets_echoed_by_a_service_are_redacted_everywhere(
    arm: ArmServer, azurite: Azurite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_secret = "client-secret-value-0123456789"
    # An error message and an unparsable answer that both echo the key, the token and a client secret.
    echo = f"key {KEY} token {TOKEN} secret {client_secret}"
    arm.add_fault(SCOPES, Fault(200, {"unexpected": echo}))
    arm.add_fault(CONTAINERS, Fault(403, {"error": {"code": "AuthorizationFailed", "message": echo}}))
    output = tmp_path / "inv.jsonl"
    result = scan(arm, azurite, f"euwlrs:{KEY};", output, AZURE_CLIENT_SECRET=client_secret)
    assert result.exit_code == 0, shown(result)
    inventory = output.read_text()
    # The faults did reach the records, redacted.
    assert "malformed/empty answer to storage:EncryptionScopes.List" in inventory
    assert "[redacted]" in inventory
    for secret in (KEY, KEY.rstrip("="), TOKEN, client_secret):
        assert secret not in inventory
        assert secret not in shown(result)
        assert secret not in caplog.text


def test_redact_hides_registered_environment_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "another-client-secret-42")
    monkeypatch.setenv("AUDITOR_AZURE_ACCOUNT_KEYS", "acct=c29tZS1rZXktbWF0ZXJpYWw=")
    register_environment_secrets()
    text = redact("x another-client-secret-42 y c29tZS1rZXktbWF0ZXJpYWw= z")
    assert text == "x [redacted] y [redacted] z"
