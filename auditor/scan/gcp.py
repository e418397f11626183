"""Google Cloud Storage scanner: `auditor scan gcp --project ID...`.

One `storage:buckets.list` page answers every attribute group of its buckets (location,
locationType, customPlacementConfig, encryption, labels, iamConfiguration, retentionPolicy), so
buckets are never re-fetched; only buckets the listing reports as ``unreachable`` get their own
``buckets.get``. Answers are read as raw bytes through the client's connection and parsed here, so
an empty, garbled or truncated answer is a `MalformedAnswer` (retried, then unknown with a bounded
excerpt of its bytes as evidence), never a silently empty bucket or listing. Credentials are
Application Default Credentials; with ``STORAGE_EMULATOR_HOST`` set, google-cloud-storage itself
switches to anonymous credentials and the emulator endpoint.
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
import orjson
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
from auditor.policy.zones import ZoneCatalog
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import Answer, CallRecorder, RawAnswer, RawShape, RetrySettings, now, status_code
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.gcp_source import GcpCatalog, GcpCloud, GcpOptions, bucket_regions
from auditor.scan.gcp_tls_policy import TLS_CONSTRAINT, TlsPolicyEntry, load_tls_policy
from auditor.scan.section import options_retry, section_options
from auditor.scan.threads import stream

LIST_CALL = "storage:buckets.list"
GET_CALL = "storage:buckets.get"
TLS_POLICY_CALL = "file:gcp.restrictTLSVersion"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# noAcl returns every field the scanner reads and needs only storage.buckets.list; "full" adds
# owner/acl/defaultObjectAcl, which the audit does not use.
PROJECTION = "noAcl"
# A 2xx answer that cannot be parsed, or parses to nothing where the API always answers something.
MALFORMED = "malformed/empty answer"
# How much of a raw answer an Evidence (or a gap reason) keeps.
RAW_EVIDENCE_BYTES = 2048
RAW_REASON_BYTES = 96
# Every bucket lives in exactly two regions when its locationType is dual-region.
DUAL_REGION_MEMBERS = 2

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
# --- errors -------------------------------------------------------------------------------------


class MalformedAnswer(Exception):
    """A 2xx answer that cannot be parsed, or parses to nothing where the API always answers something."""

    def __init__(self, operation: str, problem: str, body: bytes) -> None:
        super().__init__(f"{MALFORMED}: {problem}")
        self.operation = operation
        self.problem = problem
        self.body = body


# How a raw answer shows in `Evidence.response` (docs/scanners/gcp.md, "Errors").
RAW_SHAPE = RawShape(size="bytes", body="head", truncated="head_truncated", errors="backslashreplace")
# The shared retry/timeout settings this scanner honours (declared with its options).
RETRY_SUPPORTED = GcpOptions.retry_used


def raw_excerpt(body: bytes, limit: int = RAW_EVIDENCE_BYTES) -> dict[str, Any]:
    """A raw answer for Evidence: its size and its first `limit` bytes (undecodable bytes escaped)."""
    shape = RAW_SHAPE if limit == RAW_SHAPE.limit else RawShape(**{**RAW_SHAPE.__dict__, "limit": limit})
    return RawAnswer(None, body).excerpt(shape)


def _short_repr(body: bytes) -> str:
    head = repr(body[:RAW_REASON_BYTES])
    return head + ("..." if len(body) > RAW_REASON_BYTES else "")


def malformed_cause(exc: BaseException) -> MalformedAnswer | None:
    """The malformed answer behind `exc` (itself, or the last attempt of a retry that gave up)."""
    if isinstance(exc, MalformedAnswer):
        return exc
    if isinstance(exc, api_exceptions.RetryError) and isinstance(exc.cause, MalformedAnswer):
        return exc.cause
    return None


def describe_error(exc: BaseException, operation: str) -> Unknown:
    """An API failure as an `Unknown`: '<code>: <message> (<operation>)'."""
    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause
        if cause is None:
            return Unknown(code=UnknownCode.TIMEOUT, reason=f"RetryError: {exc.message} ({operation})")
        inner = describe_error(cause, operation)
        return Unknown(code=inner.code, reason=f"{inner.reason}; retries gave up: {exc.message}")
    if isinstance(exc, MalformedAnswer):
        return Unknown(code=UnknownCode.ERROR, reason=f"{MALFORMED}: {exc.problem} ({operation})")
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        status = int(exc.code) if exc.code is not None else 0
        reason = None
        if exc.errors and isinstance(exc.errors[0], dict):
            reason = exc.errors[0].get("reason")
        label = f"{status} {reason or type(exc).__name__}"
        # google-cloud-core prefixes the message with "<METHOD> <url>: "; the operation says it.
        message = _REQUEST_PREFIX.sub("", exc.message or "")
        return Unknown(code=status_code(status), reason=f"{label}: {message} ({operation})")
    if isinstance(exc, requests.Timeout):
        return Unknown(code=UnknownCode.TIMEOUT, reason=f"Timeout: {exc} ({operation})")
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        # The connection closed (or the encoding broke) before the whole answer arrived.
        return Unknown(
            code=UnknownCode.ERROR,
            reason=f"{MALFORMED}: the answer ended early ({type(exc).__name__}: {exc}) ({operation})",
        )
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return Unknown(code=UnknownCode.NO_CREDENTIALS, reason=f"{type(exc).__name__}: {exc} ({operation})")
    if isinstance(exc, auth_exceptions.TransportError) or (
        isinstance(exc, auth_exceptions.RefreshError) and exc.retryable
    ):
        # The token endpoint could not be reached or answered 429/5xx: not a refusal.
        return Unknown(code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {exc} ({operation})")
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return Unknown(code=UnknownCode.ACCESS_DENIED, reason=f"{type(exc).__name__}: {exc} ({operation})")
    return Unknown(code=UnknownCode.ERROR, reason=f"{type(exc).__name__}: {exc} ({operation})")


def _error_text(exc: BaseException) -> str:
    return describe_error(exc, "").reason.removesuffix(" ()")


# --- answers ------------------------------------------------------------------------------------


def _json_object(operation: str, body: bytes, what: str) -> dict[str, Any]:
    if not body.strip():
        raise MalformedAnswer(operation, f"{what} has an empty body ({len(body)} bytes)", body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedAnswer(
            operation, f"{what} is not JSON ({exc}; {len(body)} bytes: {_short_repr(body)})", body
        ) from None
    if not isinstance(data, dict):
        raise MalformedAnswer(
            operation, f"{what} is a JSON {type(data).__name__}, not an object: {_short_repr(body)}", body
        )
    return data


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
    data = _json_object(LIST_CALL, body, "listing page")
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
            raise MalformedAnswer(LIST_CALL, f"listing page says nothing: {_short_repr(body)}", body)
    return ListPage(list(items or []), list(unreachable or []), token)


def parse_bucket(body: bytes, name: str) -> dict[str, Any]:
    """A `buckets.get` answer for bucket `name`, or `MalformedAnswer`."""
    data = _json_object(GET_CALL, body, "bucket resource")
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
            self._transport(resource, project, at)
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


def _error_evidence(exc: Exception, call: str) -> tuple[Any, str]:
    """The evidence of a failed call: the raw excerpt of a malformed answer, and the error text."""
    malformed = malformed_cause(exc)
    return (raw_excerpt(malformed.body) if malformed is not None else None), _error_text(exc)


# --- the scanner --------------------------------------------------------------------------------

_T = TypeVar("_T")


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
        retry_settings: RetrySettings | None = None,
    ) -> None:
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
        self.api_endpoint = api_endpoint
        self.page_size = page_size
        self.builder = BucketRecordBuilder(needs, catalog, tls_policy)
        self.recorder = CallRecorder(self.calls, describe_error, _error_evidence)
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
        yield from stream(self._drive, capacity=max(64, 4 * self.concurrency), name="gcs-scan")

    def _drive(self, emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
        """List every project at once (each in a worker), the unreachable buckets' GETs in another pool."""
        project_pool = ThreadPoolExecutor(min(len(self.projects), self.concurrency), "gcs-project")
        followup_pool = ThreadPoolExecutor(self.concurrency, "gcs-bucket")
        try:
            tasks = [
                project_pool.submit(self._project_task, project, emit, followup_pool, stop)
                for project in self.projects
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

    def _gap(
        self, project: str, code: UnknownCode, reason: str, evidence: Evidence | None = None
    ) -> CoverageGap:
        """A gap for `project`; `evidence` is the failed call's (a malformed answer's bytes bounded)."""
        return CoverageGap(
            provider="gcp",
            account=project,
            scope="project",
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
                            f"{problem} ({_short_repr(raw)}) ({LIST_CALL}); not listed: that bucket",
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
    type=click.Path(path_type=Path),
    default=None,
    help="YAML/JSON mapping project id -> its effective gcp.restrictTLSVersion policy "
    "(see docs/scanners/gcp.md). Without it the minimum TLS version is unknown.",
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
    api_endpoint: str | None,
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory Google Cloud Storage buckets of one or more projects."""
    project_ids = [p.strip() for value in projects for p in value.split(",") if p.strip()]
    if not project_ids:
        raise InputError("--project", "give at least one project id")
    section = GcpCloud(
        projects=project_ids,
        api_endpoint=api_endpoint,
        tls_policy=tls_policy,
        options={"concurrency": concurrency},
    )
    return scan_section(section, list(policy_paths), output, progress, retry)


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
    )
    return finish_scan(scanner, output, progress)
