"""The Google Cloud source: its section of auditor.yaml, one unit per project, its section of the
zone catalog, its registration.

Importing this module imports no Google SDK: the scanner (`auditor.scan.gcp`) is named, not imported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, Field, model_validator

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


# The APIs whose endpoint `--api-endpoint SERVICE=URL` (or `api_endpoints:`) may replace.
ApiService = Literal["storage", "orgpolicy", "aiplatform"]
API_SERVICES: tuple[str, ...] = get_args(ApiService)
_BASE_URL = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?(/[^\s?#@]*)?$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]*$")


def base_url(value: str) -> str:
    """`value` if it is a base URL (http(s)://host[:port][/path], no credentials, query or fragment)."""
    if not _BASE_URL.match(value):
        raise ValueError(
            f"{value!r} is not a base URL like https://host[:port][/path] (no credentials, query or fragment)"
        )
    return value.rstrip("/")


def vertex_location(value: str) -> str:
    """`value` if it is a Vertex AI location name (europe-west4, us-central1, global)."""
    if not _LOCATION.match(value):
        raise ValueError(f"{value!r} is not a Vertex AI location name such as europe-west4")
    return value


class GcpCloud(SourceSection):
    """Google Cloud: which projects to scan, other endpoints (Private Service Connect, emulators),
    the TLS policy file, and the Vertex AI locations."""

    scan_options_model: ClassVar[type[ScanOptions]] = GcpOptions
    file_fields: ClassVar[tuple[str, ...]] = ("tls_policy",)
    later_fields: ClassVar[frozenset[str]] = frozenset({"api_endpoints", "vertex_locations"})

    projects: list[str] = Field(min_length=1)
    api_endpoint: str | None = Field(default=None, description="The Cloud Storage endpoint (old form).")
    api_endpoints: dict[ApiService, Annotated[str, AfterValidator(base_url)]] = Field(
        default_factory=dict, description="Another base URL per API: storage, orgpolicy, aiplatform."
    )
    tls_policy: Path | None = None
    vertex_locations: list[Annotated[str, AfterValidator(vertex_location)]] | None = Field(
        default=None, description="The Vertex AI locations to list (default: every location the API lists)."
    )

    @model_validator(mode="after")
    def _one_storage_endpoint(self) -> GcpCloud:
        if self.api_endpoint is not None and "storage" in self.api_endpoints:
            raise ValueError("give the Cloud Storage endpoint once: api_endpoint or api_endpoints.storage")
        return self

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
    hashed_when_unset=True,
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
# bucket calls use projection=noAcl, which needs no ACL permission; the CMEK's location is read from
# the key's name, so no Cloud KMS call (and no cloudkms permission) is made. Permissions per method:
# https://cloud.google.com/storage/docs/access-control/iam-json (buckets.list, buckets.get),
# https://cloud.google.com/iam/docs/roles-permissions/orgpolicy (roles/orgpolicy.policyViewer) and
# https://cloud.google.com/iam/docs/roles-permissions/aiplatform.
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": "storage:buckets.list",
        "permissions": ("storage.buckets.list",),
        "always": True,
        "kinds": ("bucket",),
        "when": "once per page of up to 1,000 buckets per project; the listing carries every attribute",
    },
    {
        "operation": "storage:buckets.get",
        "permissions": ("storage.buckets.get",),
        "kinds": ("bucket",),
        "feeds": ("location", "encryption", "transport", "access", "tags"),
        "when": "only for a bucket the listing reports `unreachable`",
    },
    {
        "operation": "orgpolicy:policies.getEffectivePolicy",
        "permissions": ("orgpolicy.policy.get",),
        "kinds": ("bucket", "ai-endpoint"),
        "feeds": ("transport.min_tls_version", "transport.min_tls_enforced_by", "processing"),
        "when": "once per project and constraint: `gcp.restrictTLSVersion` for the buckets' TLS minimum, "
        "`gcp.restrictEndpointUsage` for the global Vertex AI endpoint",
        "note": "the method's REST reference names orgpolicy.policies.get, which IAM does not define; "
        "roles/orgpolicy.policyViewer grants orgpolicy.policy.get",
    },
    {
        "operation": "aiplatform:locations.list",
        "permissions": ("aiplatform.locations.list",),
        "always": True,
        "kinds": ("ai-endpoint", "ai-settings"),
        "when": "once per page per project, unless `--vertex-location` names the locations",
    },
    {
        "operation": "aiplatform:endpoints.list",
        "permissions": ("aiplatform.endpoints.list",),
        "always": True,
        "kinds": ("ai-endpoint",),
        "when": "once per page per project and Vertex AI location, at the location's regional endpoint",
    },
    {
        "operation": "aiplatform:projects.getCacheConfig",
        "permissions": ("aiplatform.cacheConfigs.get",),
        "kinds": ("ai-settings",),
        "feeds": ("training.cache_enabled",),
        "when": "once per project",
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
