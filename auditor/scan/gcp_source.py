"""The Google Cloud source: its section of auditor.yaml, one unit per project, its section of the
zone catalog, its registration.

Importing this module imports no Google SDK: the scanner (`auditor.scan.gcp`) is named, not imported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import MemberSet, ProviderCatalog, ZoneCatalog
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection
from auditor.strict import StrictModel

if TYPE_CHECKING:
    from auditor.permissions import CallSpec, Grant


class GcpOptions(RetryScopedOptions):
    """`auditor scan gcp` options a section may set under `options:` (the shared ones)."""

    # The shared retry/timeout settings the scanner honours (google-api-core retries by deadline).
    retry_source: ClassVar[str] = "gcp"
    retry_used: ClassVar[frozenset[str]] = frozenset(
        {"timeout", "connect_timeout", "retry_deadline", "retry_backoff"}
    )


class GcpCloud(SourceSection):
    """Google Cloud: which projects to scan, and the endpoint (Private Service Connect, emulator)."""

    scan_options_model: ClassVar[type[ScanOptions]] = GcpOptions
    file_fields: ClassVar[tuple[str, ...]] = ("tls_policy",)

    projects: list[str] = Field(min_length=1)
    api_endpoint: str | None = None
    tls_policy: Path | None = None

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit per project."""
        for project in dict.fromkeys(self.projects):
            yield project, self.model_copy(update={"projects": [project]})


class EligibleSet(StrictModel):
    """A configurable dual-region code and the regions its data locations may be chosen from."""

    eligible: list[str]
    note: str | None = None


class GcpCatalog(ProviderCatalog):
    """The `gcp:` section of the zone catalog: regions, GCS multi- and dual-regions, KMS locations."""

    # A code in several tables (KMS 'asia1' includes Seoul, GCS 'asia1' does not) is inside a
    # zone only if it is inside under every meaning.
    multi_location_tables: ClassVar[tuple[str, ...]] = ("multi_regions", "dual_regions", "kms_locations")

    multi_regions: dict[str, MemberSet] = Field(default_factory=dict)
    dual_regions: dict[str, MemberSet] = Field(default_factory=dict)
    configurable_dual_region_codes: dict[str, EligibleSet] = Field(default_factory=dict)
    kms_locations: dict[str, MemberSet] = Field(default_factory=dict)

    def reference_errors(self) -> Iterator[str]:
        yield from super().reference_errors()
        for code, eligible in self.configurable_dual_region_codes.items():
            for member in eligible.eligible:
                if member not in self.regions:
                    yield f"dual-region code '{code}' names unknown region '{member}'"


SOURCE = Source(
    name="gcp",
    label="Google Cloud",
    section=GcpCloud,
    scan="auditor.scan.gcp:scan_section",
    command="auditor.scan.gcp:command",
    order=20,
    catalog=GcpCatalog,
)


def bucket_regions(
    catalog: ZoneCatalog, location: str, location_type: str, data_locations: list[str] | None
) -> list[str]:
    """The regions a GCS bucket's data lives in, from location, locationType and dataLocations.

    The code alone is ambiguous ('EU' is a multi-region and a configurable dual-region code),
    so the type decides. Unknown codes come back as themselves: no zone contains them.
    """
    code = location.lower()
    kind = location_type.lower()
    section = catalog.section("gcp", GcpCatalog)
    if kind == "dual-region":
        if data_locations:
            return sorted({d.lower() for d in data_locations})
        predefined = section.dual_regions.get(code)
        return list(predefined.members) if predefined else [code]
    if kind == "multi-region":
        multi = section.multi_regions.get(code)
        return list(multi.members) if multi else [code]
    return [code]


# --- the call table: every API call the scanner makes, what it feeds, the IAM permissions it needs -
# The single source of `auditor permissions gcp` and of the table in docs/scanners/gcp.md. Both
# calls use projection=noAcl, which needs no ACL permission; the CMEK's location is read from the
# key's name, so no Cloud KMS call (and no cloudkms permission) is made. Permissions per method:
# https://cloud.google.com/storage/docs/access-control/iam-json (buckets.list, buckets.get).
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": "storage:buckets.list",
        "permissions": ("storage.buckets.list",),
        "always": True,
        "when": "once per page of up to 1,000 buckets per project; the listing carries every attribute",
    },
    {
        "operation": "storage:buckets.get",
        "permissions": ("storage.buckets.get",),
        "feeds": ("location", "encryption", "transport", "access", "tags"),
        "when": "only for a bucket the listing reports `unreachable`",
    },
)

CUSTOM_ROLE_ID = "auditorRead"
_DESCRIPTION = "Read-only role for `auditor scan gcp`, generated by `auditor permissions gcp`."


def custom_role(grant: Grant) -> dict[str, Any]:
    """The custom role (the file `gcloud iam roles create --file` reads)."""
    return {
        "title": "auditor read",
        "description": _DESCRIPTION,
        "stage": "GA",
        "includedPermissions": grant.permissions(),
    }


def _json(grant: Grant) -> str:
    return json.dumps(custom_role(grant), indent=2) + "\n"


def _terraform(grant: Grant) -> str:
    permissions = json.dumps(grant.permissions(), indent=2).replace("\n", "\n  ")
    return f"""# {_DESCRIPTION}
# Apply it in every project to scan (or define it once as an organization role), and bind it to the
# identity that runs auditor.

variable "project" {{
  description = "The project to scan."
  type        = string
}}

variable "member" {{
  description = "The identity that runs auditor, e.g. serviceAccount:auditor@PROJECT.iam.gserviceaccount.com."
  type        = string
}}

resource "google_project_iam_custom_role" "auditor_read" {{
  project     = var.project
  role_id     = "{CUSTOM_ROLE_ID}"
  title       = "auditor read"
  description = "{_DESCRIPTION}"
  permissions = {permissions}
}}

resource "google_project_iam_member" "auditor_read" {{
  project = var.project
  role    = google_project_iam_custom_role.auditor_read.id
  member  = var.member
}}
"""


PERMISSION_FORMATS = {"json": _json, "terraform": _terraform}
