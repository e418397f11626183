"""Vertex AI in the GCP scan: where each project's endpoints process requests, and its AI settings.

Per project, when a loaded policy is scoped to the kind:

* ``ai-endpoint``: one record per Vertex AI endpoint of each location (``endpoints.list`` at the
  location's regional endpoint, paged), processing in its location; and one record for the
  project's global endpoint ``aiplatform.googleapis.com``, which processes anywhere unless the
  organization policy ``gcp.restrictEndpointUsage`` denies it. The locations are
  ``--vertex-location`` or, by default, those ``locations.list`` answers.
* ``ai-settings``: the project's AI settings, with ``training.cache_enabled`` from ``cacheConfig``
  (read only when a policy reads it).

Both carry Google's documented training default. The project's global endpoint and settings are
written only once a Vertex AI call for the project has answered: a project that cannot be read at
all (no credentials, denied, the API disabled, a mistyped id) is a coverage gap, never a record
that passes on documented defaults alone. A listing that cannot be read is a gap, never zero
endpoints.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from auditor.inventory import InventoryRecord
from auditor.model import (
    ANY_REGION,
    CoverageGap,
    Evidence,
    Processing,
    ProcessingScope,
    ResourceKind,
    StorageResource,
    Training,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds
from auditor.scan.calls import Answer, CallRecorder, now
from auditor.scan.gcp_errors import (
    MALFORMED,
    MalformedAnswer,
    NotCalled,
    describe_error,
    entry_excerpt,
    json_object,
    short_repr,
)
from auditor.scan.gcp_org_policy import (
    ENDPOINT_CONSTRAINT,
    GLOBAL_ENDPOINT,
    RESTRICT_ENDPOINT_SOURCE,
    OrgPolicyReader,
    endpoint_usage,
)
from auditor.scan.gcp_rest import (
    CLOUD_PLATFORM_SCOPE,
    GLOBAL_LOCATION,
    GoogleApis,
    RetryPolicy,
    SharedCredentials,
)

LOCATIONS_CALL = "aiplatform:locations.list"
ENDPOINTS_CALL = "aiplatform:endpoints.list"
CACHE_CALL = "aiplatform:projects.getCacheConfig"
RESOURCE_PREFIX = "//aiplatform.googleapis.com/"

# "Google won't use your data to train or fine-tune any AI/ML models without your prior permission
# or instruction" (the Training Restriction of the Service Specific Terms), checked on TRAINING_AS_OF.
TRAINING_SOURCE = "https://cloud.google.com/vertex-ai/generative-ai/docs/data-governance"
TRAINING_SETTING = (
    "Google Cloud Service Specific Terms, Training Restriction (https://cloud.google.com/terms/service-terms)"
)
TRAINING_AS_OF = date(2026, 11, 29)
# Regional endpoints process requests in their location; the global endpoint anywhere:
# https://cloud.google.com/vertex-ai/generative-ai/docs/learn/locations
LOCATIONS_SOURCE = "https://cloud.google.com/vertex-ai/generative-ai/docs/learn/locations"
# CacheConfig.disableCache: "If set to true, disables GenAI caching. Otherwise caching is enabled."
# An absent disableCache is proto3 JSON's false:
# https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects/getCacheConfig
CACHE_SOURCE = "https://cloud.google.com/vertex-ai/docs/reference/rest/v1/projects/getCacheConfig"

_ENDPOINT_NAME = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/endpoints/[^/]+$")
_LOCATION_NAME = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)$")
# What of an endpoint its evidence keeps: its identity and its deployed models.
_ENDPOINT_FIELDS = ("name", "displayName", "createTime", "updateTime", "dedicatedEndpointEnabled")
_MODEL_FIELDS = ("id", "model", "displayName", "modelVersionId", "createTime")
_LIST_FIELDS = frozenset({"nextPageToken", "unreachable"})


def provider_default_training() -> Training:
    """Vertex AI's documented default: Google does not train on customer content without permission."""
    return Training(
        provider_may_train=False,
        decided_by="provider-default",
        setting=TRAINING_SETTING,
        source=TRAINING_SOURCE,
        as_of=TRAINING_AS_OF,
    )


@dataclass(frozen=True)
class Page:
    """One page of a Vertex AI listing."""

    items: list[Any]
    next_page_token: str | None


