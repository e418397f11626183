"""The Azure source: its section of auditor.yaml, one unit per subscription, its section of the
zone catalog, its registration.

Importing this module imports no Azure SDK: the scanner (`auditor.scan.azure`) is named, not imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import ProviderCatalog, ZoneCatalog
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


class AzureCatalog(ProviderCatalog):
    """The `azure:` section of the zone catalog: regions with their pairs, and the redundancy SKUs."""

    geo_redundant_skus: list[str] = Field(default_factory=list)
    local_skus: list[str] = Field(default_factory=list)


SOURCE = Source(
    name="azure",
    label="Azure",
    section=AzureCloud,
    scan="auditor.scan.azure:scan_section",
    command="auditor.scan.azure:command",
    order=30,
    catalog=AzureCatalog,
)


def paired_region(catalog: ZoneCatalog, region: str) -> str | None:
    """The paired (geo-secondary) region of an Azure region, or None if it has none."""
    found = catalog.section("azure", AzureCatalog).regions.get(region.lower())
    return found.pair if found else None


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
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": "storage:StorageAccounts.List",
        "permissions": ("Microsoft.Storage/storageAccounts/read",),
        "always": True,
        "when": "once per page of storage accounts per subscription; the entry carries location, "
        "replication, TLS, HTTPS-only, public access and account encryption",
    },
    {
        "operation": "blob:ListContainers",
        "permissions": (CONTAINERS_READ,),
        "always": True,
        "when": "once per page of containers per account on the blob data plane (token credential)",
    },
    {
        "operation": "storage:BlobContainers.List",
        "permissions": (CONTAINERS_READ,),
        "always": True,
        "when": "when the data plane was not tried or failed (firewall, private endpoint, no key)",
    },
    {
        "operation": "storage:BlobContainers.Get",
        "permissions": (CONTAINERS_READ,),
        "feeds": ("tags",),
        "when": "per container after an ARM listing (ARM's list leaves `metadata` out)",
    },
    {
        "operation": "storage:EncryptionScopes.List",
        "permissions": ("Microsoft.Storage/storageAccounts/encryptionScopes/read",),
        "feeds": (*ENCRYPTION_KEY_LEAVES, "encryption.key_location"),
        "when": "once per account",
    },
    {
        "operation": "resources:Resources.List",
        "permissions": (
            "Microsoft.KeyVault/managedHSMs/read",
            "Microsoft.KeyVault/vaults/read",
            "Microsoft.Resources/subscriptions/resources/read",
        ),
        "feeds": ("encryption.key_location",),
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
