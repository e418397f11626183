"""Google Cloud Storage scanner: `auditor scan gcp --project ID...`.

One `storage:buckets.list` page answers every attribute group of its buckets (location,
locationType, customPlacementConfig, encryption, labels, iamConfiguration, retentionPolicy), so
buckets are never re-fetched; only buckets the listing reports as ``unreachable`` get their own
``buckets.get``. Credentials are Application Default Credentials; with ``STORAGE_EMULATOR_HOST``
set, google-cloud-storage itself switches to anonymous credentials and the emulator endpoint.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, cast

import click
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.client_options import ClientOptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

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
from auditor.policy.yamlfile import load_yaml
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.command import common_scan_options, finish_scan

LIST_CALL = "storage:buckets.list"
GET_CALL = "storage:buckets.get"
TLS_POLICY_CALL = "file:gcp.restrictTLSVersion"
TLS_CONSTRAINT = "gcp.restrictTLSVersion"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# noAcl returns every field the scanner reads and needs only storage.buckets.list; "full" adds
# owner/acl/defaultObjectAcl, which the audit does not use.
PROJECTION = "noAcl"

# https://cloud.google.com/storage/docs/encryption/default-keys: without a CMEK, Cloud Storage
# encrypts data at rest with AES-256 under Google-owned and Google-managed keys.
DEFAULT_ENCRYPTION_SOURCE = "https://cloud.google.com/storage/docs/encryption/default-keys"
# https://cloud.google.com/storage/docs/request-endpoints: "JSON API endpoints only accept HTTPS
# requests", but XML API endpoints accept HTTP as well as HTTPS, and no bucket setting turns that
# off. So plaintext is NOT refused for a GCS bucket as a whole.
REQUEST_ENDPOINTS_SOURCE = "https://cloud.google.com/storage/docs/request-endpoints"
# https://cloud.google.com/assured-workloads/docs/restrict-tls-versions: a deny list that accepts
# only TLS_VERSION_1 and TLS_VERSION_1_1; everything not denied stays allowed.
RESTRICT_TLS_SOURCE = "https://cloud.google.com/assured-workloads/docs/restrict-tls-versions"

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
_REQUEST_PREFIX = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD) \S+: ")
_TLS_ORDER = ("1.0", "1.1", "1.2")
_TLS_VALUES = {
    "TLS_VERSION_1": "1.0",
    "TLS_VERSION_1_0": "1.0",
    "TLS1_0": "1.0",
    "TLS1.0": "1.0",
    "TLS_VERSION_1_1": "1.1",
    "TLS1_1": "1.1",
    "TLS1.1": "1.1",
}


# --- TLS org-policy file ----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsPolicyEntry:
    """The effective gcp.restrictTLSVersion of one project, as read from --tls-policy."""

    project: str
    denied: frozenset[str]
    raw: Any
    where: str
    problem: str | None = None

    @property
    def min_version(self) -> str | None:
        """Lowest TLS version the constraint leaves allowed (TLS 1.2+ cannot be denied by it)."""
        if self.problem is not None:
            return None
        return next(v for v in _TLS_ORDER if v not in self.denied)


def _tls_value(value: Any, where: str) -> str:
    text = str(value).strip().upper()
    text = text.removeprefix("IS:")
    version = _TLS_VALUES.get(text)
    if version is None:
        raise InputError(
            where,
            f"unknown TLS version {value!r}: {TLS_CONSTRAINT} denies only TLS_VERSION_1 (TLS 1.0) "
            "and TLS_VERSION_1_1 (TLS 1.1)",
        )
    return version


def _str_list(value: Any, where: str, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InputError(where, f"'{field}' must be a list")
    return value


def _parse_tls_entry(project: str, raw: Any, where: str) -> TlsPolicyEntry:
    """One project's entry: the short form or a raw v2 / v1 org-policy document."""
    if not isinstance(raw, dict):
        raise InputError(where, f"project '{project}': expected a mapping")
    denied: set[str] = set()
    if "restricted_tls_versions" in raw:
        extra = set(raw) - {"restricted_tls_versions"}
        if extra:
            raise InputError(where, f"project '{project}': unexpected keys {sorted(extra)}")
        for value in _str_list(raw["restricted_tls_versions"], where, "restricted_tls_versions"):
            denied.add(_tls_value(value, where))
        return TlsPolicyEntry(project, frozenset(denied), raw, where)
    if "spec" in raw or "name" in raw:  # orgpolicy v2 Policy (gcloud org-policies describe)
        name = raw.get("name")
        if name is not None and not str(name).endswith(f"/policies/{TLS_CONSTRAINT}"):
            raise InputError(where, f"project '{project}': policy '{name}' is not {TLS_CONSTRAINT}")
        spec = raw.get("spec") or {}
        if not isinstance(spec, dict):
            raise InputError(where, f"project '{project}': 'spec' must be a mapping")
        if spec.get("inheritFromParent"):
            return _tls_problem(project, raw, where, "inheritFromParent is set: give the --effective policy")
        if spec.get("reset"):
            return TlsPolicyEntry(project, frozenset(), raw, where)
        for rule in _str_list(spec.get("rules"), where, "spec.rules"):
            if not isinstance(rule, dict):
                raise InputError(where, f"project '{project}': each rule must be a mapping")
            if rule.get("condition"):
                return _tls_problem(project, raw, where, "conditional rules cannot be evaluated offline")
            if rule.get("denyAll"):
                return _tls_problem(
                    project, raw, where, "denyAll is not a valid deny list for this constraint"
                )
            values = rule.get("values") or {}
            if values.get("allowedValues"):
                return _tls_problem(project, raw, where, "allowedValues are not supported by this constraint")
            for value in _str_list(values.get("deniedValues"), where, "deniedValues"):
                denied.add(_tls_value(value, where))
        return TlsPolicyEntry(project, frozenset(denied), raw, where)
    if "listPolicy" in raw or "constraint" in raw:  # resource-manager v1 OrgPolicy
        constraint = str(raw.get("constraint", f"constraints/{TLS_CONSTRAINT}"))
        if constraint.removeprefix("constraints/") != TLS_CONSTRAINT:
            raise InputError(where, f"project '{project}': constraint '{constraint}' is not {TLS_CONSTRAINT}")
        if "restoreDefault" in raw:
            return TlsPolicyEntry(project, frozenset(), raw, where)
        listed = raw.get("listPolicy") or {}
        if not isinstance(listed, dict):
            raise InputError(where, f"project '{project}': 'listPolicy' must be a mapping")
        if listed.get("inheritFromParent"):
            return _tls_problem(project, raw, where, "inheritFromParent is set: give the effective policy")
        if listed.get("allValues") == "DENY" or listed.get("allowedValues"):
            return _tls_problem(project, raw, where, "only a deny list is valid for this constraint")
        for value in _str_list(listed.get("deniedValues"), where, "deniedValues"):
            denied.add(_tls_value(value, where))
        return TlsPolicyEntry(project, frozenset(denied), raw, where)
    raise InputError(
        where,
        f"project '{project}': expected 'restricted_tls_versions', or an org-policy document "
        "with 'spec' (v2) or 'listPolicy' (v1)",
    )