def parse_page(operation: str, key: str, body: bytes) -> Page:
    """A list answer ``{key: [...], "nextPageToken": ...}``, or `MalformedAnswer`.

    ``{}`` is a list with no entries (proto3 JSON leaves an empty list out). An empty body, non-JSON,
    a non-object, a `key` that is not a list, a token that is not a string or a field no list
    answer has are malformed.
    """
    data = json_object(operation, body, "listing page")
    items = data.get(key)
    if items is not None and not isinstance(items, list):
        raise MalformedAnswer(operation, f"'{key}' is a {type(items).__name__}, not a list", body)
    token = data.get("nextPageToken")
    if token is not None and (not isinstance(token, str) or not token):
        raise MalformedAnswer(operation, f"'nextPageToken' {token!r} is not a page token", body)
    strange = sorted(set(data) - {key} - _LIST_FIELDS)
    if strange:
        raise MalformedAnswer(
            operation, f"listing page has unexpected fields {strange}: {short_repr(body)}", body
        )
    return Page(list(items or []), token)


def parse_cache_config(project: str, body: bytes) -> dict[str, Any]:
    """A cacheConfig answer: it names the project's cacheConfig, ``disableCache`` is a bool if present."""
    data = json_object(CACHE_CALL, body, "cacheConfig")
    name = data.get("name")
    if not isinstance(name, str) or not name.endswith("/cacheConfig"):
        raise MalformedAnswer(
            CACHE_CALL, f"cacheConfig names {name!r}, not projects/{project}/cacheConfig", body
        )
    disable = data.get("disableCache")
    if disable is not None and not isinstance(disable, bool):
        raise MalformedAnswer(CACHE_CALL, f"'disableCache' is {disable!r}, not a boolean", body)
    return data


