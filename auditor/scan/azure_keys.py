"""Which key encrypts an Azure container: the account's key source, encryption scopes, Key Vaults.

A container's blobs use its default encryption scope, else the account's key; unless the container
denies scope overrides, any enabled scope of the account may be picked per blob. A customer key's
region is its vault's, looked up once per distinct vault in the whole scan (`KeyResolver`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

from auditor.model import Encryption, Evidence, Unknown, UnknownCode
from auditor.scan.azure_calls import (
    OP_ACCOUNTS,
    OP_SCOPES,
    OP_VAULT,
    LastAnswer,
    Listing,
    MalformedAnswer,
    check_arm_page,
    jsonable,
    unknown_from,
)
from auditor.scan.base import CallCounter
from auditor.scan.calls import CallRecorder, Memo, now

if TYPE_CHECKING:
    from azure.mgmt.storage import StorageManagementClient

    from auditor.scan.azure import _Container
    from auditor.scan.azure_accounts import AccountFacts

RESOURCES_API_VERSION = "2021-04-01"
ACCOUNT_KEY_SCOPE = "$account-encryption-key"
KEY_LEAVES = ("scheme", "key_management", "key_id", "key_location")


@dataclass
class Scopes:
    """The account's encryption scopes as {name: raw JSON}, or why they could not be read."""

    by_name: dict[str, dict[str, Any]]
    failure: Unknown | None
    evidence: Evidence


@dataclass
class KeyEncryption:
    """An encryption setting resolved to the model, with the unknowns and evidence behind it."""

    encryption: Encryption
    unknown: dict[str, Unknown]
    evidence: list[Evidence]


def microsoft_managed() -> KeyEncryption:
    return KeyEncryption(
        Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="microsoft-managed",
            key_management="provider-managed",
            key_id=None,
            key_location=None,
        ),
        {},
        [],
    )


def _named_scope(scope: Any) -> dict[str, Any]:
    """One encryption scope as plain JSON; a scope without a name fails its page."""
    raw: dict[str, Any] = jsonable(dict(scope))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise MalformedAnswer("an encryption scope without a name")
    return raw


