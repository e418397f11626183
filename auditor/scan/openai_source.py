"""The OpenAI source: its section of auditor.yaml (one organization per unit), its section of the
zone catalog (residency geographies and documented defaults), its call table, its registration.

Importing this module imports no OpenAI SDK: the scanner (`auditor.scan.openai`) is named, not
imported. The Admin API key comes from the environment only (`OPENAI_ADMIN_KEY`), never from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from auditor.model import CoverageGap
from auditor.policy.zones import MemberSet, ProviderCatalog
from auditor.scan.calls import RetryScopedOptions
from auditor.sources import ScanOptions, Source, SourceSection
from auditor.strict import StrictModel

if TYPE_CHECKING:
    from auditor.permissions import CallSpec, Grant

# The unit (and record account) of an organization neither configured nor named by the API.
DEFAULT_ORGANIZATION = "default"


class OpenAiOptions(RetryScopedOptions):
    """`auditor scan openai` options a section may set under `options:` (the shared ones)."""

    # The openai SDK counts retries (`max_retries` = attempts - 1) and takes one read and one
    # connect timeout; its backoff and Retry-After handling are its own.
    retry_source: ClassVar[str] = "openai"
    retry_used: ClassVar[frozenset[str]] = frozenset({"max_attempts", "timeout", "connect_timeout"})


class OpenAiOrganization(SourceSection):
    """OpenAI: the organization the Admin API key (`OPENAI_ADMIN_KEY`) belongs to, and the endpoint."""

    scan_options_model: ClassVar[type[ScanOptions]] = OpenAiOptions

    organization: str | None = Field(
        None,
        description="Organization id (org-...): the records' account, sent as OpenAI-Organization. "
        "Default: OPENAI_ORG_ID, else the openai-organization header of the API's answers.",
    )
    base_url: str | None = Field(
        None, description="API base URL. Default: OPENAI_BASE_URL, else https://api.openai.com/v1."
    )

    def units(self) -> Iterator[tuple[str, SourceSection] | CoverageGap]:
        """One unit: the organization of the key in the environment."""
        yield self.organization or DEFAULT_ORGANIZATION, self


class Geography(MemberSet):
    """A residency geography (eu, us, jp, ...): the countries OpenAI stores or processes it in."""

    source: str


class EncryptionDefault(StrictModel):
    """How OpenAI encrypts content at rest when no Enterprise Key Management key is set."""

    algorithm: str
    statement: str
    source: str


class TrainingDefault(StrictModel):
    """What OpenAI documents about training on API content, and when that was last checked."""

    provider_may_train: bool
    statement: str
    source: str
    as_of: date


class OpenAiCatalog(ProviderCatalog):
    """The `openai:` section of the zone catalog: countries as regions, residency geographies, and
    the documented defaults (encryption at rest, training on API content)."""

    # A geography is inside a zone only if every member country is (OpenAI's EU includes CH).
    multi_location_tables: ClassVar[tuple[str, ...]] = ("geographies",)

    geographies: dict[str, Geography]
    encryption_default: EncryptionDefault
    training_default: TrainingDefault


SOURCE = Source(
    name="openai",
    label="OpenAI",
    section=OpenAiOrganization,
    scan="auditor.scan.openai:scan_section",
    command="auditor.scan.openai:command",
    order=40,
    catalog=OpenAiCatalog,
    provider=True,
)

# --- the call table: every Admin API call the scanner makes, what it feeds, the key scope it needs --
# The single source of `auditor permissions openai` and of the table in docs/scanners/openai.md.
# Admin API keys are organization-wide; a restricted key needs "Organization Administration: Read",
# which OpenAI's permission errors name as the scope `api.management.read`.
MANAGEMENT_READ = "api.management.read"
LIST_PROJECTS = "openai:organization.projects.list"
GET_EXTERNAL_KEY = "openai:organization.external_keys.retrieve"
CALLS: tuple[CallSpec, ...] = (
    {
        "operation": LIST_PROJECTS,
        "permissions": (MANAGEMENT_READ,),
        "kinds": ("ai-project", "ai-settings"),
        "always": True,
        "when": "once per page of up to 100 projects, archived ones included, when a policy is scoped to "
        "`ai-project`; for `ai-settings` alone, one page of one project, only when no organization is "
        "configured (its id is read from the `openai-organization` header)",
    },
    {
        "operation": GET_EXTERNAL_KEY,
        "permissions": (MANAGEMENT_READ,),
        "kinds": ("ai-project",),
        "feeds": ("encryption.key_location",),
        "when": "once per distinct `external_key_id` (Enterprise Key Management) of the listed projects",
        "note": "scope not documented for this endpoint; assumed the same organization read",
    },
)

_DESCRIPTION = "Admin API key for `auditor scan openai`, generated by `auditor permissions openai`."


def _json(grant: Grant) -> str:
    """The Admin API key to create: its environment variable, permission mode and scopes."""
    scopes = grant.permissions()
    document = {
        "description": _DESCRIPTION,
        "key": "Admin API key (platform.openai.com, Organization settings, Admin keys)",
        "environment": "OPENAI_ADMIN_KEY",
        "permissions": "Restricted" if scopes else "none: the loaded policies need no OpenAI call",
        "scopes": scopes,
        "dashboard": {"Organization Administration": "Read"} if scopes else {},
        "calls": grant.operations(),
    }
    return json.dumps(document, indent=2) + "\n"


PERMISSION_FORMATS = {"json": _json}
