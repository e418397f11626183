"""OpenAI organization scanner: `auditor scan openai`, through the official SDK's Admin API.

One `ai-project` record per API project (archived ones included, with their `state`): where its
content rests and is processed (`residency`) and whose key encrypts it (`external_key_id`, the
Enterprise Key Management key, located through the organization's external keys). One
`ai-settings` record per organization: whether OpenAI may train on its content, which no API
exposes (an attestation decides it). Only the calls the loaded policies need are made: none at all
when no policy is scoped to an OpenAI kind. Answers are taken raw from the SDK and parsed here, so
an empty, garbled or truncated answer is recorded with a bounded excerpt of its bytes, never read
as an empty listing. The Admin API key (`OPENAI_ADMIN_KEY`) is never written anywhere: every
record is checked for it before it leaves the scanner. See docs/scanners/openai.md.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import click
import orjson
from openai import APIConnectionError, APIStatusError, APITimeoutError, OpenAI, Timeout, omit

from auditor.cli_options import SCAN_EXIT_CODES
from auditor.inventory import InventoryRecord
from auditor.model import (
    ANY_REGION,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Processing,
    Provider,
    StorageResource,
    Training,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import (
    Answer,
    CallRecorder,
    RawAnswer,
    RawShape,
    RetrySettings,
    TransportFailure,
    bounded,
    now,
    status_unknown,
    transport_unknown,
)
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.openai_source import (
    DEFAULT_ORGANIZATION,
    GET_EXTERNAL_KEY,
    LIST_PROJECTS,
    OpenAiCatalog,
    OpenAiOptions,
    OpenAiOrganization,
)
from auditor.scan.section import options_retry, section_options

ADMIN_KEY_ENV = "OPENAI_ADMIN_KEY"
ORGANIZATION_ENV = "OPENAI_ORG_ID"  # as the SDK reads it
# Answer headers kept as evidence: who answered, and the id OpenAI support asks for.
ORGANIZATION_HEADER = "openai-organization"
KEPT_HEADERS = (ORGANIZATION_HEADER, "x-request-id")
PAGE_LIMIT = 100  # the Admin API's largest page
MALFORMED = "malformed/empty answer"
REDACTED = "[redacted]"
RAW_REASON_BYTES = 96
# The shared retry/timeout settings this scanner honours, and its defaults: the SDK's 2 retries and
# 5 s connect timeout; a 60 s read timeout instead of the SDK's 600 s, so an audit cannot hang.
RETRY_SUPPORTED = OpenAiOptions.retry_used
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0

# GLOBAL, <GEO>_STORAGE (at rest in the geography) or <GEO>_STORAGE_PROCESSING (processed there too).
GLOBAL_RESIDENCY = "GLOBAL"
_RESIDENCY = re.compile(r"^(?P<geography>[A-Z]{2,})_STORAGE(?P<processing>_PROCESSING)?$")
# Anything shaped like an OpenAI secret key, should an answer or error ever echo one whole.
_SECRET_KEY = re.compile(r"sk-[A-Za-z0-9_-]{16,}")
_KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):\d{12}:key/")
_MISSING = object()


class MalformedAnswer(Exception):
    """A 2xx answer that cannot be parsed, or does not say what the API always says."""

    def __init__(self, problem: str, body: bytes, status: int | None = 200) -> None:
        super().__init__(f"{MALFORMED}: {problem}")
        self.problem = problem
        self.body = body
        self.status = status


def _json(value: Any) -> str:
    """A value of an answer as JSON writes it (`null`, `42`), for reasons."""
    return orjson.dumps(value, default=str).decode()


def _short_repr(body: bytes) -> str:
    return repr(body[:RAW_REASON_BYTES]) + ("..." if len(body) > RAW_REASON_BYTES else "")


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        raise MalformedAnswer(f"{what} has an empty body ({len(body)} bytes)", body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(
            f"{what} is not JSON ({exc}; {len(body)} bytes: {_short_repr(body)})", body
        ) from None
    if not isinstance(data, dict):
        raise MalformedAnswer(
            f"{what} is a JSON {type(data).__name__}, not an object: {_short_repr(body)}", body
        )
    return data


@dataclass(frozen=True)
class ProjectPage:
    """One parsed `GET /organization/projects` answer and the headers kept from it."""

    entries: list[Any]
    has_more: bool | None
    headers: dict[str, str]


def parse_project_page(body: bytes, headers: Mapping[str, str]) -> ProjectPage:
    """A listing page, or `MalformedAnswer` when it cannot be used as a whole.

    `data` must be a list and `object` (when sent) `list`; `has_more` a boolean or absent (absent:
    the next page is asked for, as the SDK's cursor page does). Single entries are judged later.
    """
    data = _json_object(body, "listing page")
    kind = data.get("object")
    if kind is not None and kind != "list":
        raise MalformedAnswer(f"listing page has object {kind!r}, not 'list'", body)
    entries = data.get("data")
    if not isinstance(entries, list):
        raise MalformedAnswer(f"listing page has no 'data' list ({type(entries).__name__})", body)
    has_more = data.get("has_more")
    if has_more is not None and not isinstance(has_more, bool):
        raise MalformedAnswer(f"'has_more' is {has_more!r}, not a boolean", body)
    kept = {name: headers[name] for name in KEPT_HEADERS if headers.get(name)}
    return ProjectPage(entries, has_more, kept)


# --- what the answers mean ------------------------------------------------------------------------


def residency_placement(
    section: OpenAiCatalog, value: Any
) -> tuple[Location | None, Processing | None, dict[str, Unknown]]:
    """Where a project's content rests and is processed, from its `residency` (`_MISSING`: absent).

    GLOBAL rests and is processed anywhere ('*'); `<GEO>_STORAGE` rests in the geography's member
    countries and is processed anywhere; `<GEO>_STORAGE_PROCESSING` does both in the geography. A
    geography the catalog does not list, an unknown value, null or a missing field is unknown.
    """
    if value is _MISSING or value is None or not isinstance(value, str):
        said = (
            "the project answer has no residency field"
            if value is _MISSING
            else f"residency is {_json(value)}"
        )
        unknown = Unknown(code=UnknownCode.ERROR, reason=f"{MALFORMED}: {said} ({LIST_PROJECTS})")
        return None, None, {"location": unknown, "processing": unknown}
    if value == GLOBAL_RESIDENCY:
        anywhere = [ANY_REGION]
        return (
            Location(raw=value, type="global", primary=None, regions=anywhere, replicas=[]),
            Processing(raw=value, scope="global", regions=anywhere),
            {},
        )
    match = _RESIDENCY.match(value)
    if match is None:
        unknown = Unknown(
            code=UnknownCode.NOT_SUPPORTED,
            reason=f"residency {value!r} is none of GLOBAL, <GEO>_STORAGE, <GEO>_STORAGE_PROCESSING",
        )
        return (
            Location(raw=value, type=None, primary=None, regions=[], replicas=[]),
            Processing(raw=value, scope=None, regions=[]),
            {path: unknown for path in ("location.type", "location.primary", "location.regions")}
            | {"processing.scope": unknown, "processing.regions": unknown},
        )
    code = match.group("geography").lower()
    processed_there = match.group("processing") is not None
    geography = section.geographies.get(code)
    members = list(geography.members) if geography is not None else []
    location = Location(raw=value, type="geography", primary=code, regions=members, replicas=[])
    processing = (
        Processing(raw=value, scope="geography", regions=list(members))
        if processed_there
        else Processing(raw=value, scope="global", regions=[ANY_REGION])
    )
    if geography is not None:
        return location, processing, {}
    unknown = Unknown(
        code=UnknownCode.NOT_SUPPORTED,
        reason=f"geography {code!r} of residency {value!r} is not in the zone catalog's openai geographies",
    )
    unknowns = {"location.regions": unknown}
    if processed_there:
        unknowns["processing.regions"] = unknown
    return location, processing, unknowns


def project_encryption(section: OpenAiCatalog, value: Any) -> tuple[Encryption | None, dict[str, Unknown]]:
    """The encryption of a project from its `external_key_id` (`_MISSING`: absent from the answer)."""
    if value is None:
        default = section.encryption_default
        return (
            Encryption(
                enabled=True,
                algorithm=default.algorithm,
                scheme="openai-managed",
                key_management="provider-managed",
                key_id=None,
                key_location=None,
                provider_default=True,
                source=default.source,
            ),
            {},
        )
    if not isinstance(value, str) or not value:
        said = (
            "the project answer has no external_key_id field"
            if value is _MISSING
            else f"external_key_id is {_json(value)}"
        )
        return None, {
            "encryption": Unknown(code=UnknownCode.ERROR, reason=f"{MALFORMED}: {said} ({LIST_PROJECTS})")
        }
    return (
        Encryption(
            enabled=True,
            algorithm=section.encryption_default.algorithm,
            scheme="EKM",
            key_management="customer-managed",
            key_id=value,
            key_location=None,
        ),
        {},
    )


@dataclass(frozen=True)
class KeyPlacement:
    """Where an Enterprise Key Management key lives: a country of the openai catalog, or why unknown."""

    location: str | None
    unknown: Unknown | None
    evidence: Evidence


def _aws_region(key: Mapping[str, Any]) -> tuple[str, str | None, str]:
    arn = key.get("kms_arn")
    match = _KMS_ARN.match(arn) if isinstance(arn, str) else None
    return "aws", match.group("region") if match else None, f"kms_arn {arn!r}"


def _gcp_region(key: Mapping[str, Any]) -> tuple[str, str | None, str]:
    location = key.get("kms_key_location")
    return (
        "gcp",
        location.lower() if isinstance(location, str) and location else None,
        f"kms_key_location {location!r}",
    )


def _azure_region(key: Mapping[str, Any]) -> tuple[str, str | None, str]:
    return "azure", None, f"vault_uri {key.get('vault_uri')!r} (a Key Vault URI names no region)"


def _oci_region(key: Mapping[str, Any]) -> tuple[str, str | None, str]:
    region = key.get("region")
    return "oci", region.lower() if isinstance(region, str) and region else None, f"region {region!r}"


# An external key's `type` -> (the cloud whose catalog section resolves it, its region, what was read).
KEY_REGION: dict[str, Callable[[Mapping[str, Any]], tuple[str, str | None, str]]] = {
    "aws": _aws_region,
    "gcp": _gcp_region,
    "azure": _azure_region,
    "oci": _oci_region,
}


def key_country(catalog: ZoneCatalog, key: Mapping[str, Any]) -> tuple[str | None, str]:
    """The openai-catalog country of an external key's region, or None and why it is unknown."""
    kind = key.get("type")
    reader = KEY_REGION.get(kind) if isinstance(kind, str) else None
    if reader is None:
        return None, f"external key type {kind!r} is not one the scanner can locate"
    cloud, region, read = reader(key)
    if region is None:
        return None, f"the {kind} key's region cannot be read from its {read}"
    country = catalog.country_of(cloud, region) if cloud in catalog.providers else None
    if country is None:
        return None, f"{cloud} key region {region!r} ({read}) is not a single region of the zone catalog"
    if country.lower() not in catalog.providers["openai"].regions:
        return (
            None,
            f"country {country} of {cloud} key region {region!r} is not in the catalog's openai regions",
        )
    return country.lower(), f"{cloud} region {region!r} is in {country}"


# --- errors ---------------------------------------------------------------------------------------


def _error_message(exc: APIStatusError) -> str:
    """The API's own words for an error answer (`error.message`, `type`, `code`)."""
    body = exc.body
    if isinstance(body, dict):
        parts = [str(body.get(name)) for name in ("type", "code") if body.get(name)]
        message = body.get("message")
        if isinstance(message, str) and message:
            return f"{' '.join(parts)}: {message}" if parts else message
    return exc.message


@dataclass(frozen=True)
class SecretScrub:
    """Removes the Admin API key (and anything shaped like a whole secret key) from text."""

    secret: str

    def __call__(self, text: str) -> str:
        if self.secret:
            text = text.replace(self.secret, REDACTED)
        return _SECRET_KEY.sub(REDACTED, text)


class ErrorReader:
    """How the scanner's failed calls become unknowns and evidence (scrubbed, bounded)."""

    def __init__(self, scrub: SecretScrub) -> None:
        self.scrub = scrub
        self.shape = RawShape(
            size="bytes", body="head", truncated="head_truncated", status="status", scrub=scrub
        )

    def unknown(self, exc: Exception, operation: str) -> Unknown:
        """The `Unknown` a failure makes of what the call feeds: '<what> (<operation>)'."""
        found: Unknown
        if isinstance(exc, MalformedAnswer):
            found = Unknown(code=UnknownCode.ERROR, reason=f"{MALFORMED}: {exc.problem} ({operation})")
        elif isinstance(exc, APIStatusError):
            found = status_unknown(exc.status_code, operation, bounded(_error_message(exc)))
        elif isinstance(exc, APITimeoutError):
            found = transport_unknown(TransportFailure.TIMEOUT, operation)
        elif isinstance(exc, APIConnectionError):
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
            found = Unknown(
                code=UnknownCode.ERROR, reason=f"connection error: {bounded(detail)} ({operation})"
            )
        else:
            found = Unknown(
                code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {bounded(str(exc))} ({operation})"
            )
        return found.model_copy(update={"reason": self.scrub(found.reason)})

    def evidence(self, exc: Exception, operation: str) -> tuple[Any, str]:
        """The evidence of a failed call: the answer's bounded raw bytes (if any), and the error text."""
        text = self.unknown(exc, operation).reason.removesuffix(f" ({operation})")
        if isinstance(exc, MalformedAnswer):
            return RawAnswer(exc.status, exc.body).excerpt(self.shape), text
        if isinstance(exc, APIStatusError):
            return RawAnswer(exc.status_code, exc.response.content).excerpt(self.shape), text
        return None, text


# --- the scanner ----------------------------------------------------------------------------------


class OpenAiScanner(Scanner):
    """Inventories one OpenAI organization: its API projects and its organization-wide settings."""

    provider: ClassVar[Provider] = "openai"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        *,
        admin_key: str | None,
        organization: str | None = None,
        base_url: str | None = None,
        concurrency: int = 16,
        page_limit: int = PAGE_LIMIT,
        retry_settings: RetrySettings | None = None,
    ) -> None:
        super().__init__(needs, catalog, concurrency)
        given = retry_settings or RetrySettings()
        given.refuse_unsupported("openai", RETRY_SUPPORTED)
        self.settings = given.merged(
            max_attempts=DEFAULT_MAX_ATTEMPTS,
            timeout=DEFAULT_TIMEOUT,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        )
        self.admin_key = admin_key or None
        self.organization = organization or None
        self.base_url = base_url
        self.page_limit = page_limit
        self.section = catalog.section("openai", OpenAiCatalog)
        self.scrub = SecretScrub(admin_key or "")
        errors = ErrorReader(self.scrub)
        self.recorder = CallRecorder(self.calls, errors.unknown, errors.evidence)

        self.want_projects = needs.wants_kind("ai-project")
        self.want_settings = needs.wants_kind("ai-settings")
        project_needs = needs.for_kinds("ai-project")
        self.project_groups = [g for g in ("location", "processing", "encryption") if project_needs.wants(g)]
        self.want_key_location = project_needs.wants("encryption.key_location")
        self.want_training = needs.for_kinds("ai-settings").wants("training")
        self._client: OpenAI | None = None
        self._keys: dict[str, KeyPlacement] = {}

    def client(self) -> OpenAI:
        """The SDK client: the Admin API key, base URL (OPENAI_BASE_URL by default), retries, timeouts."""
        if self._client is None:
            self._client = OpenAI(
                admin_api_key=self.admin_key,
                api_key="",  # never the project key of OPENAI_API_KEY: admin calls use the admin key only
                organization=self.organization,
                base_url=self.base_url,
                max_retries=int(self.settings.max_attempts or DEFAULT_MAX_ATTEMPTS) - 1,
                timeout=Timeout(
                    float(self.settings.timeout or DEFAULT_TIMEOUT),
                    connect=float(self.settings.connect_timeout or DEFAULT_CONNECT_TIMEOUT),
                ),
            )
        return self._client

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield the organization's projects, its settings record and the gaps, key scrubbed."""
        for record in self._records():
            yield self._scrubbed(record)

    def _scrubbed(self, record: InventoryRecord) -> InventoryRecord:
        """`record` without the key, wherever an answer or error may have carried it."""
        text = record.model_dump_json()
        clean = self.scrub(text)
        if clean == text:
            return record
        return type(record).model_validate_json(clean)

    def _records(self) -> Iterator[InventoryRecord]:
        if not (self.want_projects or self.want_settings):
            return  # no loaded policy is scoped to an OpenAI kind: no call at all
        if self.admin_key is None:
            yield self.gap(
                "organization",
                UnknownCode.NO_CREDENTIALS,
                f"{ADMIN_KEY_ENV} is not set: an OpenAI Admin API key is needed to read the organization "
                "(docs/scanners/openai.md); nothing was sent",
            )
            return
        failure: Unknown | None = None
        if self.want_projects:
            listing = ProjectListing(self)
            yield from listing.records()
            failure = listing.failure
        if not self.want_settings:
            return
        if self.organization is None and not self.want_projects:
            failure = self._identify()
        if self.organization is None and failure is not None:
            yield self.gap(
                "settings",
                failure.code,
                f"the organization could not be identified, so its settings are not recorded: "
                f"{failure.reason}",
            )
            return
        yield self._settings_record()

    def _identify(self) -> Unknown | None:
        """Learn the organization id from the listing's answer header (one project asked for)."""
        answer = self.recorder.call(
            LIST_PROJECTS,
            [],
            {"limit": 1, "include_archived": True, "purpose": "identify the organization"},
            lambda: self.list_page(None, 1),
            shown=lambda page: {"headers": page.headers},
        )
        if answer.value is None:
            return answer.unknown
        self.learn_organization(answer.value)
        return None

    def learn_organization(self, page: ProjectPage) -> None:
        """Take the organization id from an answer's header when none was configured."""
        if self.organization is None:
            self.organization = page.headers.get(ORGANIZATION_HEADER) or DEFAULT_ORGANIZATION

    @property
    def account(self) -> str:
        """The organization the records belong to."""
        return self.organization or DEFAULT_ORGANIZATION

    def list_page(self, after: str | None, limit: int) -> ProjectPage:
        """GET /organization/projects (archived included), parsed from the raw answer."""
        raw = self.client().admin.organization.projects.with_raw_response.list(
            limit=limit, include_archived=True, after=after if after is not None else omit
        )
        return parse_project_page(raw.content, raw.headers)

    def gap(
        self, scope: str, code: UnknownCode, reason: str, evidence: Evidence | None = None
    ) -> CoverageGap:
        return CoverageGap(
            provider="openai",
            account=self.account,
            scope=scope,
            code=code,
            reason=reason,
            at=now(),
            evidence=[evidence] if evidence is not None else [],
        )

    # --- records ----------------------------------------------------------------------------------

    def project_record(
        self, entry: Mapping[str, Any], project_id: str, evidence: Evidence
    ) -> StorageResource:
        """The `ai-project` record of one listing entry."""
        name = entry.get("name")
        status = entry.get("status")
        resource = StorageResource(
            provider="openai",
            kind="ai-project",
            account=self.account,
            name=name if isinstance(name, str) and name else project_id,
            id=f"openai:organization/{self.account}/project/{project_id}",
            scanned_at=evidence.at,
            state=status.lower() if isinstance(status, str) and status else None,
        )
        resource.evidence.append(evidence)
        if "location" in self.project_groups or "processing" in self.project_groups:
            location, processing, unknown = residency_placement(
                self.section, entry.get("residency", _MISSING)
            )
            for group, value in (("location", location), ("processing", processing)):
                if group in self.project_groups:
                    setattr(resource, group, value)
                    resource.unknown.update({p: u for p, u in unknown.items() if p.split(".")[0] == group})
        if "encryption" in self.project_groups:
            encryption, unknown = project_encryption(self.section, entry.get("external_key_id", _MISSING))
            resource.encryption = encryption
            resource.unknown.update(unknown)
            if encryption is not None and encryption.key_id is not None:
                self._locate_key(resource, encryption.key_id)
        return resource

    def _locate_key(self, resource: StorageResource, key_id: str) -> None:
        """Fill `encryption.key_location` from the organization's external key, when a policy reads it."""
        if not self.want_key_location:
            resource.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_COLLECTED, reason="no loaded policy reads encryption.key_location"
            )
            return
        placement = self._keys.get(key_id)
        if placement is None:
            placement = self._keys[key_id] = self._read_key(key_id)
        resource.evidence.append(placement.evidence)
        if placement.location is not None and resource.encryption is not None:
            resource.encryption.key_location = placement.location
        if placement.unknown is not None:
            resource.unknown["encryption.key_location"] = placement.unknown

    def _read_key(self, key_id: str) -> KeyPlacement:
        def retrieve() -> dict[str, Any]:
            raw = self.client().admin.organization.external_keys.with_raw_response.retrieve(key_id)
            return _json_object(raw.content, "external key")

        answer: Answer[dict[str, Any]] = self.recorder.call(
            GET_EXTERNAL_KEY, ["encryption.key_location"], {"external_key_id": key_id}, retrieve
        )
        if answer.value is None:
            unknown = answer.unknown or Unknown(
                code=UnknownCode.ERROR, reason=f"no answer ({GET_EXTERNAL_KEY})"
            )
            reason = (
                f"an EKM key id names no location, and its external key could not be read: {unknown.reason}"
            )
            return KeyPlacement(None, unknown.model_copy(update={"reason": reason}), answer.evidence)
        country, why = key_country(self.catalog, answer.value)
        if country is None:
            unknown = Unknown(code=UnknownCode.NOT_SUPPORTED, reason=f"{why} ({GET_EXTERNAL_KEY})")
            return KeyPlacement(None, unknown, answer.evidence)
        located = answer.evidence.model_copy(update={"request": {"external_key_id": key_id, "notes": [why]}})
        return KeyPlacement(country, None, located)

    def _settings_record(self) -> StorageResource:
        """The organization's `ai-settings` record: training on API content (only an attestation decides)."""
        at = now()
        resource = StorageResource(
            provider="openai",
            kind="ai-settings",
            account=self.account,
            name=self.account,
            id=f"openai:organization/{self.account}/settings",
            scanned_at=at,
        )
        if not self.want_training:
            return resource
        default = self.section.training_default
        resource.training = Training(
            provider_may_train=None,
            decided_by=None,
            setting=None,
            source=default.source,
            as_of=default.as_of,
        )
        resource.unknown["training.provider_may_train"] = Unknown(
            code=UnknownCode.NOT_SUPPORTED,
            reason="OpenAI documents that it does not train on API content by default "
            f"({default.source}, as of {default.as_of.isoformat()}), but an organization may opt in to "
            "share data and no API exposes that choice: attest it with "
            "`auditor scan openai --attestations FILE`",
        )
        resource.evidence.append(
            Evidence(
                call="docs:openai.data-controls",
                at=at,
                attributes=["training"],
                request={"source": default.source, "as_of": default.as_of.isoformat()},
                response={
                    "statement": default.statement,
                    "provider_may_train_by_default": default.provider_may_train,
                },
            )
        )
        return resource