class KeyResolver:
    """Resolves the key leaves of `encryption` for the accounts and containers of one scan."""

    def __init__(
        self,
        *,
        arm: Callable[[str], StorageManagementClient],
        answer: LastAnswer,
        recorder: CallRecorder,
        want_key_location: bool,
        call_bound: float,
    ) -> None:
        self.arm = arm
        self.answer = answer
        self.recorder = recorder
        self.calls: CallCounter = recorder.counter
        self.want_key_location = want_key_location
        self.call_bound = call_bound
        self._vaults: Memo[tuple[str, str], tuple[str | None, Unknown | None, Evidence]] = Memo()

    def account_encryption(self, facts: AccountFacts, props: dict[str, Any]) -> KeyEncryption:
        encryption = props.get("encryption") or {}
        source = encryption.get("keySource")
        if not source:
            return self.unresolved(
                f"MissingSetting: ARM returned no encryption.keySource ({OP_ACCOUNTS})", UnknownCode.ERROR
            )
        if str(source).lower() == "microsoft.storage":
            return microsoft_managed()
        if str(source).lower() == "microsoft.keyvault":
            vault = encryption.get("keyvaultproperties") or {}
            uri, name, version = vault.get("keyvaulturi"), vault.get("keyname"), vault.get("keyversion")
            key_id = vault.get("currentVersionedKeyIdentifier")
            if uri and name:
                key_id = f"{str(uri).rstrip('/')}/keys/{name}" + (f"/{version}" if version else "")
            return self.key_vault_encryption(
                facts.subscription, key_id, "account:encryption.keyvaultproperties"
            )
        return self.unresolved(
            f"UnknownKeySource: encryption.keySource '{source}' ({OP_ACCOUNTS})", UnknownCode.NOT_SUPPORTED
        )

    @staticmethod
    def unresolved(reason: str, code: UnknownCode) -> KeyEncryption:
        # Azure Storage encrypts every account with AES-256 and it cannot be turned off:
        # https://learn.microsoft.com/en-us/azure/storage/common/storage-service-encryption
        unknown = {f"encryption.{leaf}": Unknown(code=code, reason=reason) for leaf in KEY_LEAVES}
        return KeyEncryption(
            Encryption(
                enabled=True,
                algorithm="AES256",
                scheme=None,
                key_management=None,
                key_id=None,
                key_location=None,
            ),
            unknown,
            [],
        )

    def key_vault_encryption(
        self,
        subscription: str,
        key_id: str | None,
        origin: str,
        *,
        operation: str = OP_ACCOUNTS,
        want_location: bool | None = None,
    ) -> KeyEncryption:
        """A Key Vault key's encryption; its location looked up once per vault when wanted.

        `want_location` defaults to the resolver's (what the storage policies read); `operation` is
        the call whose answer named the key.
        """
        unknown: dict[str, Unknown] = {}
        evidence: list[Evidence] = []
        location: str | None = None
        if want_location is None:
            want_location = self.want_key_location
        if key_id is None:
            reason = f"MissingKey: {origin} names no Key Vault key ({operation})"
            unknown["encryption.key_id"] = Unknown(code=UnknownCode.ERROR, reason=reason)
            unknown["encryption.key_location"] = Unknown(code=UnknownCode.ERROR, reason=reason)
        elif not want_location:
            unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_COLLECTED,
                reason="the loaded policies do not read encryption.key_location",
            )
        else:
            location, failure, vault_evidence = self._vault_location(subscription, key_id)
            evidence.append(vault_evidence)
            if failure is not None:
                unknown["encryption.key_location"] = failure
        return KeyEncryption(
            Encryption(
                enabled=True,
                algorithm="AES256",
                scheme="customer-managed-key-vault",
                key_management="customer-managed",
                key_id=key_id,
                key_location=location,
            ),
            unknown,
            evidence,
        )

    def _vault_location(self, subscription: str, key_id: str) -> tuple[str | None, Unknown | None, Evidence]:
        """The region of the vault holding `key_id`: one ARM call per distinct vault, shared by all."""
        host = (urlparse(key_id).hostname or "").lower()
        request = {"subscription": subscription, "vault": host}
        try:
            # _lookup_vault turns every failure into an answer; a bug or an interrupt reaches every
            # waiter, and no waiter waits longer than one call with all its retries.
            return self._vaults.get(
                (subscription, host), lambda: self._lookup_vault(subscription, host), timeout=self.call_bound
            )
        except FutureTimeout:
            unknown = Unknown(
                code=UnknownCode.TIMEOUT,
                reason=f"Timeout: the lookup of vault '{host}' took longer than {self.call_bound:.0f} s "
                f"({OP_VAULT})",
            )
        except Exception as exc:
            unknown = unknown_from(exc, OP_VAULT)
        evidence = Evidence(
            call=OP_VAULT,
            at=now(),
            attributes=["encryption.key_location"],
            request=request,
            error=unknown.reason,
        )
        return None, unknown, evidence

    def _lookup_vault(self, subscription: str, host: str) -> tuple[str | None, Unknown | None, Evidence]:
        vault = host.split(".", 1)[0]
        kind = "Microsoft.KeyVault/managedHSMs" if ".managedhsm." in host else "Microsoft.KeyVault/vaults"
        query = f"resourceType eq '{kind}' and name eq '{vault}'"
        request = {"subscription": subscription, "$filter": query}

        def perform() -> list[dict[str, Any]]:
            response = self.arm(subscription).send_request(
                HttpRequest(
                    "GET",
                    f"/subscriptions/{subscription}/resources",
                    params={"$filter": query, "api-version": RESOURCES_API_VERSION},
                )
            )
            if response.status_code != 200:
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise MalformedAnswer("the resources listing has no 'value' list")
            return [
                r for r in body["value"] if isinstance(r, dict) and str(r.get("name", "")).lower() == vault
            ]

        self.answer.clear()
        try:
            answer = self.recorder.call(
                OP_VAULT, ["encryption.key_location"], request, perform, shown=lambda found: {"value": found}
            )
        finally:
            self.answer.clear()
        found = answer.value
        if found is None:
            assert answer.unknown is not None
            return None, answer.unknown, answer.evidence
        if not found or not found[0].get("location"):
            return (
                None,
                Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"VaultNotFound: no {kind} named '{vault}' in subscription {subscription} "
                    f"(it may live in another subscription or tenant) ({OP_VAULT})",
                ),
                answer.evidence,
            )
        return str(found[0]["location"]).lower().replace(" ", ""), None, answer.evidence

    def encryption_scopes(self, facts: AccountFacts) -> Scopes:
        request = {
            "subscription": facts.subscription,
            "resourceGroup": facts.resource_group,
            "account": facts.name,
        }
        by_name: dict[str, dict[str, Any]] = {}
        group = facts.resource_group

        def open_pages() -> Iterator[Any]:
            if group is None:
                raise AzureError(f"no resource group in '{facts.account_id}'")
            return self.arm(facts.subscription).encryption_scopes.list(group, facts.name).by_page()

        listing = Listing(
            self.recorder,
            self.answer,
            OP_SCOPES,
            ["encryption"],
            request,
            open_pages,
            check=lambda: check_arm_page(self.answer, OP_SCOPES),
            item=_named_scope,
        )
        for page in listing:
            by_name.update((raw["name"], raw) for raw in page)
        failed = listing.failure
        if failed is not None:
            assert failed.unknown is not None
            evidence = failed.evidence.model_copy(update={"request": request})
            return Scopes(by_name, failed.unknown, evidence)
        return Scopes(
            by_name,
            None,
            Evidence(
                call=OP_SCOPES,
                at=now(),
                attributes=["encryption"],
                request=request,
                response=list(by_name.values()),
            ),
        )

    def _scope_encryption(self, facts: AccountFacts, scope: dict[str, Any]) -> KeyEncryption | None:
        props = scope.get("properties") or {}
        source = str(props.get("source") or "").lower()
        if source == "microsoft.storage":
            return microsoft_managed()
        if source == "microsoft.keyvault":
            vault = props.get("keyVaultProperties") or {}
            key_id = vault.get("keyUri") or vault.get("currentVersionedKeyIdentifier")
            return self.key_vault_encryption(
                facts.subscription, key_id, f"encryption scope '{scope.get('name')}'"
            )
        return None

    def container_encryption(
        self, facts: AccountFacts, container: _Container, scopes: Scopes | None
    ) -> KeyEncryption | None:
        """The encryption a container's blobs get: its default scope's, else the account's.

        Unless the container denies scope overrides, a writer may pick any enabled scope of the
        account per blob, so a customer-managed default is only as strong as the weakest such scope.
        """
        base = facts.encryption
        if base is None:
            return None
        account = KeyEncryption(
            base,
            {k: v for k, v in facts.unknown.items() if k.startswith("encryption")},
            list(facts.evidence[1:]),
        )
        if scopes is None:
            # The key leaves depend on the container's encryption scope, which was not read.
            return self.unresolved(
                "the loaded policies read no encryption key attribute", UnknownCode.NOT_COLLECTED
            )
        evidence = [scopes.evidence]
        if scopes.failure is not None:
            # Without the scope list we cannot tell which key a container's blobs may use.
            unresolved = self.unresolved(scopes.failure.reason, scopes.failure.code)
            unresolved.evidence.extend(evidence)
            return unresolved
        chosen = account
        if container.default_scope and container.default_scope != ACCOUNT_KEY_SCOPE:
            scope = scopes.by_name.get(container.default_scope)
            resolved = self._scope_encryption(facts, scope) if scope is not None else None
            if resolved is None:
                why = (
                    "is not among the account's encryption scopes"
                    if scope is None
                    else "has an unknown source"
                )
                unresolved = self.unresolved(
                    f"UnknownScope: default encryption scope '{container.default_scope}' {why} ({OP_SCOPES})",
                    UnknownCode.ERROR,
                )
                unresolved.evidence.extend(evidence)
                return unresolved
            chosen = resolved
        if not container.deny_override and chosen.encryption.key_management == "customer-managed":
            for scope in scopes.by_name.values():
                if str((scope.get("properties") or {}).get("state") or "Enabled").lower() != "enabled":
                    continue
                other = self._scope_encryption(facts, scope)
                if other is not None and other.encryption.key_management == "provider-managed":
                    chosen = other
                    break
        return KeyEncryption(chosen.encryption, chosen.unknown, [*evidence, *chosen.evidence])
