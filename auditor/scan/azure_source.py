"""The Azure source: its section of auditor.yaml, one unit per subscription, its section of the
zone catalog, its registration.

Importing this module imports no Azure SDK: the scanner (`auditor.scan.azure`) is named, not imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import MemberSet, ProviderCatalog, ZoneCatalog
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection

if TYPE_CHECKING:
    from auditor.permissions import CallSpec, Grant


class AzureOptions(RetryScopedOptions):
    """`auditor scan azure` options a section may set under `options:` (besides the shared ones)."""

    # The shared retry/timeout settings the scanner honours (azure-core retries count attempts).
    retry_source: ClassVar[str] = "azure"
    retry_used: ClassVar[frozenset[str]] = frozenset(
        {"max_attempts", "timeout", "connect_timeout", "retry_backoff", "retry_after_max"}
    )

    container_page_size: int | None = Field(None, ge=1, le=5000)


class AzureCloud(SourceSection):
    """Azure: which subscriptions to scan, and the endpoints (sovereign clouds)."""

    scan_options_model: ClassVar[type[ScanOptions]] = AzureOptions
    file_fields: ClassVar[tuple[str, ...]] = ("ca_bundle",)

    subscriptions: list[str] = Field(min_length=1)
    arm_endpoint: str | None = None
    blob_endpoint_template: str | None = None
    ca_bundle: Path | None = None
    blob_credential: Literal["token", "shared-key", "none"] | None = None

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per subscription."""
        for subscription in dict.fromkeys(self.subscriptions):
            yield subscription, self.model_copy(update={"subscriptions": [subscription]})


class DataZone(MemberSet):
    """A Microsoft-specified data zone: the regions a DataZone* deployment may process in."""

    source: str


class AzureCatalog(ProviderCatalog):
    """The `azure:` section of the zone catalog: regions with their pairs, the redundancy SKUs, the
    Azure geographies and the Azure OpenAI data zones (each region in at most one of each)."""

    geo_redundant_skus: list[str] = Field(default_factory=list)
    local_skus: list[str] = Field(default_factory=list)
    geographies: dict[str, MemberSet] = Field(default_factory=dict)
    data_zones: dict[str, DataZone] = Field(default_factory=dict)

    def reference_errors(self) -> Iterator[str]:
        """Also: a geography or data zone member that is not a region, or a region in two of them."""
        yield from super().reference_errors()
        tables: dict[str, Mapping[str, MemberSet]] = {
            "geography": self.geographies,
            "data zone": self.data_zones,
        }
        for what, table in tables.items():
            owner: dict[str, str] = {}
            for name, member_set in table.items():
                for member in member_set.members:
                    if member not in self.regions:
                        yield f"{what} '{name}' names unknown region '{member}'"
                    elif member in owner:
                        yield f"region '{member}' is in {what} '{owner[member]}' and in '{name}'"
                    owner.setdefault(member, name)


SOURCE = Source(
    name="azure",
    label="Azure",
    section=AzureCloud,
    scan="auditor.scan.azure:scan_section",
    command="auditor.scan.azure:command",
    order=30,
    hashed_when_unset=True,
    catalog=AzureCatalog,
)


def paired_region(catalog: ZoneCatalog, region: str) -> str | None:
    """The paired (geo-secondary) region of an Azure region, or None if it has none."""
    found = catalog.section("azure", AzureCatalog).regions.get(region.lower())
    return found.pair if found else None


def geography_of(catalog: ZoneCatalog, region: str) -> tuple[str, list[str]] | None:
    """The Azure geography holding `region` and its member regions, or None if the catalog has none."""
    for name, geography in catalog.section("azure", AzureCatalog).geographies.items():
        if region.lower() in geography.members:
            return name, list(geography.members)
    return None


def data_zone_of(catalog: ZoneCatalog, region: str) -> tuple[str, DataZone] | None:
    """The Microsoft data zone holding `region`, or None where DataZone deployments have no zone."""
    for name, zone in catalog.section("azure", AzureCatalog).data_zones.items():
        if region.lower() in zone.members:
            return name, zone
    return None


def is_geo_redundant(catalog: ZoneCatalog, sku: str) -> bool:
    """Whether a storage account SKU replicates to the paired region."""
    return sku.lower() in {s.lower() for s in catalog.section("azure", AzureCatalog).geo_redundant_skus}


