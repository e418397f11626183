"""Google Cloud scanner: `auditor scan gcp --project ID...`: Cloud Storage buckets, and Vertex AI
endpoints and settings (`auditor.scan.gcp_vertex`), each listed only when a loaded policy is scoped
to its kind.

One `storage:buckets.list` page answers every attribute group of its buckets (location,
locationType, customPlacementConfig, encryption, labels, iamConfiguration, retentionPolicy), so
buckets are never re-fetched; only buckets the listing reports as ``unreachable`` get their own
``buckets.get``. Answers are read as raw bytes through the client's connection and parsed here, so
an empty, garbled or truncated answer is a `MalformedAnswer` (retried, then unknown with a bounded
excerpt of its bytes as evidence), never a silently empty bucket or listing. Credentials are
Application Default Credentials; with ``STORAGE_EMULATOR_HOST`` set, google-cloud-storage itself
switches to anonymous credentials and the emulator endpoint, and the other Google APIs are called
only where ``--api-endpoint`` points them (`auditor.scan.gcp_rest`). A bucket's minimum TLS
version is its project's effective ``gcp.restrictTLSVersion`` (`auditor.scan.gcp_org_policy`).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import quote

import click
import google.cloud.storage as storage  # google.cloud holds typed and untyped packages: import by path
import orjson
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.cloud.storage.retry import DEFAULT_RETRY
from pydantic import ValidationError

from auditor.cli_options import SCAN_EXIT_CODES, list_option
from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    LocationType,
    Provider,
    Replica,
    ReplicaKind,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import Answer, CallRecorder, RetrySettings, now
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.gcp_errors import (
    MALFORMED,
    MalformedAnswer,
    describe_error,
    error_evidence,
    json_object,
    raw_excerpt,
    short_repr,
)
from auditor.scan.gcp_org_policy import OrgPolicyReader, TlsPolicies
from auditor.scan.gcp_rest import GoogleApis, RetryPolicy, SharedCredentials
from auditor.scan.gcp_source import API_SERVICES, GcpCatalog, GcpCloud, GcpOptions, bucket_regions
from auditor.scan.gcp_tls_policy import TLS_CONSTRAINT, TlsPolicyEntry, load_tls_policy
from auditor.scan.gcp_vertex import VertexScan
from auditor.scan.section import options_retry, section_options
from auditor.scan.threads import stream

LIST_CALL = "storage:buckets.list"
GET_CALL = "storage:buckets.get"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# The transport paths a project's gcp.restrictTLSVersion feeds: read only when a bucket policy reads one.
TLS_PATHS = ("transport.min_tls_version", "transport.min_tls_enforced_by")
# noAcl returns every field the scanner reads and needs only storage.buckets.list; "full" adds
# owner/acl/defaultObjectAcl, which the audit does not use.
PROJECTION = "noAcl"
# Every bucket lives in exactly two regions when its locationType is dual-region.
DUAL_REGION_MEMBERS = 2

# https://cloud.google.com/storage/docs/encryption/default-keys: without a CMEK, Cloud Storage
# encrypts data at rest with AES-256 under Google-owned and Google-managed keys.
DEFAULT_ENCRYPTION_SOURCE = "https://cloud.google.com/storage/docs/encryption/default-keys"
# https://cloud.google.com/storage/docs/request-endpoints: "JSON API endpoints only accept HTTPS
# requests", but XML API endpoints accept HTTP as well as HTTPS, and no bucket setting turns that
# off. So plaintext is NOT refused for a GCS bucket as a whole.
REQUEST_ENDPOINTS_SOURCE = "https://cloud.google.com/storage/docs/request-endpoints"
PLAINTEXT_NOTE = (
    "Cloud Storage JSON API endpoints accept only HTTPS, but XML API endpoints accept plain HTTP "
    f"too and no bucket setting refuses it ({REQUEST_ENDPOINTS_SOURCE})."
)
CSEK_NOTE = (
    "Customer-supplied encryption keys (CSEK) and per-object KMS keys are set per object and are "
    "not visible on the bucket; this record describes the bucket's default encryption only."
)

_LOCATION_TYPES: dict[str, LocationType] = {
    "region": "region",
    "dual-region": "dual-region",
    "multi-region": "multi-region",
}
_MEMBER_KIND: dict[str, ReplicaKind] = {
    "dual-region": "dual-region-member",
    "multi-region": "multi-region-member",
}
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")
# The shared retry/timeout settings this scanner honours (declared with its options).
RETRY_SUPPORTED = GcpOptions.retry_used


# --- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListPage:
    """One parsed `buckets.list` page."""

    items: list[Any]
    unreachable: list[str]
    next_page_token: str | None


def parse_list_page(body: bytes) -> ListPage:
    """A `buckets.list` answer, or `MalformedAnswer` when it is unusable as a whole.

    ``{"kind": "storage#buckets"}`` without items is a project with no buckets. An empty body,
    non-JSON, ``{}``, a wrong ``kind``, ``items`` or ``unreachable`` that are not lists, or a page
    with neither items nor unreachable buckets that still has a ``nextPageToken`` are malformed.
    Single entries are judged one by one later (an entry without a name, a bucket without location).
    """
    data = json_object(LIST_CALL, body, "listing page")
    kind = data.get("kind")
    if kind is not None and kind != "storage#buckets":
        raise MalformedAnswer(LIST_CALL, f"listing page has kind {kind!r}, not 'storage#buckets'", body)
    items = data.get("items")
    if items is not None and not isinstance(items, list):
        raise MalformedAnswer(LIST_CALL, f"'items' is a {type(items).__name__}, not a list", body)
    unreachable = data.get("unreachable")
    if unreachable is not None and (
        not isinstance(unreachable, list) or not all(isinstance(u, str) and u for u in unreachable)
    ):
        raise MalformedAnswer(LIST_CALL, "'unreachable' is not a list of bucket names", body)
    token = data.get("nextPageToken")
    if token is not None and (not isinstance(token, str) or not token):
        raise MalformedAnswer(LIST_CALL, f"'nextPageToken' {token!r} is not a page token", body)
    if not items and not unreachable:
        if token is not None:
            raise MalformedAnswer(LIST_CALL, "listing page has a nextPageToken but no items", body)
        if kind is None:
            raise MalformedAnswer(LIST_CALL, f"listing page says nothing: {short_repr(body)}", body)
    return ListPage(list(items or []), list(unreachable or []), token)


def parse_bucket(body: bytes, name: str) -> dict[str, Any]:
    """A `buckets.get` answer for bucket `name`, or `MalformedAnswer`."""
    data = json_object(GET_CALL, body, "bucket resource")
    kind = data.get("kind")
    if kind is not None and kind != "storage#bucket":
        raise MalformedAnswer(GET_CALL, f"bucket resource has kind {kind!r}, not 'storage#bucket'", body)
    if data.get("name") != name:
        raise MalformedAnswer(
            GET_CALL, f"bucket resource names {data.get('name')!r}, not the requested {name!r}", body
        )
    return data


# --- record building ----------------------------------------------------------------------------


class BucketRecordBuilder:
    """Turns one raw bucket resource (JSON API shape) into a `StorageResource`."""

    def __init__(self, needs: AttributeNeeds, catalog: ZoneCatalog, tls: TlsPolicies) -> None:
        """`needs` are the buckets' (`AttributeNeeds.for_kinds("bucket")`); `tls` gives each
        project's minimum TLS version."""
        self.catalog = catalog
        self.tls = tls
        self._groups = [
            g for g in ("location", "encryption", "transport", "access", "tags") if needs.wants(g)
        ]

    def groups(self) -> list[str]:
        """The attribute groups the loaded policies need, in model order."""
        return list(self._groups)

    def identity(self, project: str, name: str, at: datetime) -> StorageResource:
        """A record with identity only (every group not collected)."""
        return StorageResource(
            provider="gcp", kind="bucket", account=project, name=name, id=f"gs://{name}", scanned_at=at
        )

    def build(
        self, project: str, props: Mapping[str, Any], at: datetime, call: str, request: dict[str, Any]
    ) -> StorageResource:
        """The record of one bucket from its listing (or get) entry.

        A field of a shape the API never sends makes the group it feeds unknown (``error``), never
        absent, and never stops the record: the other groups are still read.
        """
        resource = self.identity(project, str(props.get("name")), at)
        groups = self.groups()
        notes: list[str] = []
        readers: dict[str, Callable[[StorageResource, Mapping[str, Any], str], None]] = {
            "location": self._location,
            "encryption": self._encryption,
            "access": self._access,
            "tags": self._tags,
        }
        for group in groups:
            reader = readers.get(group)
            if reader is None:
                continue
            try:
                reader(resource, props, call)
            except (TypeError, AttributeError, ValueError, KeyError) as exc:
                setattr(resource, group, None)
                for path in [p for p in resource.unknown if p.split(".", 1)[0] == group]:
                    del resource.unknown[path]
                resource.unknown[group] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"{MALFORMED}: the bucket's {group} fields cannot be read "
                    f"({type(exc).__name__}: {exc}) ({call})",
                )
        if "encryption" in groups:
            notes.append(CSEK_NOTE)
        if "transport" in groups:
            notes.append(PLAINTEXT_NOTE)
        evidence_request = {**request, "notes": notes} if notes else dict(request)
        resource.evidence.append(
            Evidence(call=call, at=at, attributes=groups, request=evidence_request, response=dict(props))
        )
        if "transport" in groups:
            self._transport(resource, project)
        return resource

    def _location(self, resource: StorageResource, props: Mapping[str, Any], call: str) -> None:
        raw = props.get("location")
        raw_type = props.get("locationType")
        kind = _LOCATION_TYPES.get(raw_type.lower()) if isinstance(raw_type, str) else None
        if not isinstance(raw, str) or not raw or kind is None:
            # Never decide from the code alone: 'EU' is a multi-region and a dual-region code.
            code = raw if isinstance(raw, str) and raw else None
            has_raw = code is not None
            resource.location = Location(
                raw=code,
                type=kind,
                primary=code.lower() if code is not None else None,
                regions=[],
                replicas=[],
            )
            missing = f"locationType {raw_type!r}" if has_raw else f"location ({raw!r})"
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{MALFORMED}: bucket resource has no usable {missing} ({call})",
            )
            fed = ["regions", "replicas"]
            fed += ["type"] if kind is None else []
            fed += [] if has_raw else ["raw", "primary"]
            for leaf in fed:
                resource.unknown[f"location.{leaf}"] = unknown
            return
        members, problems = self._members(raw, kind, props)
        member_kind = _MEMBER_KIND.get(kind)
        resolved = [r for r in members if self.catalog.country_of("gcp", r) is not None]
        unresolved = [r for r in members if r not in resolved]
        # Partial knowledge: some members are known to hold the data, the others are not readable.
        partial = bool(problems or unresolved) and bool(resolved) and member_kind is not None
        regions = resolved if partial else members
        replicas = [Replica(region=r, kind=member_kind) for r in regions] if member_kind else []
        resource.location = Location(
            raw=raw, type=kind, primary=raw.lower(), regions=regions, replicas=replicas
        )
        if not problems and not unresolved:
            return
        parts: list[str] = []
        if problems:
            parts.append(f"{MALFORMED}: {'; '.join(problems)} ({call})")
        if unresolved:
            parts.append(f"{kind} location {raw!r} resolves to {unresolved}, not in the zone catalog")
        if partial:
            parts.append(f"known members: {resolved}")
        unknown = Unknown(
            code=UnknownCode.ERROR if problems else UnknownCode.NOT_SUPPORTED,
            reason="; ".join(parts),
            partial="members" if partial else None,
        )
        resource.unknown["location.regions"] = unknown
        resource.unknown["location.replicas"] = unknown

    def _members(self, raw: str, kind: LocationType, props: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """The member regions of a location, and what prevents knowing all of them."""
        if kind != "dual-region":
            return bucket_regions(self.catalog, raw, kind, None), []
        problems: list[str] = []
        placement = props.get("customPlacementConfig")
        data_locations: Any = None
        if placement is not None:
            if isinstance(placement, dict):
                data_locations = placement.get("dataLocations")
            else:
                problems.append(f"customPlacementConfig is a {type(placement).__name__}")
        if data_locations is not None and not isinstance(data_locations, list):
            problems.append(f"dataLocations is a {type(data_locations).__name__}")
            data_locations = None
        named = sorted({d.lower() for d in data_locations or [] if isinstance(d, str) and d})
        unreadable = len([d for d in data_locations or [] if not (isinstance(d, str) and d)])
        if unreadable:
            problems.append(f"{unreadable} dataLocations entries are not region names")
        if named:
            if len(named) < DUAL_REGION_MEMBERS:
                problems.append(
                    f"dual-region {raw!r} lists {len(named)} of its {DUAL_REGION_MEMBERS} dataLocations"
                )
            return named, problems
        code = raw.lower()
        if code in self.catalog.section("gcp", GcpCatalog).dual_regions:
            return bucket_regions(self.catalog, raw, kind, None), problems
        if code in self.catalog.section("gcp", GcpCatalog).configurable_dual_region_codes or problems:
            # A configurable dual-region always answers the regions it chose.
            problems.append(f"configurable dual-region {raw!r} has no customPlacementConfig.dataLocations")
            return [], problems
        return bucket_regions(self.catalog, raw, kind, None), problems  # a code the catalog does not know

    def _encryption(self, resource: StorageResource, props: Mapping[str, Any], call: str) -> None:
        settings = props.get("encryption")
        if settings is not None and not isinstance(settings, dict):
            raise TypeError(f"'encryption' is a {type(settings).__name__}")
        key = (settings or {}).get("defaultKmsKeyName")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"'defaultKmsKeyName' is a {type(key).__name__}")
        if not key:
            resource.encryption = Encryption(
                enabled=True,
                algorithm="AES256",
                scheme="google-managed",
                key_management="provider-managed",
                key_id=None,
                key_location=None,
                provider_default=True,
                source=DEFAULT_ENCRYPTION_SOURCE,
            )
            return
        match = _KMS_KEY.match(key)
        key_location = match.group("location").lower() if match else None
        resource.encryption = Encryption(
            enabled=True,
            # A CMEK wraps the AES-256 data keys (Cloud KMS symmetric keys); the cipher is unchanged.
            algorithm="AES256",
            scheme="CMEK",
            key_management="customer-managed",
            key_id=key,
            key_location=key_location,
        )
        if key_location is None:
            resource.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"defaultKmsKeyName {key!r} is not a Cloud KMS key name ({call})",
            )
        elif (
            key_location not in self.catalog.section("gcp", GcpCatalog).kms_locations
            and self.catalog.country_of("gcp", key_location) is None
        ):
            resource.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"Cloud KMS location {key_location!r} of {key!r} is not in the zone catalog",
            )

    def _access(self, resource: StorageResource, props: Mapping[str, Any], call: str) -> None:
        iam = props.get("iamConfiguration")
        if iam is not None and not isinstance(iam, dict):
            raise TypeError(f"'iamConfiguration' is a {type(iam).__name__}")
        prevention = (iam or {}).get("publicAccessPrevention")
        if prevention is not None and not isinstance(prevention, str):
            raise TypeError(f"'publicAccessPrevention' is a {type(prevention).__name__}")
        ubla_settings = (iam or {}).get("uniformBucketLevelAccess")
        ubla = ubla_settings.get("enabled") if isinstance(ubla_settings, dict) else None
        resource.access = Access(
            public_access_blocked=prevention == "enforced",
            detail={
                "uniformBucketLevelAccess": ubla,
                "publicAccessPrevention": prevention,
                "retentionPolicy": props.get("retentionPolicy"),
            },
        )

    def _tags(self, resource: StorageResource, props: Mapping[str, Any], call: str) -> None:
        labels = props.get("labels")
        if labels is not None and not isinstance(labels, dict):
            raise TypeError(f"'labels' is a {type(labels).__name__}")
        resource.tags = {str(k): str(v) for k, v in (labels or {}).items()}

    def _transport(self, resource: StorageResource, project: str) -> None:
        finding = self.tls.of(project)
        min_version = finding.min_version
        resource.transport = Transport(
            plaintext_refused=False,
            plaintext_refused_by=None,
            min_tls_version=min_version,
            min_tls_enforced_by=f"org-policy:{TLS_CONSTRAINT}" if min_version is not None else None,
        )
        resource.evidence.extend(finding.evidence)
        if finding.unknown is not None:
            resource.unknown["transport.min_tls_version"] = finding.unknown
            resource.unknown["transport.min_tls_enforced_by"] = finding.unknown

    def unreadable(
        self,
        project: str,
        name: str,
        at: datetime,
        unknown: Unknown,
        call: str,
        request: dict[str, Any],
        props: Mapping[str, Any],
    ) -> StorageResource:
        """A bucket whose answer arrived but could not be read at all: every needed group unknown."""
        resource = self.identity(project, name, at)
        groups = self.groups()
        for group in groups:
            resource.unknown[group] = unknown
        raw = orjson.dumps(props, default=str)
        resource.evidence.append(
            Evidence(
                call=call,
                at=at,
                attributes=groups,
                request=request,
                response=raw_excerpt(raw),
                error=unknown.reason,
            )
        )
        return resource

    def failed(self, project: str, name: str, answer: Answer[Any]) -> StorageResource:
        """A bucket whose own GET failed: every needed group unknown with the reason.

        A malformed answer keeps its first bytes (`raw_excerpt`) as the evidence's response.
        """
        resource = self.identity(project, name, answer.evidence.at)
        unknown = answer.unknown or Unknown(code=UnknownCode.ERROR, reason=f"no answer ({GET_CALL})")
        for group in self.groups():
            resource.unknown[group] = unknown
        resource.evidence.append(answer.evidence)
        return resource