class ProjectListing:
    """One walk through the organization's projects, page by page, following `after`."""

    def __init__(self, scanner: OpenAiScanner) -> None:
        self.scanner = scanner
        self.failure: Unknown | None = None
        self.listed = 0
        self.page_number = 0

    def records(self) -> Iterator[InventoryRecord]:
        """Every project record, and a gap for whatever could not be listed."""
        scanner = self.scanner
        after: str | None = None
        seen: set[str] = set()
        while True:
            self.page_number += 1
            request: dict[str, Any] = {"limit": scanner.page_limit, "include_archived": True, "after": after}
            answer = scanner.recorder.call(
                LIST_PROJECTS,
                [],
                dict(request),
                functools.partial(scanner.list_page, after, scanner.page_limit),
                shown=lambda page: {"headers": page.headers, "projects": len(page.entries)},
            )
            if answer.value is None:
                unknown = answer.unknown or Unknown(
                    code=UnknownCode.ERROR, reason=f"no answer ({LIST_PROJECTS})"
                )
                self.failure = unknown
                yield self._stopped(unknown.code, unknown.reason, answer.evidence)
                return
            page = answer.value
            scanner.learn_organization(page)
            last_id: str | None = None
            for index, entry in enumerate(page.entries, 1):
                project_id = entry.get("id") if isinstance(entry, dict) else None
                if not isinstance(project_id, str) or not project_id:
                    last_id = None
                    yield self._unnamed(index, entry, answer.evidence)
                    continue
                last_id = project_id
                self.listed += 1
                groups = scanner.project_groups
                evidence = Evidence(
                    call=LIST_PROJECTS,
                    at=answer.evidence.at,
                    attributes=list(groups),
                    request=request,
                    response={"project": entry, "headers": page.headers},
                )
                yield scanner.project_record(entry, project_id, evidence)
            if page.has_more is False or (not page.entries and page.has_more is None):
                return
            problem = None
            if not page.entries:
                problem = "'has_more' is true but the page lists no project"
            elif last_id is None:
                problem = "the page's last project has no id, so the next page cannot be asked for"
            elif last_id in seen:
                problem = f"the cursor {last_id!r} repeats an earlier page's"
            if problem is not None:
                reason = f"{MALFORMED}: {problem} ({LIST_PROJECTS})"
                self.failure = Unknown(code=UnknownCode.ERROR, reason=reason)
                evidence = answer.evidence.model_copy(update={"error": reason})
                yield self._stopped(UnknownCode.ERROR, reason, evidence, after_page=True)
                return
            seen.add(str(last_id))
            after = last_id

    def _stopped(
        self, code: UnknownCode, reason: str, evidence: Evidence, after_page: bool = False
    ) -> CoverageGap:
        """A gap saying what was not listed: this page's projects and the rest, or the pages after it."""
        first_missing = self.page_number + 1 if after_page else self.page_number
        if self.listed:
            reason = f"listing stopped at page {self.page_number} after {self.listed} projects: {reason}"
        not_listed = "its projects" if first_missing == 1 else f"its projects from page {first_missing} on"
        return self.scanner.gap("projects", code, f"{reason}; not listed: {not_listed}", evidence)

    def _unnamed(self, index: int, entry: Any, evidence: Evidence) -> CoverageGap:
        raw = orjson.dumps(entry, default=str)
        problem = f"{MALFORMED}: entry {index} of listing page {self.page_number} names no project"
        return self.scanner.gap(
            "projects",
            UnknownCode.ERROR,
            f"{problem} ({_short_repr(raw)}) ({LIST_PROJECTS}); not listed: that project",
            evidence.model_copy(
                update={"response": {"entry": entry}, "error": f"{problem} ({LIST_PROJECTS})"}
            ),
        )


