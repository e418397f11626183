"""Azure OpenAI and AI Foundry through ARM: Cognitive Services accounts and their model deployments.

One `ai-account` record per Cognitive Services account of kind OpenAI or AIServices (the other kinds
host no generative models and are not listed as AI resources), one `ai-deployment` record per model
deployment of such an account. Both come from two paged ARM listings made through the scan's ARM
client (its retries, timeouts, `Retry-After` handling and answer hooks): the account entry carries
location, encryption, network access and tags; a deployment's SKU decides where its requests are
processed (`SKU_PROCESSING`). See docs/scanners/azure-openai.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

from auditor.inventory import InventoryRecord
from auditor.model import (
    ANY_REGION,
    Access,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Processing,
    ProcessingScope,
    StorageResource,
    Training,
    Unknown,
    UnknownCode,
)
from auditor.scan.azure_accounts import parse_resource_group
from auditor.scan.azure_calls import (
    LastAnswer,
    Listing,
    MalformedAnswer,
    jsonable,
    malformed_unknown,
    unknown_from,
)
from auditor.scan.azure_keys import KEY_LEAVES, KeyResolver
from auditor.scan.azure_source import data_zone_of, geography_of
from auditor.scan.calls import CallRecorder, now

if TYPE_CHECKING:
    from azure.mgmt.storage import StorageManagementClient

    from auditor.policy.zones import ZoneCatalog
    from auditor.scan.base import AttributeNeeds

OP_AI_ACCOUNTS = "cognitiveservices:Accounts.List"
OP_AI_DEPLOYMENTS = "cognitiveservices:Deployments.List"
# Stable Microsoft.CognitiveServices api-version (azure-rest-api-specs, specification/cognitiveservices).
API_VERSION = "2025-06-01"
# Account kinds that host Azure OpenAI / Foundry model deployments (compared case-insensitively).
AI_ACCOUNT_KINDS = frozenset({"openai", "aiservices"})

DEPLOYMENT_TYPES = "https://learn.microsoft.com/azure/ai-foundry/openai/how-to/deployment-types"
DATA_PRIVACY = "https://learn.microsoft.com/azure/ai-foundry/responsible-ai/openai/data-privacy"
ENCRYPTION_AT_REST = "https://learn.microsoft.com/azure/ai-foundry/openai/encrypt-data-at-rest"
# Where a deployment processes requests, by its SKU name ("SKU name in code", DEPLOYMENT_TYPES).
# Standard and ProvisionedManaged process "within the customer-specified geography ... but may be
# processed between regions within the geography" (DATA_PRIVACY); DataZone* anywhere in the account's
# Microsoft-specified data zone; Global* and DeveloperTier (fine-tuned models, "without data
# residency") in any region. Any other SKU is unknown, whatever its name starts with.
SKU_PROCESSING: Mapping[str, ProcessingScope] = {
    "Standard": "geography",
    "ProvisionedManaged": "geography",
    "DataZoneStandard": "data-zone",
    "DataZoneProvisionedManaged": "data-zone",
    "DataZoneBatch": "data-zone",
    "GlobalStandard": "global",
    "GlobalProvisionedManaged": "global",
    "GlobalBatch": "global",
    "DeveloperTier": "global",
}
_SKU_BY_FOLDED = {name.casefold(): scope for name, scope in SKU_PROCESSING.items()}
# "Your prompts (inputs) and completions (outputs), your embeddings, and your training data ... are
# NOT used to train any generative AI foundation models without your permission or instruction."
TRAINING_DEFAULT = Training(
    provider_may_train=False,
    decided_by="provider-default",
    setting=None,
    source=DATA_PRIVACY,
    as_of=date(2026, 11, 29),
)
ACCOUNT_GROUPS = ("location", "encryption", "access", "tags", "training")


@dataclass
class AiAccount:
    """One OpenAI or AIServices account as listed, with the evidence of its listing entry."""

    subscription: str
    account_id: str
    name: str
    resource_group: str | None
    raw: dict[str, Any]
    props: dict[str, Any]
    listed_at: datetime
    region: str | None = None
    unknown: dict[str, Unknown] = field(default_factory=dict)

    def listing_evidence(self, attributes: list[str]) -> Evidence:
        """The account listing entry as evidence of `attributes`."""
        return Evidence(
            call=OP_AI_ACCOUNTS,
            at=self.listed_at,
            attributes=attributes,
            request={"subscription": self.subscription},
            response=self.raw,
        )


class AzureAI:
    """Lists the AI accounts and deployments of the subscriptions of one Azure scan.

    Made only for the kinds the policies target: no Cognitive Services call unless a policy is scoped
    to `ai-account` or `ai-deployment`, no deployment listing unless one is scoped to `ai-deployment`;
    each record carries the groups the policies scoped to its kind read.
    """

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        *,
        arm: Callable[[str], StorageManagementClient],
        arm_endpoint: str,
        answer: LastAnswer,
        recorder: CallRecorder,
        keys: KeyResolver,
    ) -> None:
        self.catalog = catalog
        self.arm = arm
        self.arm_endpoint = urlsplit(arm_endpoint)
        self.answer = answer
        self.recorder = recorder
        self.keys = keys
        self.want_accounts = needs.wants_kind("ai-account")
        self.want_deployments = needs.wants_kind("ai-deployment")
        self.account_needs = needs.for_kinds("ai-account")
        self.deployment_needs = needs.for_kinds("ai-deployment")

    @property
    def wanted(self) -> bool:
        """True if some policy is scoped to AI accounts or deployments (else no call is made)."""
        return self.want_accounts or self.want_deployments

    # --- listings --------------------------------------------------------------------------------

    def _pages(self, subscription: str, path: str) -> Iterator[list[Any]]:
        """The `value` of each page of an ARM listing, following `nextLink` (one request per page)."""
        client = self.arm(subscription)
        url = path
        params: dict[str, str] | None = {"api-version": API_VERSION}
        followed: set[str] = set()
        while True:
            response = client.send_request(HttpRequest("GET", url, params=params))
            if response.status_code != 200:
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise MalformedAnswer("the listing answered without a 'value' list")
            next_link = body.get("nextLink")
            # A page whose nextLink cannot be followed fails (with its answer kept as evidence).
            url = self._next_link(next_link, followed) if next_link else ""
            yield body["value"]
            if not url:
                return
            # A nextLink carries the api-version; the SDKs add it when one does not.
            params = None if "api-version" in parse_qs(urlsplit(url).query) else {"api-version": API_VERSION}

    def _next_link(self, next_link: Any, followed: set[str]) -> str:
        """`nextLink`, refused unless it stays on the ARM endpoint (the bearer token goes with it)."""
        if not isinstance(next_link, str):
            raise MalformedAnswer(f"nextLink is {type(next_link).__name__}")
        target = urlsplit(next_link)
        if (target.scheme, target.netloc.lower()) != (
            self.arm_endpoint.scheme,
            self.arm_endpoint.netloc.lower(),
        ):
            raise MalformedAnswer(f"nextLink leaves the ARM endpoint ({target.scheme}://{target.netloc})")
        if next_link in followed:
            raise MalformedAnswer("nextLink repeats a page already read")
        followed.add(next_link)
        return next_link

    def list_accounts(
        self, subscription: str, emit: Callable[[InventoryRecord], None]
    ) -> Iterator[tuple[dict[str, Any], datetime]]:
        """Every Cognitive Services account entry of a subscription; a failed listing is a gap."""
        path = f"/subscriptions/{quote(subscription)}/providers/Microsoft.CognitiveServices/accounts"
        listing = Listing(
            self.recorder,
            self.answer,
            OP_AI_ACCOUNTS,
            [],
            {"subscription": subscription},
            lambda: self._pages(subscription, path),
        )
        yield from listing.entries(subscription, "ai-accounts", "Cognitive Services account", emit)

    # --- one account ------------------------------------------------------------------------------

    def scan_account_guarded(
        self,
        subscription: str,
        raw: dict[str, Any],
        listed_at: datetime,
        emit: Callable[[InventoryRecord], None],
    ) -> None:
        """The account's record and its deployments; anything unforeseen becomes a coverage gap."""
        name = raw.get("name") if isinstance(raw, dict) else None
        account_id = raw.get("id") if isinstance(raw, dict) else None
        what = f"Cognitive Services account {account_id or name or '(unnamed entry)'}"
        try:
            account = self._account(subscription, raw, listed_at)
            if account is None:
                return  # a Cognitive Services kind that hosts no AI models
            if self.want_accounts:
                emit(self._account_record(account))
        except Exception as exc:
            emit(self._gap(subscription, "ai-account", f"{what} not scanned", exc, raw, listed_at))
            return
        if self.want_deployments:
            try:
                self._scan_deployments(account, emit)
            except Exception as exc:
                scope = f"ai-deployments:{account.name}"
                emit(
                    self._gap(subscription, scope, f"deployments of {what} not scanned", exc, raw, listed_at)
                )

    @staticmethod
    def _gap(
        subscription: str, scope: str, what: str, exc: Exception, raw: Any, listed_at: datetime
    ) -> CoverageGap:
        unknown = unknown_from(exc, OP_AI_ACCOUNTS)
        entry = Evidence(
            call=OP_AI_ACCOUNTS,
            at=listed_at,
            attributes=[],
            request={"subscription": subscription},
            response=raw,
            error=unknown.reason,
        )
        return CoverageGap(
            provider="azure",
            account=subscription,
            scope=scope,
            code=unknown.code,
            reason=f"{what}: {unknown.reason}",
            at=now(),
            evidence=[entry],
        )

    def _account(self, subscription: str, raw: Any, listed_at: datetime) -> AiAccount | None:
        """The entry as an `AiAccount`, None for a kind that is no AI account; malformed raises."""
        if not isinstance(raw, dict):
            raise MalformedAnswer(f"an account entry is {type(raw).__name__}")
        name, account_id, kind = raw.get("name"), raw.get("id"), raw.get("kind")
        if not isinstance(name, str) or not name or not isinstance(account_id, str) or not account_id:
            raise MalformedAnswer("an account entry without a name or id")
        if not isinstance(kind, str) or not kind:
            raise MalformedAnswer("an account entry without a kind: whether it is an AI account is unknown")
        if kind.casefold() not in AI_ACCOUNT_KINDS:
            return None
        props_raw = raw.get("properties")
        account = AiAccount(
            subscription=subscription,
            account_id=account_id,
            name=name,
            resource_group=parse_resource_group(account_id),
            raw=raw,
            props=props_raw if isinstance(props_raw, dict) else {},
            listed_at=listed_at,
        )
        if props_raw is not None and not isinstance(props_raw, dict):
            for group in ("encryption", "access"):
                account.unknown[group] = _malformed(f"properties is {type(props_raw).__name__}")
        location = raw.get("location")
        if isinstance(location, str) and location:
            account.region = location.lower().replace(" ", "")
        else:
            why = "no location" if location in (None, "") else f"location is {type(location).__name__}"
            account.unknown["location"] = Unknown(
                code=UnknownCode.ERROR, reason=f"MissingLocation: the account has {why} ({OP_AI_ACCOUNTS})"
            )
        return account

    # --- the account record -----------------------------------------------------------------------

    def _account_record(self, account: AiAccount) -> StorageResource:
        needs = self.account_needs
        wanted = [group for group in ACCOUNT_GROUPS if needs.wants(group)]
        unknown = {k: v for k, v in account.unknown.items() if k.split(".")[0] in wanted}
        evidence = [account.listing_evidence(wanted)]
        groups: dict[str, Any] = {}
        if "location" in wanted and "location" not in unknown:
            groups["location"] = self._at_rest(account, unknown)
        if "encryption" in wanted and "encryption" not in unknown:
            groups["encryption"] = self._encryption(account, unknown, evidence)
        if "access" in wanted and "access" not in unknown:
            groups["access"] = _access(account.props, unknown)
        if "tags" in wanted:
            tags = account.raw.get("tags")
            if tags is None or isinstance(tags, dict):
                groups["tags"] = {str(k): str(v) for k, v in (tags or {}).items()}
            else:
                unknown["tags"] = _malformed(f"tags is {type(tags).__name__}")
        if "training" in wanted:
            groups["training"] = TRAINING_DEFAULT.model_copy()
        return StorageResource(
            provider="azure",
            kind="ai-account",
            account=account.subscription,
            name=account.name,
            id=account.account_id,
            scanned_at=now(),
            unknown=unknown,
            evidence=evidence,
            **groups,
        )

    def _at_rest(self, account: AiAccount, unknown: dict[str, Unknown]) -> Location:
        """Content rests in the account's Azure geography (DATA_PRIVACY: "within the same geography")."""
        assert account.region is not None
        region = account.region
        found = geography_of(self.catalog, region)
        if found is None:
            unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"NoGeography: the zone catalog names no Azure geography holding '{region}', so "
                f"the other regions its content may rest in are unknown ({OP_AI_ACCOUNTS})",
                partial="members",
            )
            regions = [region]
        else:
            regions = [region, *(member for member in found[1] if member != region)]
        routed = account.props.get("locations")
        if routed is not None and not (isinstance(routed, dict) and not routed.get("regions")):
            # Multi-region routing settings name further regions; what rests there is not documented.
            unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"MultiRegion: the account routes requests to further regions (properties.locations "
                f"{jsonable(routed)}); whether content rests there is not documented ({OP_AI_ACCOUNTS})",
                partial="members",
            )
        return Location(
            raw=str(account.raw.get("location")),
            type="geography" if found is not None else "region",
            primary=region,
            regions=regions,
            replicas=[],
        )

    def _encryption(
        self, account: AiAccount, unknown: dict[str, Unknown], evidence: list[Evidence]
    ) -> Encryption:
        """keySource Microsoft.CognitiveServices or Microsoft.KeyVault; no setting: Microsoft's keys."""
        setting = account.props.get("encryption")
        if setting is None:
            # No encryption setting is the default: "By default, your subscription uses
            # Microsoft-managed encryption keys" with 256-bit AES (ENCRYPTION_AT_REST).
            return _microsoft_managed(provider_default=True)
        if not isinstance(setting, dict):
            return self._unresolved(unknown, _malformed(f"encryption is {type(setting).__name__}"))
        source = setting.get("keySource")
        if not isinstance(source, str) or not source:
            return self._unresolved(
                unknown,
                Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"MissingSetting: encryption without a keySource ({OP_AI_ACCOUNTS})",
                ),
            )
        if source.casefold() == "microsoft.cognitiveservices":
            return _microsoft_managed(provider_default=False)
        if source.casefold() != "microsoft.keyvault":
            return self._unresolved(
                unknown,
                Unknown(
                    code=UnknownCode.NOT_SUPPORTED,
                    reason=f"UnknownKeySource: encryption.keySource '{source}' ({OP_AI_ACCOUNTS})",
                ),
            )
        vault = setting.get("keyVaultProperties")
        vault = vault if isinstance(vault, dict) else {}
        uri, key, version = vault.get("keyVaultUri"), vault.get("keyName"), vault.get("keyVersion")
        key_id = None
        if isinstance(uri, str) and uri and isinstance(key, str) and key:
            key_id = f"{uri.rstrip('/')}/keys/{key}" + (
                f"/{version}" if isinstance(version, str) and version else ""
            )
        resolved = self.keys.key_vault_encryption(
            account.subscription,
            key_id,
            "account:encryption.keyVaultProperties",
            operation=OP_AI_ACCOUNTS,
            want_location=self.account_needs.wants("encryption.key_location"),
        )
        unknown.update(resolved.unknown)
        evidence.extend(resolved.evidence)
        return resolved.encryption

    def _unresolved(self, unknown: dict[str, Unknown], why: Unknown) -> Encryption:
        # Every Azure OpenAI resource is encrypted with 256-bit AES (ENCRYPTION_AT_REST): only the
        # key leaves are unknown.
        unknown.update({f"encryption.{leaf}": why for leaf in KEY_LEAVES})
        return self.keys.unresolved(why.reason, why.code).encryption

    # --- deployments ------------------------------------------------------------------------------

    def _scan_deployments(self, account: AiAccount, emit: Callable[[InventoryRecord], None]) -> None:
        """One record per deployment; a listing that fails (or stops) is a gap naming the account."""
        group = account.resource_group
        if group is None:
            raise MalformedAnswer(f"no resource group in '{account.account_id}'")
        request: dict[str, Any] = {
            "subscription": account.subscription,
            "resourceGroup": group,
            "account": account.name,
        }
        path = (
            f"/subscriptions/{quote(account.subscription)}/resourceGroups/{quote(group)}"
            f"/providers/Microsoft.CognitiveServices/accounts/{quote(account.name)}/deployments"
        )
        attributes = [g for g in ("processing", "training") if self.deployment_needs.wants(g)]
        listing = Listing(
            self.recorder,
            self.answer,
            OP_AI_DEPLOYMENTS,
            ["name", *attributes],
            request,
            lambda: self._pages(account.subscription, path),
            item=_deployment_entry,
        )
        listed = 0
        for page in listing:
            at = now()
            page_request = {**request, "page": listing.pages_read}
            for entry in page:
                emit(self._deployment_record(account, entry, at, page_request, attributes))
                listed += 1
        failed = listing.failure
        if failed is None:
            return
        assert failed.unknown is not None
        extent = f"listed only in part ({listed} listed)" if listed else "could not be listed"
        emit(
            CoverageGap(
                provider="azure",
                account=account.subscription,
                scope=f"ai-deployments:{account.name}",
                code=failed.unknown.code,
                reason=f"deployments of Cognitive Services account {account.account_id} {extent}: "
                f"{failed.unknown.reason}",
                at=now(),
                evidence=[failed.evidence],
            )
        )

    def _deployment_record(
        self,
        account: AiAccount,
        entry: dict[str, Any],
        at: datetime,
        request: dict[str, Any],
        attributes: list[str],
    ) -> StorageResource:
        name = str(entry["name"])
        entry_id = entry.get("id")
        unknown: dict[str, Unknown] = {}
        groups: dict[str, Any] = {}
        if "processing" in attributes:
            groups["processing"] = self._processing(account, entry, unknown)
        if "training" in attributes:
            groups["training"] = TRAINING_DEFAULT.model_copy()
        return StorageResource(
            provider="azure",
            kind="ai-deployment",
            account=account.subscription,
            name=name,
            id=entry_id
            if isinstance(entry_id, str) and entry_id
            else f"{account.account_id}/deployments/{name}",
            scanned_at=now(),
            unknown=unknown,
            evidence=[
                # The account's location decides where a Standard or DataZone SKU processes.
                account.listing_evidence(["processing.regions"] if "processing" in attributes else []),
                Evidence(
                    call=OP_AI_DEPLOYMENTS,
                    at=at,
                    attributes=["name", *attributes],
                    request=request,
                    response=entry,
                ),
            ],
            **groups,
        )

    def _processing(
        self, account: AiAccount, entry: dict[str, Any], unknown: dict[str, Unknown]
    ) -> Processing:
        """Where the deployment's SKU processes requests (SKU_PROCESSING), resolved to regions."""
        sku = entry.get("sku")
        sku_name = sku.get("name") if isinstance(sku, dict) else None
        if not isinstance(sku_name, str) or not sku_name:
            unknown["processing"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingSku: the deployment has no sku.name, so where it processes requests is "
                f"unknown ({OP_AI_DEPLOYMENTS})",
            )
            return Processing(raw=None, scope=None, regions=[])
        scope = _SKU_BY_FOLDED.get(sku_name.casefold())
        if scope is None:
            reason = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"UnknownSku: deployment SKU '{sku_name}' is not a deployment type of "
                f"{DEPLOYMENT_TYPES}; where it processes requests is unknown ({OP_AI_DEPLOYMENTS})",
            )
            unknown["processing.scope"] = unknown["processing.regions"] = reason
            return Processing(raw=sku_name, scope=None, regions=[])
        if scope == "global":
            return Processing(raw=sku_name, scope=scope, regions=[ANY_REGION])
        region = account.region
        if region is None:
            unknown["processing.regions"] = account.unknown["location"]
            return Processing(raw=sku_name, scope=scope, regions=[])
        if scope == "data-zone":
            zone = data_zone_of(self.catalog, region)
            if zone is None:
                unknown["processing.regions"] = Unknown(
                    code=UnknownCode.NOT_SUPPORTED,
                    reason=f"NoDataZone: the account's region '{region}' is in no Microsoft data zone of the "
                    f"zone catalog, so where {sku_name} processes requests is unknown ({OP_AI_DEPLOYMENTS})",
                )
                return Processing(raw=sku_name, scope=scope, regions=[])
            return Processing(raw=sku_name, scope=scope, regions=list(zone[1].members))
        geography = geography_of(self.catalog, region)
        if geography is None:
            unknown["processing.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"NoGeography: the zone catalog names no Azure geography holding '{region}', so the "
                f"other regions {sku_name} may process in are unknown ({OP_AI_DEPLOYMENTS})",
                partial="members",
            )
            return Processing(raw=sku_name, scope=scope, regions=[region])
        return Processing(
            raw=sku_name, scope=scope, regions=[region, *(m for m in geography[1] if m != region)]
        )


