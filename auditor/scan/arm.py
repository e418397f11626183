"""ARM template scanner: Azure storage accounts and blob containers as a template declares them.

One `StorageResource` per declared blob container (kind "container"), and one of kind "account"
for an account that declares none, exactly as the live Azure scan records them (provider
"azure", origin "arm"). Location, geo-secondary (the zone catalog's pair), TLS, HTTPS-only,
encryption and tags come from the template; a property it does not declare takes the default
documented for its `apiVersion` (`DEFAULTS`, with the source) or is unknown. Every record's
evidence points at the resource's line in the template. See docs/scanners/arm.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import click

from auditor.cli_options import SCAN_EXIT_CODES
from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Provider,
    Replica,
    SourceLocation,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.arm_expressions import Literal, Unresolved, is_expression, parse_expression
from auditor.scan.arm_source import ArmOptions, ArmSection
from auditor.scan.arm_template import (
    BLOB_SERVICE,
    CONTAINER,
    DEPLOYMENT,
    ENCRYPTION_SCOPE,
    KEY_VAULTS,
    STORAGE_ACCOUNT,
    Declared,
    Segment,
    Template,
    canonical,
    load_parameters,
    load_template,
    reference_targets,
    resource_id_target,
)
from auditor.scan.azure_source import AzureCatalog, is_geo_redundant, paired_region
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import RetrySettings, now
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.section import section_options

CALL = "arm:template"
DEFAULT_CALL = "arm:default"
GROUPS = ["location", "encryption", "transport", "access", "tags"]
KEY_LEAVES = ("scheme", "key_management", "key_id", "key_location")
ACCOUNT_KEY_SCOPE = "$account-encryption-key"
RESPONSE_LIMIT = 8192  # bytes of a resource's JSON kept whole in its evidence
RESPONSE_HEAD = 2048

_SPEC = (
    "https://github.com/Azure/azure-rest-api-specs/blob/main/specification/storage/resource-manager/"
    "Microsoft.Storage/stable/2023-05-01/storage.json"
)
_ENCRYPTION_DOC = "https://learn.microsoft.com/azure/storage/common/storage-service-encryption"


@dataclass(frozen=True)
class DocumentedDefault:
    """The value a storage account gets for a property the template leaves out, and where that is written."""

    value: Any
    since: str  # the first apiVersion the default is established for (YYYY-MM-DD)
    documented: str  # the words of the source
    source: str


# Read in azure-rest-api-specs, StorageAccountPropertiesCreateParameters and Encryption, in the
# 2023-01-01 and 2023-05-01 storage.json files. Before `since` no default is established here:
# the property is then unknown (not_supported) when the template leaves it out.
DEFAULTS: dict[str, DocumentedDefault] = {
    "supportsHttpsTrafficOnly": DocumentedDefault(
        True, "2019-04-01", "The default value is true since API version 2019-04-01.", _SPEC
    ),
    "minimumTlsVersion": DocumentedDefault(
        "TLS1_0", "2023-01-01", "The default interpretation is TLS 1.0 for this property.", _SPEC
    ),
    "allowBlobPublicAccess": DocumentedDefault(
        False, "2023-01-01", "The default interpretation is false for this property.", _SPEC
    ),
    "encryption.keySource": DocumentedDefault(
        "Microsoft.Storage",
        "2015-06-15",
        'Encryption.keySource "default": "Microsoft.Storage"; every account is encrypted with AES-256 '
        "and Microsoft-managed keys unless a customer-managed key is set.",
        _ENCRYPTION_DOC,
    ),
}


def _get(mapping: Any, key: str) -> tuple[bool, Any]:
    """Case-insensitive property lookup (ARM property names are case-insensitive)."""
    if not isinstance(mapping, dict):
        return False, None
    if key in mapping:
        return True, mapping[key]
    folded = key.casefold()
    for name, value in mapping.items():
        if isinstance(name, str) and name.casefold() == folded:
            return True, value
    return False, None


def _region(value: str) -> str:
    return value.lower().replace(" ", "")


def _bounded_response(body: dict[str, Any]) -> Any:
    shown = {k: v for k, v in body.items() if k != "resources"}
    text = json.dumps(shown, separators=(",", ":"), default=str)
    if len(text.encode()) <= RESPONSE_LIMIT:
        return shown
    return {"bytes": len(text.encode()), "head": text[:RESPONSE_HEAD], "head_truncated": True}


@dataclass
class Facts:
    """What a template says about one storage account (shared by its containers)."""

    decl: Declared | None
    name: str
    location: Location | None = None
    encryption: Encryption | None = None
    transport: Transport | None = None
    allow_public: bool | None = None
    tags: dict[str, str] | None = field(default_factory=dict)
    unknown: dict[str, Unknown] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)


class TemplateReader:
    """Turns one template's storage declarations into inventory records."""

    def __init__(self, template: Template, catalog: ZoneCatalog, account: str, at: datetime) -> None:
        self.template = template
        self.catalog = catalog
        self.account = account
        self.at = at
        live = [d for d in template.resources if d.condition is not False]
        self.accounts = [d for d in live if d.kind == STORAGE_ACCOUNT]
        self.vaults = [d for d in live if d.kind in KEY_VAULTS]
        self.containers = [d for d in live if d.kind == CONTAINER and not d.existing]
        self.scopes = [d for d in live if d.kind == ENCRYPTION_SCOPE and not d.existing]
        self.by_symbol = {d.symbolic: d for d in live if d.symbolic}
        self.deployments = [d for d in live if d.kind == DEPLOYMENT]

    # --- helpers ---------------------------------------------------------------------------------

    def evidence(self, decl: Declared, attributes: list[str]) -> Evidence:
        return Evidence(
            call=CALL,
            at=self.at,
            attributes=attributes,
            request={"resource": f"{decl.type}/{decl.raw_name}"},
            response=_bounded_response(decl.body),
            location=SourceLocation(file=decl.file, line=decl.line, address=decl.address),
        )

    def unknown(self, decl: Declared, path: str, value: Unresolved, *, partial: bool = False) -> Unknown:
        where = decl.where(path.split(".", 1)[0])
        return Unknown(
            code=value.code,
            reason=f"{path}: {value.reason} ({where})",
            partial="members" if partial else None,
        )

    def malformed(self, decl: Declared, path: str, value: Any, expected: str) -> Unknown:
        return Unknown(
            code=UnknownCode.ERROR,
            reason=f"{path} is a {type(value).__name__}, not {expected} "
            f"({decl.where(path.split('.', 1)[0])})",
        )

    def default(self, decl: Declared, facts: Facts, prop: str, attribute: str) -> DocumentedDefault | None:
        """The documented default of `prop` for the resource's apiVersion (with its evidence), or None
        after recording the attribute unknown (not_supported) when none is established."""
        api = str(decl.body.get("apiVersion") or "")
        documented = DEFAULTS[prop]
        if api[:10] >= documented.since:
            facts.evidence.append(
                Evidence(
                    call=DEFAULT_CALL,
                    at=self.at,
                    attributes=[attribute],
                    request={"resource": f"{decl.type}/{decl.raw_name}", "property": prop, "apiVersion": api},
                    response={
                        "value": documented.value,
                        "documented": documented.documented,
                        "source": documented.source,
                    },
                    location=SourceLocation(file=decl.file, line=decl.line, address=decl.address),
                )
            )
            return documented
        facts.unknown[attribute] = Unknown(
            code=UnknownCode.NOT_SUPPORTED,
            reason=f"properties.{prop} is not declared and no default is established for apiVersion "
            f"'{api}' (documented from {documented.since}: {documented.source}) ({decl.where()})",
        )
        return None

    # --- accounts --------------------------------------------------------------------------------

    def account_facts(self, decl: Declared) -> Facts:
        facts = Facts(decl=decl, name=decl.last_name())
        facts.evidence.append(self.evidence(decl, list(GROUPS)))
        body = decl.body
        props = self.template.evaluate(body.get("properties", {}), body.line_of("properties"))
        if isinstance(props, Unresolved):
            for group in ("location", "encryption", "transport", "access"):
                facts.unknown[group] = self.unknown(decl, "properties", props)
            props = {}
        elif not isinstance(props, dict):
            raise InputError(decl.where("properties"), "'properties' is not a JSON object")
        self._location(decl, facts)
        self._transport(decl, facts, props)
        self._encryption(decl, facts, props)
        self._access(decl, facts, props)
        tags = self.template.evaluate(body.get("tags", {}), body.line_of("tags"))
        facts.tags = self._tags(decl, facts, "tags", tags)
        return facts

    def _tags(self, decl: Declared, facts: Facts, path: str, tags: Any) -> dict[str, str] | None:
        if isinstance(tags, Unresolved):
            facts.unknown["tags"] = self.unknown(decl, path, tags)
            return None
        if not isinstance(tags, dict):
            facts.unknown["tags"] = self.malformed(decl, path, tags, "an object")
            return None
        unresolved = next((v for v in tags.values() if isinstance(v, Unresolved)), None)
        if unresolved is not None:
            facts.unknown["tags"] = self.unknown(decl, path, unresolved)
            return None
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in tags.items()}

    def _location(self, decl: Declared, facts: Facts) -> None:
        body = decl.body
        raw = self.template.evaluate(body.get("location"), body.line_of("location"))
        if raw is None:
            facts.unknown["location"] = Unknown(
                code=UnknownCode.ERROR, reason=f"the account declares no location ({decl.where()})"
            )
            return
        if isinstance(raw, Unresolved):
            facts.unknown["location"] = self.unknown(decl, "location", raw)
            return
        if not isinstance(raw, str):
            facts.unknown["location"] = self.malformed(decl, "location", raw, "text")
            return
        primary = _region(raw)
        regions, replicas = [primary], []
        sku = self.template.evaluate(body.get("sku"), body.line_of("sku"))
        found, sku_name = _get(sku, "name")
        if isinstance(sku, Unresolved) or isinstance(sku_name, Unresolved):
            why = sku if isinstance(sku, Unresolved) else sku_name
            assert isinstance(why, Unresolved)
            facts.unknown["location.regions"] = self.unknown(decl, "sku.name", why, partial=True)
        elif not found or not isinstance(sku_name, str):
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"the account declares no sku.name: its replication is unknown ({decl.where('sku')})",
                partial="members",
            )
        elif is_geo_redundant(self.catalog, sku_name):
            secondary = paired_region(self.catalog, primary)
            replicas.append(Replica(region=secondary, kind="geo-secondary", target=None))
            if secondary is None:
                facts.unknown["location.regions"] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"NoPairedRegion: SKU {sku_name} keeps a copy in the paired region, but the zone "
                    f"catalog has no pair for '{primary}' ({decl.where('sku')})",
                    partial="members",
                )
            elif secondary != primary:
                regions.append(secondary)
        elif sku_name.lower() not in {
            s.lower() for s in self.catalog.section("azure", AzureCatalog).local_skus
        }:
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"UnknownSku: SKU '{sku_name}' is in neither the geo-redundant nor the local SKU "
                f"list of the zone catalog ({decl.where('sku')})",
                partial="members",
            )
        facts.location = Location(raw=raw, type="region", primary=primary, regions=regions, replicas=replicas)

    def _transport(self, decl: Declared, facts: Facts, props: dict[str, Any]) -> None:
        transport = Transport(
            plaintext_refused=None, plaintext_refused_by=None, min_tls_version=None, min_tls_enforced_by=None
        )
        found, https = _get(props, "supportsHttpsTrafficOnly")
        if not found and "transport" not in facts.unknown:
            documented = self.default(decl, facts, "supportsHttpsTrafficOnly", "transport.plaintext_refused")
            if documented is not None:
                transport.plaintext_refused = bool(documented.value)
                transport.plaintext_refused_by = (
                    f"default:supportsHttpsTrafficOnly (apiVersion since {documented.since})"
                )
        elif isinstance(https, Unresolved):
            facts.unknown["transport.plaintext_refused"] = self.unknown(
                decl, "properties.supportsHttpsTrafficOnly", https
            )
        elif isinstance(https, bool):
            transport.plaintext_refused = https
            transport.plaintext_refused_by = "account:supportsHttpsTrafficOnly" if https else None
        elif found:
            facts.unknown["transport.plaintext_refused"] = self.malformed(
                decl, "properties.supportsHttpsTrafficOnly", https, "a bool"
            )
        found, tls = _get(props, "minimumTlsVersion")
        if not found and "transport" not in facts.unknown:
            documented = self.default(decl, facts, "minimumTlsVersion", "transport.min_tls_version")
            if documented is not None:
                transport.min_tls_version = str(documented.value)
                transport.min_tls_enforced_by = "default:minimumTlsVersion"
        elif isinstance(tls, Unresolved):
            facts.unknown["transport.min_tls_version"] = self.unknown(
                decl, "properties.minimumTlsVersion", tls
            )
        elif isinstance(tls, str) and tls:
            transport.min_tls_version = tls
            transport.min_tls_enforced_by = "account:minimumTlsVersion"
        elif found:
            facts.unknown["transport.min_tls_version"] = self.malformed(
                decl, "properties.minimumTlsVersion", tls, "text"
            )
        if "transport" not in facts.unknown:
            facts.transport = transport

    def _access(self, decl: Declared, facts: Facts, props: dict[str, Any]) -> None:
        if "access" in facts.unknown:
            return
        found, allow = _get(props, "allowBlobPublicAccess")
        if not found:
            documented = self.default(decl, facts, "allowBlobPublicAccess", "access.public_access_blocked")
            facts.allow_public = bool(documented.value) if documented is not None else None
        elif isinstance(allow, Unresolved):
            facts.unknown["access.public_access_blocked"] = self.unknown(
                decl, "properties.allowBlobPublicAccess", allow
            )
        elif isinstance(allow, bool):
            facts.allow_public = allow
        else:
            facts.unknown["access.public_access_blocked"] = self.malformed(
                decl, "properties.allowBlobPublicAccess", allow, "a bool"
            )

    # --- encryption ------------------------------------------------------------------------------

    @staticmethod
    def microsoft_managed(default: DocumentedDefault | None = None) -> Encryption:
        return Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="microsoft-managed",
            key_management="provider-managed",
            key_id=None,
            key_location=None,
            provider_default=default is not None,
            source=default.source if default is not None else None,
        )

    def unresolved_keys(self, facts: Facts, unknown: Unknown) -> Encryption:
        # Azure Storage encrypts every account with AES-256 and it cannot be turned off:
        # https://learn.microsoft.com/azure/storage/common/storage-service-encryption
        facts.unknown.update({f"encryption.{leaf}": unknown for leaf in KEY_LEAVES})
        return Encryption(
            enabled=True, algorithm="AES256", scheme=None, key_management=None, key_id=None, key_location=None
        )

    def _encryption(self, decl: Declared, facts: Facts, props: dict[str, Any]) -> None:
        if "encryption" in facts.unknown:
            return
        found, encryption = _get(props, "encryption")
        if isinstance(encryption, Unresolved):
            facts.encryption = self.unresolved_keys(
                facts, self.unknown(decl, "properties.encryption", encryption)
            )
            return
        has_source, source = _get(encryption, "keySource")
        if not found or not has_source:
            default = self.default(decl, facts, "encryption.keySource", "encryption")
            facts.encryption = self.microsoft_managed(default)
            return
        if isinstance(source, Unresolved):
            facts.encryption = self.unresolved_keys(
                facts, self.unknown(decl, "properties.encryption.keySource", source)
            )
        elif str(source).casefold() == "microsoft.storage":
            facts.encryption = self.microsoft_managed()
        elif str(source).casefold() == "microsoft.keyvault":
            _, vault = _get(encryption, "keyvaultproperties")
            _, raw_props = _get(decl.body.get("properties"), "encryption")
            _, raw_vault = _get(raw_props, "keyvaultproperties")
            _, raw_uri = _get(raw_vault, "keyvaulturi")
            facts.encryption = self.key_vault(
                decl, facts, vault, raw_uri, "keyvaulturi", "keyname", "keyversion"
            )
        else:
            facts.encryption = self.unresolved_keys(
                facts,
                Unknown(
                    code=UnknownCode.NOT_SUPPORTED,
                    reason=f"UnknownKeySource: encryption.keySource '{source}' ({decl.where('properties')})",
                ),
            )

    def key_vault(
        self,
        decl: Declared,
        facts: Facts,
        vault: Any,
        raw_uri: Any,
        uri_key: str,
        name_key: str,
        version_key: str,
    ) -> Encryption:
        """A customer-managed key: its id from the vault properties, its region from the vault's."""
        _, uri = _get(vault, uri_key)
        _, name = _get(vault, name_key) if name_key else (True, None)
        _, version = _get(vault, version_key) if version_key else (True, None)
        key_id: str | None = None
        unresolved = next((v for v in (uri, name, version) if isinstance(v, Unresolved)), None)
        if unresolved is not None:
            facts.unknown["encryption.key_id"] = self.unknown(decl, "properties.encryption", unresolved)
        elif isinstance(uri, str) and uri and (name is None or isinstance(name, str)):
            key_id = uri.rstrip("/") + (f"/keys/{name}" if name else "") + (f"/{version}" if version else "")
        else:
            facts.unknown["encryption.key_id"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"the customer-managed key names no Key Vault key ({decl.where('properties')})",
            )
        location = self.vault_location(decl, facts, uri, raw_uri)
        return Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="customer-managed-key-vault",
            key_management="customer-managed",
            key_id=key_id,
            key_location=location,
        )

    def vault_location(self, decl: Declared, facts: Facts, uri: Any, raw_uri: Any) -> str | None:
        vault: Declared | None = None
        if isinstance(uri, str) and uri:
            host = (urlparse(uri).hostname or "").lower()
            vault = self._vault_named(Segment(host.split(".", 1)[0], None))
        elif isinstance(raw_uri, str) and is_expression(raw_uri):
            for target in reference_targets(parse_expression(raw_uri)):
                vault = self._vault_referenced(target)
                if vault is not None:
                    break
        if vault is None:
            facts.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"the key's vault is not declared in this template: its region is not known "
                f"({decl.where('properties')})",
            )
            return None
        facts.evidence.append(self.evidence(vault, ["encryption.key_location"]))
        location = self.template.evaluate(vault.body.get("location"), vault.body.line_of("location"))
        if isinstance(location, str) and location:
            return _region(location)
        facts.unknown["encryption.key_location"] = (
            self.unknown(vault, "location", location)
            if isinstance(location, Unresolved)
            else self.malformed(vault, "location", location, "text")
        )
        return None

    def _vault_named(self, segment: Segment) -> Declared | None:
        return next((v for v in self.vaults if v.segments and _same(v.segments[0], segment)), None)

    def _vault_referenced(self, target: Any) -> Declared | None:
        if isinstance(target, Literal) and isinstance(target.value, str):
            found = self.by_symbol.get(target.value)
            return found if found is not None and found.kind in KEY_VAULTS else None
        pointed = resource_id_target(target)
        if pointed is None or pointed[0] not in KEY_VAULTS or not pointed[1]:
            return None
        return self._vault_named(self._segment(pointed[1][0]))

    def _segment(self, node: Any) -> Segment:
        value = self.template.scope.evaluate(node, 0)
        return Segment(value if isinstance(value, str | Unresolved) else json.dumps(value), canonical(node))

    # --- containers ------------------------------------------------------------------------------

    def account_of(self, decl: Declared) -> Declared | None:
        """The storage account a child resource belongs to: by nesting, by name, else by dependsOn."""
        parent = decl.parent
        while parent is not None:
            if parent.kind == STORAGE_ACCOUNT:
                return parent
            parent = parent.parent
        if decl.segments:
            found = next(
                (a for a in self.accounts if a.segments and _same(a.segments[0], decl.segments[0])), None
            )
            if found is not None:
                return found
        depends = decl.body.get("dependsOn")
        for entry in depends if isinstance(depends, list) else []:
            if not isinstance(entry, str):
                continue
            if not is_expression(entry):
                target = self.by_symbol.get(entry)
                if target is not None and target.kind == STORAGE_ACCOUNT:
                    return target
                if target is not None and target.kind == BLOB_SERVICE and target is not decl:
                    return self.account_of(target)
                continue
            pointed = resource_id_target(parse_expression(entry))
            if pointed is not None and pointed[0].startswith(STORAGE_ACCOUNT) and pointed[1]:
                segment = self._segment(pointed[1][0])
                found = next((a for a in self.accounts if a.segments and _same(a.segments[0], segment)), None)
                if found is not None:
                    return found
        return None

    def container_encryption(
        self, facts: Facts, account: Declared, container: Declared, props: dict[str, Any]
    ) -> Encryption | None:
        """The container's default encryption scope's encryption, else the account's (see azure_keys).

        `facts` is the container's own: it starts with the account's encryption and unknowns, and
        receives the scopes' unknowns and evidence.
        """
        if facts.encryption is None:
            return None
        _, default_scope = _get(props, "defaultEncryptionScope")
        _, deny = _get(props, "denyEncryptionScopeOverride")
        scopes = {s.last_name(): s for s in self.scopes if self.account_of(s) is account}
        chosen = facts.encryption
        if isinstance(default_scope, Unresolved):
            return self.unresolved_keys(
                facts, self.unknown(container, "properties.defaultEncryptionScope", default_scope)
            )
        if isinstance(default_scope, str) and default_scope and default_scope != ACCOUNT_KEY_SCOPE:
            scope = scopes.get(default_scope)
            if scope is None:
                return self.unresolved_keys(
                    facts,
                    Unknown(
                        code=UnknownCode.NOT_SUPPORTED,
                        reason=f"default encryption scope '{default_scope}' is not declared in this template "
                        f"({container.where('properties')})",
                    ),
                )
            chosen = self.scope_encryption(facts, scope)
        if deny is not True and chosen.key_management == "customer-managed":
            # Without denyEncryptionScopeOverride a writer may pick any enabled scope of the account.
            for scope in scopes.values():
                other = self.scope_encryption(Facts(decl=None, name=""), scope)
                if other.key_management == "provider-managed":
                    facts.evidence.append(self.evidence(scope, ["encryption"]))
                    return other
        return chosen

    def scope_encryption(self, facts: Facts, scope: Declared) -> Encryption:
        facts.evidence.append(self.evidence(scope, ["encryption"]))
        props = self.template.evaluate(scope.body.get("properties", {}), scope.body.line_of("properties"))
        _, source = _get(props, "source")
        if isinstance(source, str) and source.casefold() == "microsoft.keyvault":
            _, vault = _get(props, "keyVaultProperties")
            _, raw_vault = _get(scope.body.get("properties"), "keyVaultProperties")
            _, raw_uri = _get(raw_vault, "keyUri")
            return self.key_vault(scope, facts, vault, raw_uri, "keyUri", "", "")
        if source is None or (isinstance(source, str) and source.casefold() == "microsoft.storage"):
            return self.microsoft_managed()
        reason = (
            source
            if isinstance(source, Unresolved)
            else Unresolved(UnknownCode.NOT_SUPPORTED, f"source '{source}'")
        )
        return self.unresolved_keys(facts, self.unknown(scope, "properties.source", reason))

    # --- records ---------------------------------------------------------------------------------

    def records(self) -> list[InventoryRecord]:
        """Every container (or account without containers) the template declares, and its gaps."""
        out: list[InventoryRecord] = []
        by_account: dict[int, list[Declared]] = {}
        orphans: list[Declared] = []
        for container in self.containers:
            account = self.account_of(container)
            if account is None or account.existing:
                orphans.append(container)
            else:
                by_account.setdefault(id(account), []).append(container)
        for account in self.accounts:
            if account.existing:
                continue
            facts = self.account_facts(account)
            containers = by_account.get(id(account), [])
            if not containers:
                out.append(self.account_record(account, facts))
            out.extend(self.container_record(facts, account, c) for c in containers)
        for container in orphans:
            account = self.account_of(container)
            out.append(self.container_record(self.undeclared_account(container, account), account, container))
        for deployment in self.deployments:
            out.append(
                CoverageGap(
                    provider="azure",
                    account=self.account,
                    scope=f"deployment:{deployment.address}",
                    code=UnknownCode.NOT_SUPPORTED,
                    reason=f"nested or linked deployment {deployment.address} is not audited: scan its "
                    f"template itself ({deployment.where()})",
                    at=self.at,
                )
            )
        return out

    def undeclared_account(self, container: Declared, account: Declared | None) -> Facts:
        name = container.segments[0].value if container.segments else None
        why = (
            "is declared 'existing': its settings are not in this template"
            if account is not None
            else "is not declared in this template"
        )
        unknown = Unknown(
            code=UnknownCode.NOT_SUPPORTED,
            reason=f"the container's storage account {why} ({container.where()})",
        )
        facts = Facts(decl=account, name=name if isinstance(name, str) else container.raw_name.split("/")[0])
        facts.unknown.update(
            {group: unknown for group in ("location", "encryption", "transport", "access", "tags")}
        )
        facts.tags = None
        return facts

    def account_record(self, decl: Declared, facts: Facts) -> StorageResource:
        return StorageResource(
            provider="azure",
            kind="account",
            account=self.account,
            storage_account=facts.name,
            name=facts.name,
            id=f"{decl.file}#{decl.address}",
            scanned_at=self.at,
            origin="arm",
            location=facts.location,
            encryption=facts.encryption,
            transport=facts.transport,
            access=self._access_group(facts, None, {"allowBlobPublicAccess": facts.allow_public}),
            tags=dict(facts.tags) if facts.tags is not None else None,
            unknown=dict(facts.unknown),
            evidence=list(facts.evidence),
        )

    def _access_group(self, facts: Facts, public: Any, detail: dict[str, Any]) -> Access | None:
        if "access" in facts.unknown:
            return None
        return Access(public_access_blocked=facts.allow_public is False, detail=detail)

    def container_record(self, facts: Facts, account: Declared | None, decl: Declared) -> StorageResource:
        own = Facts(decl=decl, name=decl.last_name(), encryption=facts.encryption)
        own.unknown.update({k: v for k, v in facts.unknown.items() if not k.startswith("encryption")})
        own.evidence = [*facts.evidence, self.evidence(decl, ["name", "tags", "access", "encryption"])]
        props = self.template.evaluate(decl.body.get("properties", {}), decl.body.line_of("properties"))
        if isinstance(props, Unresolved):
            own.unknown["tags"] = self.unknown(decl, "properties", props)
            props = {}
        elif not isinstance(props, dict):
            raise InputError(decl.where("properties"), "'properties' is not a JSON object")
        tags: dict[str, str] | None = None
        if facts.tags is not None and "tags" not in own.unknown:
            found, metadata = _get(props, "metadata")
            merged = self._tags(decl, own, "properties.metadata", metadata if found else {})
            tags = {**facts.tags, **merged} if merged is not None else None
        encryption = (
            self.container_encryption(own, account, decl, props) if account is not None else facts.encryption
        )
        if encryption is facts.encryption:  # the account's key: its unknowns are the container's
            own.unknown.update({k: v for k, v in facts.unknown.items() if k.startswith("encryption")})
        _, public = _get(props, "publicAccess")
        return StorageResource(
            provider="azure",
            kind="container",
            account=self.account,
            storage_account=facts.name,
            name=decl.last_name(),
            id=f"{decl.file}#{decl.address}",
            scanned_at=self.at,
            origin="arm",
            location=facts.location.model_copy(deep=True) if facts.location else None,
            encryption=encryption.model_copy() if encryption else None,
            transport=facts.transport.model_copy() if facts.transport else None,
            access=self._access_group(
                facts,
                public,
                {
                    "allowBlobPublicAccess": facts.allow_public,
                    "publicAccess": public if not isinstance(public, Unresolved) else None,
                },
            ),
            tags=tags,
            unknown=own.unknown,
            evidence=own.evidence,
        )