def _shown_endpoint(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {k: entry[k] for k in _ENDPOINT_FIELDS if k in entry}
    models = entry.get("deployedModels")
    if isinstance(models, list):
        shown["deployedModels"] = [
            {k: m[k] for k in _MODEL_FIELDS if k in m} if isinstance(m, dict) else m for m in models
        ]
    elif models is not None:
        shown["deployedModels"] = entry_excerpt(models)
    return shown


def _gap(
    project: str, scope: str, unknown: Unknown, not_scanned: str, evidence: Evidence | None = None
) -> CoverageGap:
    return CoverageGap(
        provider="gcp",
        account=project,
        scope=scope,
        code=unknown.code,
        reason=f"{unknown.reason}; {not_scanned}",
        at=now(),
        evidence=[evidence] if evidence is not None else [],
    )


@dataclass
class Listing:
    """What one paged listing gave: whether any page answered, and the failure that stopped it."""

    answered: bool = False
    failure: Unknown | None = None


class VertexScan:
    """Inventories the Vertex AI endpoints and AI settings of projects (see the module docstring)."""

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        apis: GoogleApis,
        credentials: SharedCredentials,
        retry: RetryPolicy,
        recorder: CallRecorder,
        org_policy: OrgPolicyReader,
        locations: list[str] | None = None,
    ) -> None:
        self.catalog = catalog
        self.apis = apis
        self.credentials = credentials
        self.retry = retry
        self.recorder = recorder
        self.org_policy = org_policy
        self.locations = locations
        self.endpoints_wanted = needs.wants_kind("ai-endpoint")
        self.settings_wanted = needs.wants_kind("ai-settings")
        endpoint_needs = needs.for_kinds("ai-endpoint")
        settings_needs = needs.for_kinds("ai-settings")
        self.endpoint_groups = [g for g in ("processing", "training") if endpoint_needs.wants(g)]
        self.settings_groups = ["training"] if settings_needs.wants("training") else []
        self.cache_wanted = self.settings_wanted and settings_needs.wants("training.cache_enabled")
        self._local = threading.local()

    @property
    def wanted(self) -> bool:
        """True when a loaded policy is scoped to a kind this scan writes."""
        return self.endpoints_wanted or self.settings_wanted

    # --- HTTP -----------------------------------------------------------------------------------

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            from google.auth.transport.requests import AuthorizedSession

            credentials = self.credentials.scoped([CLOUD_PLATFORM_SCOPE])
            session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
            self._local.session = session
        return session

    def _get(self, url: str, params: dict[str, str], parse: Callable[[bytes], Any]) -> Any:
        """GET `url` and parse its raw answer, retried by the retry policy."""
        from google.api_core import exceptions as api_exceptions

        def attempt() -> Any:
            response = self._session().get(url, params=params, timeout=self.retry.timeout)
            if response.status_code >= 400:
                raise api_exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
            return parse(response.content)

        return self.retry.run(attempt)

    # --- one project ----------------------------------------------------------------------------

    def scan_project(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        pool: ThreadPoolExecutor,
        stop: threading.Event,
    ) -> None:
        """Every Vertex AI record (and gap) of `project`."""
        failures: list[Unknown] = []
        answered = False
        locations = self.locations
        # A call that shows the project answers Vertex AI: the locations listing, unless the
        # locations are given (their listings show it) or only the settings are wanted and
        # their cacheConfig is read anyway.
        if (self.endpoints_wanted and locations is None) or (
            self.settings_wanted and not self.endpoints_wanted and not self.cache_wanted
        ):
            listed, found = self._list_locations(project, emit, stop)
            answered = listed.answered
            if listed.failure is not None:
                failures.append(listed.failure)
            if locations is None:
                locations = found
        pending: list[Future[Listing]] = []
        if self.endpoints_wanted:
            pending = [
                pool.submit(self._list_endpoints, project, location, emit, stop)
                for location in locations or []
            ]
        cache: Answer[dict[str, Any]] | None = None
        if self.cache_wanted:
            cache = self._cache_config(project)
            answered = answered or cache.ok
            if cache.unknown is not None:
                failures.append(cache.unknown)
        wait(pending)
        for future in pending:
            listing = future.result()
            answered = answered or listing.answered
            if listing.failure is not None:
                failures.append(listing.failure)
        if not answered:
            first = (
                failures[0]
                if failures
                else Unknown(code=UnknownCode.ERROR, reason="no Vertex AI call was made")
            )
            emit(
                _gap(
                    project,
                    "vertex",
                    Unknown(
                        code=first.code, reason=f"no Vertex AI call for the project answered: {first.reason}"
                    ),
                    f"not scanned: its global endpoint {GLOBAL_ENDPOINT} and its AI settings",
                )
            )
            return
        if self.endpoints_wanted:
            emit(self._global_endpoint(project))
        if self.settings_wanted:
            emit(self._settings(project, cache))

    # --- listings -------------------------------------------------------------------------------

    def _listing(
        self,
        project: str,
        operation: str,
        url: str,
        key: str,
        request: dict[str, Any],
        scope: str,
        what: str,
        take: Callable[[Any, Evidence, dict[str, Any]], None],
        emit: Callable[[InventoryRecord], None],
        stop: threading.Event,
    ) -> Listing:
        """Every page of one listing, each entry handed to `take`; a page that fails is a gap."""
        result = Listing()
        token: str | None = None
        seen: set[str] = set()
        number = 0
        taken = 0
        parse = functools.partial(parse_page, operation, key)
        while not stop.is_set():
            number += 1
            params = {"pageToken": token} if token else {}
            page_request = {**request, "pageToken": token}
            answer: Answer[Page] = self.recorder.call(
                operation,
                [],
                page_request,
                functools.partial(self._get, url, params, parse),
                shown=lambda page: {"entries": len(page.items), "nextPageToken": page.next_page_token},
            )
            not_listed = f"not listed: {what}" + (f" from page {number} on" if number > 1 else "")
            if answer.value is None:
                unknown = answer.unknown or Unknown(code=UnknownCode.ERROR, reason=f"no answer ({operation})")
                result.failure = unknown
                if number > 1:
                    stopped = f"listing stopped at page {number} after {taken} entries"
                    unknown = unknown.model_copy(update={"reason": f"{stopped}: {unknown.reason}"})
                emit(_gap(project, scope, unknown, not_listed, answer.evidence))
                return result
            result.answered = True
            page = answer.value
            for entry in page.items:
                taken += 1
                take(entry, answer.evidence, page_request)
            if page.next_page_token is None:
                return result
            if page.next_page_token in seen:
                repeats = f"nextPageToken {page.next_page_token!r} repeats an earlier page's"
                problem = f"{MALFORMED}: {repeats} ({operation})"
                unknown = Unknown(code=UnknownCode.ERROR, reason=problem)
                result.failure = unknown
                repeated = {"nextPageToken": page.next_page_token}
                evidence = answer.evidence.model_copy(update={"response": repeated, "error": problem})
                emit(_gap(project, scope, unknown, f"not listed: {what} from page {number + 1} on", evidence))
                return result
            seen.add(page.next_page_token)
            token = page.next_page_token
        return result

    def _list_locations(
        self, project: str, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> tuple[Listing, list[str]]:
        """The project's Vertex AI locations (a gap, and none, when they cannot be listed)."""
        scope = "vertex-locations"
        what = "its Vertex AI locations and their endpoints"
        try:
            url = self.apis.base("aiplatform") + f"/v1/projects/{project}/locations"
        except NotCalled as exc:
            unknown = describe_error(exc, LOCATIONS_CALL)
            emit(_gap(project, scope, unknown, f"not listed: {what}"))
            return Listing(False, unknown), []
        found: list[str] = []

        def take(entry: Any, evidence: Evidence, request: dict[str, Any]) -> None:
            location = entry.get("locationId") if isinstance(entry, dict) else None
            if not isinstance(location, str) or not location:
                named = _LOCATION_NAME.match(str(entry.get("name"))) if isinstance(entry, dict) else None
                location = named.group("location") if named else None
            if location:
                found.append(location)
                return
            problem = f"{MALFORMED}: a location entry names no location ({LOCATIONS_CALL})"
            failed = evidence.model_copy(update={"response": entry_excerpt(entry), "error": problem})
            emit(
                _gap(
                    project,
                    scope,
                    Unknown(code=UnknownCode.ERROR, reason=problem),
                    "not listed: its endpoints",
                    failed,
                )
            )

        listing = self._listing(
            project, LOCATIONS_CALL, url, "locations", {"project": project}, scope, what, take, emit, stop
        )
        if listing.answered and listing.failure is None and not found:
            # Every project that answers Vertex AI has locations: an empty listing says nothing.
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{MALFORMED}: the locations listing is empty ({LOCATIONS_CALL})",
            )
            emit(_gap(project, scope, unknown, f"not listed: {what}"))
            return Listing(False, unknown), []
        return listing, sorted(dict.fromkeys(found))

    def _list_endpoints(
        self, project: str, location: str, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> Listing:
        """The endpoints of one location, one record each (a gap when the listing fails)."""
        scope = f"vertex:{location}"
        what = f"its Vertex AI endpoints in {location}"
        try:
            url = self.apis.vertex(location) + f"/v1/projects/{project}/locations/{location}/endpoints"
        except NotCalled as exc:
            unknown = describe_error(exc, ENDPOINTS_CALL)
            emit(_gap(project, scope, unknown, f"not listed: {what}"))
            return Listing(False, unknown)

        def take(entry: Any, evidence: Evidence, request: dict[str, Any]) -> None:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not name:
                problem = f"{MALFORMED}: an endpoint entry of {location} names no endpoint ({ENDPOINTS_CALL})"
                failed = evidence.model_copy(update={"response": entry_excerpt(entry), "error": problem})
                emit(
                    _gap(
                        project,
                        scope,
                        Unknown(code=UnknownCode.ERROR, reason=problem),
                        "not listed: that endpoint",
                        failed,
                    )
                )
                return
            emit(self._endpoint(project, location, name, entry, evidence, request))

        request = {"project": project, "location": location}
        return self._listing(
            project, ENDPOINTS_CALL, url, "endpoints", request, scope, what, take, emit, stop
        )

    # --- records --------------------------------------------------------------------------------

    def _identity(
        self, project: str, name: str, resource_id: str, kind: ResourceKind, at: datetime
    ) -> StorageResource:
        return StorageResource(
            provider="gcp", kind=kind, account=project, name=name, id=resource_id, scanned_at=at
        )

    def _endpoint(
        self,
        project: str,
        listed: str,
        name: str,
        entry: dict[str, Any],
        evidence: Evidence,
        request: dict[str, Any],
    ) -> StorageResource:
        """The record of one endpoint: processing where it is, training by the documented default."""
        named = _ENDPOINT_NAME.match(name)
        location = named.group("location") if named else listed
        record = self._identity(project, name, RESOURCE_PREFIX + name, "ai-endpoint", now())
        if "processing" in self.endpoint_groups:
            self._located_processing(record, location)
        if "training" in self.endpoint_groups:
            record.training = provider_default_training()
        notes = {"source": LOCATIONS_SOURCE} if "processing" in self.endpoint_groups else {}
        record.evidence.append(
            evidence.model_copy(
                update={
                    "attributes": list(self.endpoint_groups),
                    "request": {**request, **notes},
                    "response": _shown_endpoint(entry),
                }
            )
        )
        return record

    def _located_processing(self, record: StorageResource, location: str) -> None:
        """Processing in one location: its region, anywhere for `global`, unknown if not a known region."""
        if location == GLOBAL_LOCATION:
            record.processing = Processing(raw=location, scope="global", regions=[ANY_REGION])
            return
        known = self.catalog.country_of("gcp", location) is not None
        scope: ProcessingScope | None = "region" if known else None
        record.processing = Processing(raw=location, scope=scope, regions=[location])
        if not known:
            unknown = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"Vertex AI location {location!r} is not a region of the zone catalog",
            )
            record.unknown["processing.scope"] = unknown
            record.unknown["processing.regions"] = unknown

    def _global_endpoint(self, project: str) -> StorageResource:
        """The project's global endpoint: anywhere, unless gcp.restrictEndpointUsage denies it."""
        resource_id = f"{RESOURCE_PREFIX}projects/{project}/locations/{GLOBAL_LOCATION}"
        record = self._identity(project, GLOBAL_ENDPOINT, resource_id, "ai-endpoint", now())
        if "training" in self.endpoint_groups:
            record.training = provider_default_training()
        if "processing" not in self.endpoint_groups:
            return record
        read = self.org_policy.effective(project, ENDPOINT_CONSTRAINT)
        if read.document is None:
            unknown = read.unknown or Unknown(code=UnknownCode.ERROR, reason="no answer")
            record.processing = Processing(raw=GLOBAL_ENDPOINT, scope=None, regions=[])
            not_read = Unknown(
                code=unknown.code, reason=f"{ENDPOINT_CONSTRAINT} not readable: {unknown.reason}"
            )
            record.unknown["processing.regions"] = record.unknown["processing.scope"] = not_read
            decision = not_read.reason
        else:
            usage = endpoint_usage(read.document)
            decision = usage.why
            if usage.denied is True:
                # Refuses every request: processes nowhere (scope none, which the shipped
                # residency.processing-in-zone accepts; an empty list alone is never compliant).
                raw = f"{GLOBAL_ENDPOINT} denied by org-policy:{ENDPOINT_CONSTRAINT}"
                record.processing = Processing(raw=raw, scope="none", regions=[])
            elif usage.denied is False:
                record.processing = Processing(raw=GLOBAL_ENDPOINT, scope="global", regions=[ANY_REGION])
            else:
                record.processing = Processing(raw=GLOBAL_ENDPOINT, scope=None, regions=[])
                undecided = Unknown(
                    code=UnknownCode.NOT_SUPPORTED,
                    reason=f"{ENDPOINT_CONSTRAINT} cannot be evaluated: {usage.why}",
                )
                record.unknown["processing.regions"] = record.unknown["processing.scope"] = undecided
        if read.evidence is not None:
            request = {
                **(read.evidence.request or {}),
                "decision": decision,
                "source": RESTRICT_ENDPOINT_SOURCE,
            }
            record.evidence.append(
                read.evidence.model_copy(update={"attributes": ["processing"], "request": request})
            )
        return record

    def _cache_config(self, project: str) -> Answer[dict[str, Any]]:
        name = f"projects/{project}/cacheConfig"
        request = {"name": name}
        try:
            url = self.apis.base("aiplatform") + f"/v1/{name}"
        except NotCalled as exc:  # not sent, so not counted
            unknown = describe_error(exc, CACHE_CALL)
            evidence = Evidence(
                call=CACHE_CALL,
                at=now(),
                attributes=["training.cache_enabled"],
                request=request,
                error=unknown.reason,
            )
            return Answer(None, evidence, exc, unknown)
        return self.recorder.call(
            CACHE_CALL,
            ["training.cache_enabled"],
            request,
            lambda: self._get(url, {}, functools.partial(parse_cache_config, project)),
        )

    def _settings(self, project: str, cache: Answer[dict[str, Any]] | None) -> StorageResource:
        """The project's AI settings: the training default and whether prompts are cached."""
        name = f"projects/{project}/cacheConfig"
        record = self._identity(project, name, RESOURCE_PREFIX + name, "ai-settings", now())
        if not self.settings_groups:
            return record
        training = provider_default_training()
        if cache is None:
            record.unknown["training.cache_enabled"] = Unknown(
                code=UnknownCode.NOT_COLLECTED, reason="no loaded policy reads it"
            )
        elif cache.value is None:
            record.unknown["training.cache_enabled"] = cache.unknown or Unknown(
                code=UnknownCode.ERROR, reason=f"no answer ({CACHE_CALL})"
            )
            record.evidence.append(cache.evidence)
        else:
            training.cache_enabled = not cache.value.get("disableCache", False)
            request = {**(cache.evidence.request or {}), "source": CACHE_SOURCE}
            record.evidence.append(cache.evidence.model_copy(update={"request": request}))
        record.training = training
        return record
