"""Azure scan credentials: the pre-acquired token, shared account keys, and keeping secrets out of output.

Every secret the scan holds (account keys, `AUDITOR_AZURE_ACCESS_TOKEN`, a service principal's client
secret or certificate password) is registered with `register_secret`; `redact` replaces any of them in
text that may be printed or recorded (error messages, reasons, raw answers kept as evidence). Error
messages about malformed secrets name the entry's position and the account, never the value.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken

from auditor.errors import InputError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

ACCESS_TOKEN_ENV = "AUDITOR_AZURE_ACCESS_TOKEN"
ACCOUNT_KEYS_ENV = "AUDITOR_AZURE_ACCOUNT_KEYS"
# Secrets azure-identity's EnvironmentCredential reads: never echoed, but redacted all the same.
_SECRET_ENVS = (
    ACCESS_TOKEN_ENV,
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_PASSWORD",
)
REDACTED = "[redacted]"
# Shorter values are too likely to occur in ordinary text to replace them blindly.
_MIN_SECRET = 6

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember `value` so `redact` hides it (and its stripped form) wherever it shows up."""
    if not value:
        return
    with _secrets_lock:
        for form in (value, value.strip()):
            if len(form) >= _MIN_SECRET:
                _secrets.add(form)


def register_environment_secrets() -> None:
    """Register the secrets the environment hands to this process (token, client secret, keys)."""
    for name in _SECRET_ENVS:
        register_secret(os.environ.get(name))
    keys = os.environ.get(ACCOUNT_KEYS_ENV)
    if keys:
        register_secret(keys)
        for entry in keys.split(";"):
            # Whatever the shape, every piece after the first separator may be key material.
            for sep in (":", "="):
                _, found, rest = entry.partition(sep)
                if found:
                    register_secret(rest)
                    for piece in rest.split(":"):
                        register_secret(piece)


def redact(text: str) -> str:
    """`text` with every registered secret replaced by '[redacted]'."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class StaticTokenCredential:
    """A TokenCredential returning one pre-acquired bearer token (`az account get-access-token`)."""

    def __init__(self, token: str, lifetime: int = 3600) -> None:
        register_secret(token)
        self._token = token
        self._expires_on = int(time.time()) + lifetime

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=[redacted])"

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The token, whatever the scopes (it is only valid for the audience it was issued for)."""
        return AccessToken(self._token, self._expires_on)


def valid_shared_key(key: str) -> bool:
    """True if `key` is a non-empty standard base64 string, as Azure shared keys are."""
    if not key:
        return False
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def parse_account_keys(text: str) -> dict[str, str]:
    """Shared keys in the AZURITE_ACCOUNTS format, 'name:key1[:key2];name2:key', as {name: key1}.

    A malformed entry is an `InputError` naming its position (and the account when the name part is
    readable), never any part of the key.
    """
    register_secret(text)
    keys: dict[str, str] = {}
    entries = text.split(";")
    for position, raw in enumerate(entries, start=1):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        name = name.strip()
        for piece in rest.split(":"):
            register_secret(piece)
        where = f"entry {position} of {len(entries)}"
        if not sep:
            # No ':' at all: the entry may be 'name=key' or a bare key, so show none of it.
            register_secret(entry)
            hint = " (use 'account:key', not 'account=key')" if "=" in entry.rstrip("=") else ""
            raise InputError(ACCOUNT_KEYS_ENV, f"expected 'account:key;...': {where} has no ':'{hint}")
        if not _is_account_name(name):
            raise InputError(
                ACCOUNT_KEYS_ENV,
                f"expected 'account:key;...': {where} does not start with a storage account name "
                "(3-24 lower-case letters and digits)",
            )
        key = rest.split(":", 1)[0].strip()
        if not key:
            raise InputError(ACCOUNT_KEYS_ENV, f"{where} (account '{name}') has an empty key")
        if not valid_shared_key(key):
            raise InputError(
                ACCOUNT_KEYS_ENV, f"{where} (account '{name}'): the key is not base64, as shared keys are"
            )
        keys[name] = key
    return keys


def _is_account_name(name: str) -> bool:
    # Azurite's own accounts (devstoreaccount1) follow the same rule.
    return 3 <= len(name) <= 24 and name.isascii() and name.isalnum() and name == name.lower()


def default_credential() -> TokenCredential:
    """The scan's credential: a pre-acquired ARM token from the environment, else DefaultAzureCredential."""
    register_environment_secrets()
    token = os.environ.get(ACCESS_TOKEN_ENV)
    if token:
        return StaticTokenCredential(token)
    from azure.identity import DefaultAzureCredential

    credential: TokenCredential = DefaultAzureCredential()
    return credential