def _microsoft_managed(*, provider_default: bool) -> Encryption:
    return Encryption(
        enabled=True,
        algorithm="AES256",
        scheme="microsoft-managed",
        key_management="provider-managed",
        key_id=None,
        key_location=None,
        provider_default=provider_default,
        source=ENCRYPTION_AT_REST if provider_default else None,
    )


# publicNetworkAccess as ARM spells it (compared case-insensitively) -> the public endpoint is closed.
PUBLIC_NETWORK_ACCESS = {"enabled": False, "disabled": True}


def _access(props: dict[str, Any], unknown: dict[str, Unknown]) -> Access:
    """Closed when publicNetworkAccess is Disabled; the network settings as read go into `detail`."""
    setting = props.get("publicNetworkAccess")
    blocked = PUBLIC_NETWORK_ACCESS.get(setting.casefold()) if isinstance(setting, str) else None
    if blocked is None:
        unknown["access.public_access_blocked"] = (
            Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingSetting: ARM returned no publicNetworkAccess ({OP_AI_ACCOUNTS})",
            )
            if setting is None
            else Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"UnknownSetting: publicNetworkAccess '{setting}' ({OP_AI_ACCOUNTS})",
            )
        )
    return Access(
        public_access_blocked=blocked,
        detail={
            "publicNetworkAccess": setting,
            "restrictOutboundNetworkAccess": props.get("restrictOutboundNetworkAccess"),
            "networkAcls": props.get("networkAcls"),
        },
    )


def _deployment_entry(item: Any) -> dict[str, Any]:
    """One deployment listing entry; an entry without a name fails its page (the listing is partial)."""
    entry: Any = jsonable(item)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise MalformedAnswer("a deployment entry without a name")
    return entry


def _malformed(detail: str) -> Unknown:
    return malformed_unknown(MalformedAnswer(detail), OP_AI_ACCOUNTS)