# --- the call table: every API call the scanner makes, what it feeds, the Azure RBAC actions -------
# The single source of `auditor permissions azure` and of the table in docs/scanners/azure.md.
# Actions: https://learn.microsoft.com/azure/role-based-access-control/permissions/storage and
# .../permissions/management-and-governance (Microsoft.Resources). Listing containers on the blob
# data plane with a token is authorized by the *action* .../blobServices/containers/read, as its ARM
# twin (https://learn.microsoft.com/rest/api/storageservices/list-containers2, "Authorization");
# with `--blob-credential shared-key` the account key is given to auditor (AUDITOR_AZURE_ACCOUNT_KEYS)
# and the scanner never calls listKeys, so no RBAC permission is involved.
CONTAINERS_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"
ENCRYPTION_KEY_LEAVES = ("encryption.scheme", "encryption.key_management", "encryption.key_id")
# The storage calls serve containers and the accounts recorded in their place; the Cognitive Services
# calls (https://learn.microsoft.com/azure/role-based-access-control/permissions/ai-machine-learning)
# serve AI accounts and their deployments: a scan makes only those of the kinds its policies target.
STORAGE = ("container", "account")
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": "storage:StorageAccounts.List",
        "permissions": ("Microsoft.Storage/storageAccounts/read",),
        "always": True,
        "kinds": STORAGE,
        "when": "once per page of storage accounts per subscription; the entry carries location, "
        "replication, TLS, HTTPS-only, public access and account encryption",
    },
    {
        "operation": "blob:ListContainers",
        "permissions": (CONTAINERS_READ,),
        "always": True,
        "kinds": STORAGE,
        "when": "once per page of containers per account on the blob data plane (token credential)",
    },
    {
        "operation": "storage:BlobContainers.List",
        "permissions": (CONTAINERS_READ,),
        "always": True,
        "kinds": STORAGE,
        "when": "when the data plane was not tried or failed (firewall, private endpoint, no key)",
    },
    {
        "operation": "storage:BlobContainers.Get",
        "permissions": (CONTAINERS_READ,),
        "feeds": ("tags",),
        "kinds": STORAGE,
        "when": "per container after an ARM listing (ARM's list leaves `metadata` out)",
    },
    {
        "operation": "storage:EncryptionScopes.List",
        "permissions": ("Microsoft.Storage/storageAccounts/encryptionScopes/read",),
        "feeds": (*ENCRYPTION_KEY_LEAVES, "encryption.key_location"),
        "kinds": STORAGE,
        "when": "once per account",
    },
    {
        "operation": "cognitiveservices:Accounts.List",
        "permissions": ("Microsoft.CognitiveServices/accounts/read",),
        "always": True,
        "kinds": ("ai-account", "ai-deployment"),
        "when": "once per page of Cognitive Services accounts per subscription; the entry of an OpenAI "
        "or AIServices account carries its location, encryption, network access and tags",
    },
    {
        "operation": "cognitiveservices:Deployments.List",
        "permissions": ("Microsoft.CognitiveServices/accounts/deployments/read",),
        "always": True,
        "kinds": ("ai-deployment",),
        "when": "once per page of model deployments per OpenAI or AIServices account: the SKU decides "
        "where requests are processed",
    },
    {
        "operation": "resources:Resources.List",
        "permissions": (
            "Microsoft.KeyVault/managedHSMs/read",
            "Microsoft.KeyVault/vaults/read",
            "Microsoft.Resources/subscriptions/resources/read",
        ),
        "feeds": ("encryption.key_location",),
        "kinds": (*STORAGE, "ai-account"),
        "when": "once per distinct Key Vault or Managed HSM: its location",
        "note": "ARM lists only the resources the caller may read, hence the vault read actions",
    },
)

ROLE_NAME = "auditor read"
_DESCRIPTION = "Read-only role for `auditor scan azure`, generated by `auditor permissions azure`."


def role_definition(grant: Grant) -> dict[str, Any]:
    """The custom role definition (the file `az role definition create --role-definition` reads)."""
    return {
        "Name": ROLE_NAME,
        "IsCustom": True,
        "Description": _DESCRIPTION,
        "Actions": grant.permissions(),
        "NotActions": [],
        "DataActions": [],
        "NotDataActions": [],
        "AssignableScopes": ["/subscriptions/SUBSCRIPTION_ID"],
    }


def _json(grant: Grant) -> str:
    return json.dumps(role_definition(grant), indent=2) + "\n"


def _terraform(grant: Grant) -> str:
    actions = json.dumps(grant.permissions(), indent=2).replace("\n", "\n    ")
    return f"""# {_DESCRIPTION}
# Define it at every subscription to scan (or at a management group above them) and assign it to
# the identity that runs auditor.

variable "scope" {{
  description = "Where the role is defined and assigned: /subscriptions/ID or a management group id."
  type        = string
}}

variable "principal_id" {{
  description = "Object id of the identity that runs auditor."
  type        = string
}}

resource "azurerm_role_definition" "auditor_read" {{
  name        = "{ROLE_NAME}"
  scope       = var.scope
  description = "{_DESCRIPTION}"

  permissions {{
    actions = {actions}
    not_actions = []
  }}

  assignable_scopes = [var.scope]
}}

resource "azurerm_role_assignment" "auditor_read" {{
  scope              = var.scope
  role_definition_id = azurerm_role_definition.auditor_read.role_definition_resource_id
  principal_id       = var.principal_id
}}
"""


PERMISSION_FORMATS = {"json": _json, "terraform": _terraform}