def _tls_problem(project: str, raw: Any, where: str, problem: str) -> TlsPolicyEntry:
    return TlsPolicyEntry(project, frozenset(), raw, where, problem=problem)


def load_tls_policy(path: Path) -> dict[str, TlsPolicyEntry]:
    """Read a --tls-policy file: a mapping of project id to its effective gcp.restrictTLSVersion."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a TLS policy file maps project ids to their gcp.restrictTLSVersion policy")
    return {
        str(project): _parse_tls_entry(str(project), raw, doc.where((str(project),)))
        for project, raw in doc.data.items()
    }


# --- errors -------------------------------------------------------------------------------------


def describe_error(exc: BaseException, operation: str) -> Unknown:
    """An API failure as an `Unknown`: '<code>: <message> (<operation>)'."""
    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause
        if cause is None:
            return Unknown(code=UnknownCode.TIMEOUT, reason=f"RetryError: {exc.message} ({operation})")
        inner = describe_error(cause, operation)
        return Unknown(code=inner.code, reason=f"{inner.reason}; retries gave up: {exc.message}")
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        status = int(exc.code) if exc.code is not None else 0
        reason = None
        if exc.errors and isinstance(exc.errors[0], dict):
            reason = exc.errors[0].get("reason")
        label = f"{status} {reason or type(exc).__name__}"
        # google-cloud-core prefixes the message with "<METHOD> <url>: "; the operation says it.
        message = _REQUEST_PREFIX.sub("", exc.message or "")
        if status in (401, 403):
            code = UnknownCode.ACCESS_DENIED
        elif status == 429:
            code = UnknownCode.THROTTLED
        elif status in (408, 504):
            code = UnknownCode.TIMEOUT
        else:
            code = UnknownCode.ERROR
        return Unknown(code=code, reason=f"{label}: {message} ({operation})")
    if isinstance(exc, requests.Timeout):
        return Unknown(code=UnknownCode.TIMEOUT, reason=f"Timeout: {exc} ({operation})")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return Unknown(code=UnknownCode.ACCESS_DENIED, reason=f"{type(exc).__name__}: {exc} ({operation})")
    return Unknown(code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {exc} ({operation})")


def _error_text(exc: BaseException) -> str:
    return describe_error(exc, "").reason.removesuffix(" ()")


# --- record building ----------------------------------------------------------------------------


class BucketRecordBuilder:
    """Turns one raw bucket resource (JSON API shape) into a `StorageResource`."""

    def __init__(
        self, needs: AttributeNeeds, catalog: ZoneCatalog, tls_policy: Mapping[str, TlsPolicyEntry] | None
    ) -> None:
        self.catalog = catalog
        self.tls_policy = tls_policy
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
        """The record of one bucket from its listing (or get) entry."""
        resource = self.identity(project, str(props.get("name")), at)
        groups = self.groups()
        notes: list[str] = []
        if "location" in groups:
            self._location(resource, props)
        if "encryption" in groups:
            self._encryption(resource, props)
            notes.append(CSEK_NOTE)
        if "transport" in groups:
            notes.append(PLAINTEXT_NOTE)
        if "access" in groups:
            self._access(resource, props)
        if "tags" in groups:
            labels = props.get("labels") or {}
            resource.tags = {str(k): str(v) for k, v in labels.items()}
        evidence_request = {**request, "notes": notes} if notes else dict(request)
        resource.evidence.append(
            Evidence(call=call, at=at, attributes=groups, request=evidence_request, response=dict(props))
        )
        if "transport" in groups:
            self._transport(resource, project, at)
        return resource

    def _location(self, resource: StorageResource, props: Mapping[str, Any]) -> None:
        raw = props.get("location")
        raw_type = props.get("locationType")
        kind = _LOCATION_TYPES.get(str(raw_type).lower()) if raw_type is not None else None
        placement = props.get("customPlacementConfig") or {}
        data_locations = [str(d) for d in placement.get("dataLocations") or []] or None
        if not raw or kind is None:
            # Never decide from the code alone: 'EU' is a multi-region and a dual-region code.
            primary = str(raw).lower() if raw else None
            resource.location = Location(raw=raw, type=kind, primary=primary, regions=[], replicas=[])
            missing = "location" if not raw else f"locationType {raw_type!r}"
            resource.unknown["location.regions"] = Unknown(
                code=UnknownCode.ERROR, reason=f"bucket resource has no usable {missing} ({LIST_CALL})"
            )
            if kind is None:
                resource.unknown["location.type"] = resource.unknown["location.regions"]
            return
        regions = self.catalog.gcs_regions(str(raw), kind, data_locations)
        replicas: list[Replica] = []
        member_kind = _MEMBER_KIND.get(kind)
        if member_kind is not None:
            replicas = [Replica(region=r, kind=member_kind) for r in regions]
        resource.location = Location(
            raw=str(raw), type=kind, primary=str(raw).lower(), regions=regions, replicas=replicas
        )
        unresolved = [r for r in regions if self.catalog.country_of("gcp", r) is None]
        if unresolved:
            resource.unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"{kind} location {raw!r} resolves to {unresolved}, not in the zone catalog",
            )

    def _encryption(self, resource: StorageResource, props: Mapping[str, Any]) -> None:
        key = (props.get("encryption") or {}).get("defaultKmsKeyName")
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
        match = _KMS_KEY.match(str(key))
        key_location = match.group("location").lower() if match else None
        resource.encryption = Encryption(
            enabled=True,
            # A CMEK wraps the AES-256 data keys (Cloud KMS symmetric keys); the cipher is unchanged.
            algorithm="AES256",
            scheme="CMEK",
            key_management="customer-managed",
            key_id=str(key),
            key_location=key_location,
        )
        if key_location is None:
            resource.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.ERROR, reason=f"defaultKmsKeyName {key!r} is not a Cloud KMS key name"
            )
        elif (
            key_location not in self.catalog.gcp.kms_locations
            and self.catalog.country_of("gcp", key_location) is None
        ):
            resource.unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"Cloud KMS location {key_location!r} of {key!r} is not in the zone catalog",
            )

    def _access(self, resource: StorageResource, props: Mapping[str, Any]) -> None:
        iam = props.get("iamConfiguration") or {}
        prevention = iam.get("publicAccessPrevention")
        ubla = (iam.get("uniformBucketLevelAccess") or {}).get("enabled")
        resource.access = Access(
            public_access_blocked=prevention == "enforced",
            detail={
                "uniformBucketLevelAccess": ubla,
                "publicAccessPrevention": prevention,
                "retentionPolicy": props.get("retentionPolicy"),
            },
        )

    def _transport(self, resource: StorageResource, project: str, at: datetime) -> None:
        entry = self.tls_policy.get(project) if self.tls_policy is not None else None
        min_version = entry.min_version if entry is not None else None
        resource.transport = Transport(
            plaintext_refused=False,
            plaintext_refused_by=None,
            min_tls_version=min_version,
            min_tls_enforced_by=f"org-policy:{TLS_CONSTRAINT}" if min_version is not None else None,
        )
        if entry is not None:
            resource.evidence.append(
                Evidence(
                    call=TLS_POLICY_CALL,
                    at=at,
                    attributes=["transport.min_tls_version"],
                    request={"file": entry.where, "project": project, "source": RESTRICT_TLS_SOURCE},
                    response=entry.raw,
                    error=entry.problem,
                )
            )
        if min_version is not None:
            return
        if self.tls_policy is None:
            reason = (
                f"{TLS_CONSTRAINT} not readable: no --tls-policy file was given and the org-policy "
                "API client (google-cloud-org-policy) is not installed"
            )
        elif entry is None:
            reason = f"{TLS_CONSTRAINT} not readable: project '{project}' is not in the --tls-policy file"
        else:
            reason = f"{TLS_CONSTRAINT} not readable: {entry.problem} ({entry.where})"
        unknown = Unknown(code=UnknownCode.NOT_SUPPORTED, reason=reason)
        resource.unknown["transport.min_tls_version"] = unknown
        resource.unknown["transport.min_tls_enforced_by"] = unknown

    def failed(
        self, project: str, name: str, at: datetime, exc: BaseException, request: dict[str, Any]
    ) -> StorageResource:
        """A bucket whose own GET failed: every needed group unknown with the reason."""
        resource = self.identity(project, name, at)
        groups = self.groups()
        unknown = describe_error(exc, GET_CALL)
        for group in groups:
            resource.unknown[group] = unknown
        resource.evidence.append(
            Evidence(call=GET_CALL, at=at, attributes=groups, request=request, error=_error_text(exc))
        )
        return resource


# --- the scanner --------------------------------------------------------------------------------

_DONE = object()


class GcsScanner(Scanner):
    """Inventories the Cloud Storage buckets of one or more projects."""

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
    ) -> None:
        super().__init__(needs, catalog, concurrency)
        self.projects = list(dict.fromkeys(projects))
        self.timeout = timeout
        self.retry: Retry = (retry or DEFAULT_RETRY).with_timeout(retry_deadline)
        self.api_endpoint = api_endpoint
        self.page_size = page_size
        self.builder = BucketRecordBuilder(needs, catalog, tls_policy)
        self._local = threading.local()
        self._credentials: Any = None
        self._credentials_lock = threading.Lock()

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
        with self._credentials_lock:
            if self._credentials is None:
                import google.auth

                self._credentials, _ = google.auth.default(scopes=[READ_ONLY_SCOPE])
            return self._credentials

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield buckets and coverage gaps as each listing page and follow-up completes."""
        if not self.projects:
            return
        results: queue.Queue[object] = queue.Queue(maxsize=max(64, 4 * self.concurrency))
        stop = threading.Event()

        def emit(record: InventoryRecord) -> None:
            while not stop.is_set():
                try:
                    results.put(record, timeout=0.1)
                    return
                except queue.Full:
                    continue

        project_pool = ThreadPoolExecutor(min(len(self.projects), self.concurrency), "gcs-project")
        followup_pool = ThreadPoolExecutor(self.concurrency, "gcs-bucket")
        try:
            for project in self.projects:
                project_pool.submit(self._project_task, project, emit, followup_pool, stop, results)
            finished = 0
            while finished < len(self.projects):
                item = results.get()
                if item is _DONE:
                    finished += 1
                else:
                    yield cast(InventoryRecord, item)
        finally:
            stop.set()
            followup_pool.shutdown(wait=True, cancel_futures=True)
            project_pool.shutdown(wait=True, cancel_futures=True)

    def _project_task(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        followups: ThreadPoolExecutor,
        stop: threading.Event,
        results: queue.Queue[object],
    ) -> None:
        pending: list[Future[None]] = []
        try:
            self._list_project(project, emit, followups, pending, stop)
        except Exception as exc:  # anything unexpected still ends as a coverage gap, never a crash
            unknown = describe_error(exc, LIST_CALL)
            emit(self._gap(project, unknown.code, unknown.reason))
        finally:
            wait(pending)
            while not stop.is_set():
                try:
                    results.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def _gap(self, project: str, code: UnknownCode, reason: str) -> CoverageGap:
        return CoverageGap(
            provider="gcp", account=project, scope="project", code=code, reason=reason, at=_now()
        )

    def _list_project(
        self,
        project: str,
        emit: Callable[[InventoryRecord], None],
        followups: ThreadPoolExecutor,
        pending: list[Future[None]],
        stop: threading.Event,
    ) -> None:
        client = self._client()
        iterator = client.list_buckets(
            project=project,
            projection=PROJECTION,
            page_size=self.page_size,
            timeout=self.timeout,
            retry=self.retry,
            return_partial_success=True,
        )
        pages = iterator.pages
        listed = 0
        page_number = 0
        while not stop.is_set():
            token = iterator.next_page_token
            try:
                page = next(pages)
            except StopIteration:
                return
            except Exception as exc:
                self.calls.add(LIST_CALL)
                unknown = describe_error(exc, LIST_CALL)
                reason = unknown.reason
                if page_number:
                    reason = f"listing stopped at page {page_number + 1} after {listed} buckets: {reason}"
                emit(self._gap(project, unknown.code, reason))
                return
            self.calls.add(LIST_CALL)
            page_number += 1
            at = _now()
            request: dict[str, Any] = {
                "project": project,
                "projection": PROJECTION,
                "returnPartialSuccess": True,
                "pageToken": token,
            }
            if self.page_size:
                request["maxResults"] = self.page_size
            for bucket in page:
                listed += 1
                emit(self.builder.build(project, bucket._properties, at, LIST_CALL, request))
            for resource_name in getattr(page, "unreachable", None) or []:
                name = str(resource_name).rsplit("/buckets/", 1)[-1]
                listed += 1
                pending.append(followups.submit(self._unreachable, project, name, emit))

    def _unreachable(self, project: str, name: str, emit: Callable[[InventoryRecord], None]) -> None:
        """A bucket the listing could not reach: GET it when any group is needed."""
        if not self.builder.groups():
            emit(self.builder.identity(project, name, _now()))
            return
        request = {"bucket": name, "projection": PROJECTION}
        bucket = storage.Bucket(self._client(), name=name)
        try:
            bucket.reload(projection=PROJECTION, timeout=self.timeout, retry=self.retry)
        except Exception as exc:
            self.calls.add(GET_CALL)
            emit(self.builder.failed(project, name, _now(), exc, request))
            return
        self.calls.add(GET_CALL)
        emit(self.builder.build(project, bucket._properties, _now(), GET_CALL, request))