# --- command --------------------------------------------------------------------------------------


@click.command("openai", epilog=SCAN_EXIT_CODES)
@click.option(
    "--organization",
    default=None,
    help="Organization id (org-...): the records' account, sent as OpenAI-Organization "
    f"(default: {ORGANIZATION_ENV}, else the API's openai-organization header).",
)
@click.option(
    "--base-url",
    default=None,
    help="API base URL (default: OPENAI_BASE_URL, else https://api.openai.com/v1, as the SDK).",
)
@common_scan_options
def command(
    organization: str | None,
    base_url: str | None,
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory an OpenAI organization's API projects and settings (Admin API key in OPENAI_ADMIN_KEY)."""
    section = OpenAiOrganization(
        organization=organization, base_url=base_url, options={"concurrency": concurrency}
    )
    return scan_section(section, list(policy_paths), output, progress, retry)


def scan_section(
    section: OpenAiOrganization,
    policy_paths: list[Path],
    output: Path,
    progress: bool | None,
    retry: RetrySettings | None = None,
) -> ScanSummary:
    """Scan the organization `section` names into `output` (the command and scale-out units run this)."""
    options = section_options(section, OpenAiOptions)
    needs, catalog = scanner_context(policy_paths)
    scanner = OpenAiScanner(
        needs,
        catalog,
        admin_key=os.environ.get(ADMIN_KEY_ENV) or None,
        organization=section.organization or os.environ.get(ORGANIZATION_ENV) or None,
        base_url=section.base_url,
        concurrency=options.concurrency,
        retry_settings=retry or options_retry(options),
    )
    return finish_scan(scanner, output, progress)