def _same(a: Segment, b: Segment) -> bool:
    """Whether two name segments name the same thing: equal values, or the same unknown source."""
    if isinstance(a.value, str) and isinstance(b.value, str):
        return a.value.casefold() == b.value.casefold()
    return (
        a.key is not None and a.key == b.key and not isinstance(a.value, str) and not isinstance(b.value, str)
    )


class ArmScanner(Scanner):
    """Reads ARM templates into inventory records; every file is read and checked before any is written."""

    provider: ClassVar[Provider] = "arm"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        *,
        templates: list[Path],
        parameters: Path | None = None,
        location: str | None = None,
        subscription: str | None = None,
        resource_group: str | None = None,
    ) -> None:
        super().__init__(needs, catalog, 1)
        supplied: dict[str, Any] = {}
        supplied_lines: dict[str, int] = {}
        if parameters is not None:
            supplied, supplied_lines = load_parameters(parameters)
        at = now()
        account = subscription or "unknown"
        loaded = [
            load_template(
                path,
                supplied,
                location=_region(location) if location else None,
                subscription=subscription,
                resource_group=resource_group,
            )
            for path in templates
        ]
        declared = {name.casefold() for t in loaded for name in t.scope.parameters}
        for name, line in supplied_lines.items():
            if name.casefold() not in declared:
                raise InputError(
                    f"{parameters}:{line}", f"parameter '{name}' is not declared by any template given"
                )
        self._records: list[InventoryRecord] = []
        for template in loaded:
            self.calls.add(CALL)
            self._records.extend(TemplateReader(template, catalog, account, at).records())

    def scan(self) -> Any:
        """Yield the records read (the templates were read when the scanner was made)."""
        yield from self._records


