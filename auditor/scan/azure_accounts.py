"""What an Azure storage account's ARM listing entry says: location, replication, TLS, access, tags.

One `AccountFacts` per account, shared by every container of it. A field of an unexpected shape
makes only the group (or leaf) it feeds unknown, never the account's other groups; the key leaves
of `encryption` are resolved by `auditor.scan.azure_keys.KeyResolver`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from auditor.model import (
    Encryption,
    Evidence,
    Location,
    ProviderTlsFloor,
    Replica,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.scan.azure_calls import OP_ACCOUNTS, MalformedAnswer, malformed_unknown
from auditor.scan.azure_source import AzureCatalog, is_geo_redundant, paired_region

if TYPE_CHECKING:
    from auditor.policy.zones import ZoneCatalog
    from auditor.scan.azure_keys import KeyResolver
    from auditor.scan.base import AttributeNeeds

# Azure Storage refuses TLS 1.0/1.1 on every account in every cloud since 3 February 2026 (moved
# from 1 Nov 2024, then 1 Nov 2025): TLS 1.2 is the platform floor whatever `minimumTlsVersion` says.
TLS_FLOOR = ProviderTlsFloor(
    version="TLS1_2",
    since=date(2026, 2, 3),
    source="https://learn.microsoft.com/en-us/azure/storage/common/transport-layer-security-configure-migrate-to-tls2",
)
GROUPS = ("location", "encryption", "transport", "access", "tags")


@dataclass
class AccountFacts:
    """What the account listing (and its key vault) says, shared by every container of the account."""

    subscription: str
    account_id: str
    name: str
    resource_group: str | None
    raw: dict[str, Any]
    blob_endpoint: str | None
    location: Location | None = None
    encryption: Encryption | None = None
    transport: Transport | None = None
    allow_public: bool | None = None
    tags: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, Unknown] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)


def parse_resource_group(resource_id: str) -> str | None:
    """The resource group named in an ARM resource id, or None."""
    parts = resource_id.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "resourcegroups":
            return parts[i + 1]
    return None


def account_facts(
    subscription: str,
    raw: dict[str, Any],
    listed_at: datetime,
    *,
    needs: AttributeNeeds,
    catalog: ZoneCatalog,
    keys: KeyResolver,
) -> AccountFacts:
    """The settings of one account listing entry, for the groups the loaded policies read."""
    props_raw = raw.get("properties")
    props: dict[str, Any] = props_raw if isinstance(props_raw, dict) else {}
    account_id = str(raw.get("id") or "")
    endpoints = props.get("primaryEndpoints")
    blob_endpoint = endpoints.get("blob") if isinstance(endpoints, dict) else None
    allow_public = props.get("allowBlobPublicAccess")
    raw_tags = raw.get("tags")
    facts = AccountFacts(
        subscription=subscription,
        account_id=account_id,
        name=str(raw.get("name")),
        resource_group=parse_resource_group(account_id),
        raw=raw,
        blob_endpoint=blob_endpoint if isinstance(blob_endpoint, str) and blob_endpoint else None,
        allow_public=allow_public if isinstance(allow_public, bool) else None,
        tags={str(k): str(v) for k, v in raw_tags.items()} if isinstance(raw_tags, dict) else {},
    )
    malformed = f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS}"
    if props_raw is not None and not isinstance(props_raw, dict):
        for group in ("location", "encryption", "transport", "access"):
            facts.unknown[group] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{malformed} (properties is not an object) ({OP_ACCOUNTS})",
            )
    if raw_tags is not None and not isinstance(raw_tags, dict):
        facts.unknown["tags"] = Unknown(
            code=UnknownCode.ERROR, reason=f"{malformed} (tags is not an object) ({OP_ACCOUNTS})"
        )
    if allow_public is not None and not isinstance(allow_public, bool):
        facts.unknown["access.public_access_blocked"] = Unknown(
            code=UnknownCode.ERROR,
            reason=f"{malformed} (allowBlobPublicAccess is {type(allow_public).__name__}) ({OP_ACCOUNTS})",
        )
    facts.evidence.append(
        Evidence(
            call=OP_ACCOUNTS,
            at=listed_at,
            attributes=[group for group in GROUPS if needs.wants(group)],
            request={"subscription": subscription},
            response=raw,
        )
    )
    # A field of an unexpected shape makes its group unknown, never the account's other groups.
    if needs.wants("location"):
        try:
            account_location(catalog, facts, raw, props)
        except Exception as exc:
            facts.location = None
            facts.unknown["location"] = malformed_unknown(exc, OP_ACCOUNTS)
    if needs.wants("transport"):
        try:
            account_transport(facts, props, listed_at)
        except Exception as exc:
            facts.transport = None
            facts.unknown["transport"] = malformed_unknown(exc, OP_ACCOUNTS)
    if needs.wants("encryption"):
        try:
            resolved = keys.account_encryption(facts, props)
        except Exception as exc:
            resolved = keys.unresolved(malformed_unknown(exc, OP_ACCOUNTS).reason, UnknownCode.ERROR)
        facts.encryption = resolved.encryption
        facts.unknown.update(resolved.unknown)
        facts.evidence.extend(resolved.evidence)
    return facts


def account_location(
    catalog: ZoneCatalog, facts: AccountFacts, raw: dict[str, Any], props: dict[str, Any]
) -> None:
    """`facts.location` from the entry's location, SKU and secondary (unknowns into `facts.unknown`)."""
    location_raw = raw.get("location")
    if not location_raw:
        facts.unknown["location"] = Unknown(
            code=UnknownCode.ERROR,
            reason=f"MissingLocation: the account has no location ({OP_ACCOUNTS})",
        )
        return
    if not isinstance(location_raw, str):
        raise MalformedAnswer(f"location is {type(location_raw).__name__}")
    primary = location_raw.lower().replace(" ", "")
    sku_raw = raw.get("sku")
    sku_name = sku_raw.get("name") if isinstance(sku_raw, dict) else None
    sku = sku_name if isinstance(sku_name, str) else ""
    regions = [primary]
    replicas: list[Replica] = []
    # In every case below the primary is known to hold the data, so `regions` keeps it and the
    # unknown is partial ("members"): a policy can still fail on a known region outside its zone.
    if not sku:
        facts.unknown["location.regions"] = Unknown(
            code=UnknownCode.ERROR,
            reason=f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS} (no sku.name, so "
            f"the replication and its regions are unknown) ({OP_ACCOUNTS})",
            partial="members",
        )
    elif is_geo_redundant(catalog, sku):
        secondary_raw = props.get("secondaryLocation")
        endpoints = props.get("secondaryEndpoints")
        target = endpoints.get("blob") if isinstance(endpoints, dict) else None
        if secondary_raw is not None and not isinstance(secondary_raw, str):
            replicas.append(
                Replica(region=None, kind="geo-secondary", target=target if isinstance(target, str) else None)
            )
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS} (secondaryLocation "
                f"is {type(secondary_raw).__name__}) ({OP_ACCOUNTS})",
                partial="members",
            )
        else:
            secondary = (
                secondary_raw.lower().replace(" ", "") if secondary_raw else paired_region(catalog, primary)
            )
            replicas.append(
                Replica(
                    region=secondary,
                    kind="geo-secondary",
                    target=target if isinstance(target, str) else None,
                )
            )
            if secondary is None:
                facts.unknown["location.regions"] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"NoPairedRegion: SKU {sku} keeps a copy in the paired region, but ARM "
                    f"returned no secondaryLocation and the zone catalog has no pair for '{primary}' "
                    f"({OP_ACCOUNTS})",
                    partial="members",
                )
            elif secondary != primary:
                regions.append(secondary)
    elif sku.lower() not in {s.lower() for s in catalog.section("azure", AzureCatalog).local_skus}:
        facts.unknown["location.regions"] = Unknown(
            code=UnknownCode.NOT_SUPPORTED,
            reason=f"UnknownSku: SKU '{sku}' is in neither the geo-redundant nor the local SKU list "
            f"of the zone catalog ({OP_ACCOUNTS})",
            partial="members",
        )
    facts.location = Location(
        raw=str(location_raw), type="region", primary=primary, regions=regions, replicas=replicas
    )