# --- the scanner --------------------------------------------------------------------------------

_T = TypeVar("_T")


class GcsScanner(Scanner):
    """Inventories the Cloud Storage buckets and the Vertex AI resources of one or more projects.

    Each kind is listed only when a loaded policy is scoped to it: a storage-only policy set makes
    no Vertex AI call, an AI-only set no Cloud Storage call.
    """

    provider: ClassVar[Provider] = "gcp"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        projects: Sequence[str],
        *,
        concurrency: int = 16,
        timeout: float = 30.0,
        retry_deadline: float = 120.0,
        tls_policy: Mapping[str, TlsPolicyEntry] | None = None,
        api_endpoint: str | None = None,
        page_size: int | None = None,
        retry: Retry | None = None,
        retry_settings: RetrySettings | None = None,
        api_endpoints: Mapping[str, str] | None = None,
        vertex_locations: Sequence[str] | None = None,
    ) -> None:
        """`api_endpoints` maps an API (`API_SERVICES`) to another base URL (`api_endpoint` is the
        storage one); `vertex_locations` replaces the Vertex AI locations listing."""
        super().__init__(needs, catalog, concurrency)
        self.projects = list(dict.fromkeys(projects))
        given = retry_settings or RetrySettings()
        given.refuse_unsupported("gcp", RETRY_SUPPORTED)
        self.settings = given.merged(timeout=timeout, retry_deadline=retry_deadline)
        read = float(self.settings.timeout or timeout)
        # One number bounds both the connection and the read, unless a connect timeout is given.
        self.timeout: float | tuple[float, float] = (
            read if given.connect_timeout is None else (given.connect_timeout, read)
        )
        base = (retry or DEFAULT_RETRY).with_timeout(float(self.settings.retry_deadline or 0.0))
        if given.retry_backoff is not None:
            base = base.with_delay(initial=given.retry_backoff)
        transient = cast(Callable[[Exception], bool], base._predicate)
        # A malformed 2xx answer is retried like a 5xx: a proxy or a cut connection may have
        # broken it, and the next attempt may be whole.
        self.retry: Retry = base.with_predicate(
            lambda exc: isinstance(exc, MalformedAnswer) or bool(transient(exc))
        )
        endpoints = dict(api_endpoints or {})
        self.api_endpoint = endpoints.pop("storage", None) or api_endpoint
        self.page_size = page_size
        self.recorder = CallRecorder(self.calls, describe_error, error_evidence)
        self.credentials = SharedCredentials()
        apis = GoogleApis.from_environment(endpoints)
        rest_retry = RetryPolicy(
            timeout=self.timeout,
            deadline=float(self.settings.retry_deadline or 0.0),
            backoff=given.retry_backoff if given.retry_backoff is not None else 1.0,
        )
        org_policy = OrgPolicyReader(apis, self.credentials, rest_retry, self.recorder)
        bucket_needs = needs.for_kinds("bucket")
        self.buckets_wanted = needs.wants_kind("bucket")
        tls_wanted = any(bucket_needs.wants(path) for path in TLS_PATHS)
        self.builder = BucketRecordBuilder(
            bucket_needs, catalog, TlsPolicies(org_policy if tls_wanted else None, tls_policy)
        )
        locations = list(dict.fromkeys(vertex_locations)) if vertex_locations else None
        self.vertex = VertexScan(
            needs, catalog, apis, self.credentials, rest_retry, self.recorder, org_policy, locations
        )
        self._local = threading.local()

    # clients: one per worker thread (a requests session is not meant to be shared across threads)

    def _client(self) -> storage.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            options = ClientOptions(api_endpoint=self.api_endpoint) if self.api_endpoint else None
            client = storage.Client(
                project=self.projects[0], credentials=self._shared_credentials(), client_options=options
            )
            self._local.client = client
        return cast(storage.Client, client)

    def _shared_credentials(self) -> Any:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            return None  # google-cloud-storage uses AnonymousCredentials against an emulator
        return self.credentials.scoped([READ_ONLY_SCOPE])

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield buckets and coverage gaps as each listing page and follow-up completes."""
        if not self.projects:
            return
        yield from stream(self._drive, capacity=max(64, 4 * self.concurrency), name="gcs-scan")

    def _drive(self, emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
        """List every project at once (each in a worker): its buckets, and its Vertex AI resources
        in another worker; the unreachable buckets' GETs and the Vertex AI locations' endpoint
        listings in another pool."""
        wanted = ((self.buckets_wanted, self._project_task), (self.vertex.wanted, self._vertex_task))
        per_project = [task for listed, task in wanted if listed]
        if not per_project:
            return
        workers = min(len(self.projects) * len(per_project), self.concurrency)
        project_pool = ThreadPoolExecutor(workers, "gcp-project")
        followup_pool = ThreadPoolExecutor(self.concurrency, "gcp-followup")
        try:
            tasks = [
                project_pool.submit(task, project, emit, followup_pool, stop)
                for project in self.projects
                for task in per_project
            ]
            wait(tasks)
        finally:
            followup_pool.shutdown(wait=True, cancel_futures=True)
            project_pool.shutdown(wait=True, cancel_futures=True)

    def _project_task(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        followups: ThreadPoolExecutor,
        stop: threading.Event,
    ) -> None:
        pending: list[Future[None]] = []
        try:
            self._list_project(project, emit, followups, pending, stop)
        except Exception as exc:  # anything unexpected still ends as a coverage gap, never a crash
            unknown = describe_error(exc, LIST_CALL)
            emit(self._gap(project, unknown.code, unknown.reason))
        finally:
            wait(pending)

    def _vertex_task(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        followups: ThreadPoolExecutor,
        stop: threading.Event,
    ) -> None:
        try:
            self.vertex.scan_project(project, emit, followups, stop)
        except Exception as exc:  # anything unexpected still ends as a coverage gap, never a crash
            unknown = describe_error(exc, "aiplatform")
            emit(self._gap(project, unknown.code, unknown.reason, scope="vertex"))

    def _gap(
        self,
        project: str,
        code: UnknownCode,
        reason: str,
        evidence: Evidence | None = None,
        scope: str = "project",
    ) -> CoverageGap:
        """A gap for `project`; `evidence` is the failed call's (a malformed answer's bytes bounded)."""
        return CoverageGap(
            provider="gcp",
            account=project,
            scope=scope,
            code=code,
            reason=reason,
            at=now(),
            evidence=[evidence] if evidence is not None else [],
        )

    def _get(self, path: str, query: dict[str, str], parse: Callable[[bytes], _T]) -> _T:
        """GET a JSON API path and parse its raw answer; errors and malformed answers are retried.

        Every attempt is bounded by `timeout` (connect and read) and all attempts by the retry
        deadline. The raw bytes are parsed here rather than by the client library, so an empty or
        garbled answer is a `MalformedAnswer` carrying its bytes, never a silently empty resource.
        """
        connection = self._client()._connection

        def attempt() -> _T:
            body = connection.api_request(
                method="GET", path=path, query_params=query, expect_json=False, timeout=self.timeout
            )
            return parse(body if isinstance(body, bytes) else str(body).encode())

        result: _T = self.retry(attempt)()
        return result

    def _list_project(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        followups: ThreadPoolExecutor,
        pending: list[Future[None]],
        stop: threading.Event,
    ) -> None:
        listed = 0
        page_number = 0
        token: str | None = None
        seen_tokens: set[str] = set()

        def stopped(code: UnknownCode, reason: str, evidence: Evidence) -> CoverageGap:
            # Say what was not listed: every bucket of this page and of the pages after it.
            if page_number > 1:
                reason = f"listing stopped at page {page_number} after {listed} buckets: {reason}"
            not_listed = "its buckets" if page_number == 1 else f"its buckets from page {page_number} on"
            return self._gap(project, code, f"{reason}; not listed: {not_listed}", evidence)

        while not stop.is_set():
            page_number += 1
            query = {"project": project, "projection": PROJECTION, "returnPartialSuccess": "true"}
            if self.page_size:
                query["maxResults"] = str(self.page_size)
            if token is not None:
                query["pageToken"] = token
            answer = self.recorder.call(
                LIST_CALL, [], dict(query), functools.partial(self._get, "/b", query, parse_list_page)
            )
            if answer.value is None:
                unknown = answer.unknown or describe_error(RuntimeError("no answer"), LIST_CALL)
                emit(stopped(unknown.code, unknown.reason, answer.evidence))
                return
            page = answer.value
            at = now()
            request: dict[str, Any] = {
                "project": project,
                "projection": PROJECTION,
                "returnPartialSuccess": True,
                "pageToken": token,
            }
            if self.page_size:
                request["maxResults"] = self.page_size
            for index, entry in enumerate(page.items, 1):
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not name:
                    raw = orjson.dumps(entry)
                    problem = f"{MALFORMED}: entry {index} of listing page {page_number} names no bucket"
                    emit(
                        self._gap(
                            project,
                            UnknownCode.ERROR,
                            f"{problem} ({short_repr(raw)}) ({LIST_CALL}); not listed: that bucket",
                            answer.evidence.model_copy(
                                update={"response": raw_excerpt(raw), "error": f"{problem} ({LIST_CALL})"}
                            ),
                        )
                    )
                    continue
                listed += 1
                emit(self._build_listed(project, name, entry, at, request))
            for resource_name in page.unreachable:
                name = resource_name.rsplit("/buckets/", 1)[-1]
                listed += 1
                pending.append(followups.submit(self._unreachable, project, name, emit))
            if page.next_page_token is None:
                return
            if page.next_page_token in seen_tokens:
                page_number += 1
                problem = (
                    f"{MALFORMED}: nextPageToken {page.next_page_token!r} repeats an earlier page's "
                    f"({LIST_CALL})"
                )
                repeated = {"nextPageToken": page.next_page_token}
                emit(
                    stopped(
                        UnknownCode.ERROR,
                        problem,
                        answer.evidence.model_copy(update={"response": repeated, "error": problem}),
                    )
                )
                return
            seen_tokens.add(page.next_page_token)
            token = page.next_page_token

    def _build_listed(
        self, project: str, name: str, entry: dict[str, Any], at: datetime, request: dict[str, Any]
    ) -> StorageResource:
        try:
            return self.builder.build(project, entry, at, LIST_CALL, request)
        except Exception as exc:  # a record is never lost to an entry it cannot read
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{MALFORMED}: listing entry unreadable ({type(exc).__name__}: {exc}) ({LIST_CALL})",
            )
            return self.builder.unreadable(project, name, at, unknown, LIST_CALL, request, entry)

    def _unreachable(self, project: str, name: str, emit: Callable[[InventoryRecord], None]) -> None:
        """A bucket the listing could not reach: GET it when any group is needed."""
        if not self.builder.groups():
            emit(self.builder.identity(project, name, now()))
            return
        request = {"bucket": name, "projection": PROJECTION}
        answer = self.recorder.call(
            GET_CALL,
            self.builder.groups(),
            request,
            lambda: self._get(f"/b/{quote(name, safe='')}", {"projection": PROJECTION}, _bucket_parser(name)),
        )
        if answer.value is None:
            emit(self.builder.failed(project, name, answer))
            return
        props = answer.value
        try:
            record = self.builder.build(project, props, now(), GET_CALL, request)
        except Exception as exc:  # a record is never lost to an answer it cannot read
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{MALFORMED}: bucket resource unreadable ({type(exc).__name__}: {exc}) ({GET_CALL})",
            )
            record = self.builder.unreadable(project, name, now(), unknown, GET_CALL, request, props)
        emit(record)


def _bucket_parser(name: str) -> Callable[[bytes], dict[str, Any]]:
    def parse(body: bytes) -> dict[str, Any]:
        return parse_bucket(body, name)

    return parse


# --- command ------------------------------------------------------------------------------------


@click.command("gcp", epilog=SCAN_EXIT_CODES)
@list_option(
    "--project",
    "projects",
    required=True,
    metavar="ID",
    help="Project id to scan",
)
@common_scan_options
@click.option(
    "--tls-policy",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML/JSON mapping project id -> its effective gcp.restrictTLSVersion policy, attested "
    "(see docs/scanners/gcp.md): used where the Org Policy API cannot be read.",
)
@click.option(
    "--api-endpoint",
    "api_endpoints",
    multiple=True,
    metavar="[SERVICE=]URL",
    help="Another base URL for an API: storage (the default when no SERVICE= is given), orgpolicy or "
    "aiplatform (which serves the regional Vertex AI endpoints too); repeatable. STORAGE_EMULATOR_HOST "
    "is honoured as google-cloud-storage does.",
)
@list_option(
    "--vertex-location",
    "vertex_locations",
    metavar="LOCATION",
    help="Vertex AI location whose endpoints to list (default: every location the Vertex AI API "
    "lists for the project)",
)
def command(
    projects: tuple[str, ...],
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    tls_policy: Path | None,
    api_endpoints: tuple[str, ...],
    vertex_locations: tuple[str, ...],
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory the Cloud Storage buckets and Vertex AI resources of one or more projects."""
    if not projects:
        raise InputError("--project", "give at least one project id")
    try:
        section = GcpCloud(
            projects=list(projects),
            api_endpoints=endpoint_flags(api_endpoints),
            tls_policy=tls_policy,
            vertex_locations=list(vertex_locations) or None,
            options={"concurrency": concurrency},
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--vertex-location" if first["loc"][:1] == ("vertex_locations",) else "--api-endpoint"
        raise InputError(flag, str(first["msg"]).removeprefix("Value error, ")) from None
    return scan_section(section, list(policy_paths), output, progress, retry)


_SERVICE_PREFIX = re.compile(r"^(?P<service>[a-z]+)=(?P<url>.*)$")


def endpoint_flags(values: Sequence[str]) -> dict[str, str]:
    """`--api-endpoint` values as {service: URL}; a bare URL is the Cloud Storage endpoint."""
    endpoints: dict[str, str] = {}
    for value in values:
        named = _SERVICE_PREFIX.match(value)
        service, url = (named.group("service"), named.group("url")) if named else ("storage", value)
        if service not in API_SERVICES:
            known = ", ".join(sorted(API_SERVICES))
            raise InputError("--api-endpoint", f"unknown service {service!r} in {value!r} (one of {known})")
        if service in endpoints:
            raise InputError("--api-endpoint", f"the {service} endpoint is given twice")
        endpoints[service] = url
    return endpoints


# --- the source: one section of auditor.yaml scanned (auditor.scan.gcp_source registers it) ------


def scan_section(
    section: GcpCloud,
    policy_paths: list[Path],
    output: Path,
    progress: bool | None,
    retry: RetrySettings | None = None,
) -> ScanSummary:
    """Scan what `section` names into `output` (the command and scale-out units both run this)."""
    options = section_options(section, GcpOptions)
    project_ids = [p.strip() for value in section.projects for p in value.split(",") if p.strip()]
    if not project_ids:
        raise InputError("projects", "give at least one project id")
    needs, catalog = scanner_context(policy_paths)
    tls = load_tls_policy(section.tls_policy) if section.tls_policy is not None else None
    scanner = GcsScanner(
        needs,
        catalog,
        project_ids,
        concurrency=options.concurrency,
        retry_settings=retry or options_retry(options),
        tls_policy=tls,
        api_endpoint=section.api_endpoint,
        api_endpoints={str(service): url for service, url in section.api_endpoints.items()},
        vertex_locations=section.vertex_locations,
    )
    return finish_scan(scanner, output, progress)