@click.command("arm", epilog=SCAN_EXIT_CODES)
@common_scan_options
@click.argument("templates", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--parameters",
    type=click.Path(path_type=Path),
    default=None,
    help='Deployment parameters file ({"parameters": {"x": {"value": ...}}}) or a plain JSON map.',
)
@click.option("--location", default=None, help="The resource group's location, for resourceGroup().location.")
@click.option("--subscription", default=None, help="Subscription id the records are attributed to.")
@click.option("--resource-group", default=None, help="Resource group name, for resourceGroup().name.")
def command(
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    templates: tuple[Path, ...],
    parameters: Path | None,
    location: str | None,
    subscription: str | None,
    resource_group: str | None,
    retry: RetrySettings,
) -> ScanSummary:
    """Read Azure storage accounts and blob containers declared in ARM templates into an inventory."""
    retry.refuse_unsupported("arm", ArmOptions.retry_used)
    section = ArmSection(
        templates=list(templates),
        parameters=parameters,
        location=location,
        subscription=subscription,
        resource_group=resource_group,
        options={"concurrency": concurrency},
    )
    return scan_section(section, list(policy_paths), output, progress)


def scan_section(
    section: ArmSection, policy_paths: list[Path], output: Path, progress: bool | None
) -> ScanSummary:
    """Read what `section` names into `output` (the command and audit units both run this)."""
    section_options(section, ArmOptions)
    needs, catalog = scanner_context(policy_paths)
    scanner = ArmScanner(
        needs,
        catalog,
        templates=list(section.templates),
        parameters=section.parameters,
        location=section.location,
        subscription=section.subscription,
        resource_group=section.resource_group,
    )
    return finish_scan(scanner, output, progress)