def account_transport(facts: AccountFacts, props: dict[str, Any], listed_at: datetime) -> None:
    """`facts.transport` from supportsHttpsTrafficOnly and minimumTlsVersion (else the TLS floor)."""
    https_only = props.get("supportsHttpsTrafficOnly")
    transport = Transport(
        plaintext_refused=None, plaintext_refused_by=None, min_tls_version=None, min_tls_enforced_by=None
    )
    if isinstance(https_only, bool):
        transport.plaintext_refused = https_only
        transport.plaintext_refused_by = "account:supportsHttpsTrafficOnly" if https_only else None
    else:
        facts.unknown["transport.plaintext_refused"] = Unknown(
            code=UnknownCode.ERROR,
            reason=f"MissingSetting: ARM returned no supportsHttpsTrafficOnly ({OP_ACCOUNTS})",
        )
    minimum = props.get("minimumTlsVersion")
    if minimum:
        transport.min_tls_version = str(minimum)
        transport.min_tls_enforced_by = "account:minimumTlsVersion"
    elif TLS_FLOOR.since is not None and listed_at.date() >= TLS_FLOOR.since:
        transport.min_tls_version = TLS_FLOOR.version
        transport.min_tls_enforced_by = "provider"
        transport.provider_floor = TLS_FLOOR
    else:
        facts.unknown["transport.min_tls_version"] = Unknown(
            code=UnknownCode.ERROR,
            reason=f"MissingSetting: ARM returned no minimumTlsVersion ({OP_ACCOUNTS})",
        )
    facts.transport = transport