def _now() -> datetime:
    return datetime.now(UTC)


# --- command ------------------------------------------------------------------------------------


@click.command("gcp")
@click.option(
    "--project",
    "projects",
    multiple=True,
    required=True,
    help="Project id to scan; repeat (or comma-separate) for several projects.",
)
@common_scan_options
@click.option(
    "--tls-policy",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML/JSON mapping project id -> its effective gcp.restrictTLSVersion policy "
    "(see docs/scanners/gcp.md). Without it the minimum TLS version is unknown.",
)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for each HTTP response.",
)
@click.option(
    "--retry-deadline",
    default=120.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="Seconds to keep retrying one call on 429/5xx/connection errors before giving up.",
)
@click.option(
    "--api-endpoint",
    default=None,
    help="Cloud Storage JSON API endpoint (e.g. a Private Service Connect endpoint); "
    "STORAGE_EMULATOR_HOST is honoured as google-cloud-storage does.",
)
def command(
    projects: tuple[str, ...],
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    tls_policy: Path | None,
    timeout: float,
    retry_deadline: float,
    api_endpoint: str | None,
) -> ScanSummary:
    """Inventory Google Cloud Storage buckets of one or more projects."""
    project_ids = [p.strip() for value in projects for p in value.split(",") if p.strip()]
    if not project_ids:
        raise InputError("--project", "give at least one project id")
    needs, catalog = scanner_context(policy_paths)
    tls = load_tls_policy(tls_policy) if tls_policy is not None else None
    scanner = GcsScanner(
        needs,
        catalog,
        project_ids,
        concurrency=concurrency,
        timeout=timeout,
        retry_deadline=retry_deadline,
        tls_policy=tls,
        api_endpoint=api_endpoint,
    )
    return finish_scan(scanner, output, progress)
