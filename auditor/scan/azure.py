"""Azure Blob scanner: storage account settings from ARM, containers from each account's blob service.

One `StorageResource` per blob container (kind "container"); an account with no containers, or whose
containers cannot be listed, is one resource of kind "account". Every container inherits its account's
location, replication, TLS and encryption, with the evidence pointing at the account listing. Containers
are listed on the blob data plane (azure-storage-blob) and, where that is not reachable, through ARM
(`blob_containers.list`). See docs/scanners/azure.md.
"""

from __future__ import annotations

import email.utils
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlparse

import click
import requests
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient, ExponentialRetry
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Provider,
    ProviderTlsFloor,
    Replica,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.scan.azure_credentials import (
    ACCESS_TOKEN_ENV,
    ACCOUNT_KEYS_ENV,
    StaticTokenCredential,
    default_credential,
    parse_account_keys,
    redact,
    register_secret,
    valid_shared_key,
)
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.command import common_scan_options, finish_scan

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline import PipelineRequest, PipelineResponse

    from auditor.policy.zones import ZoneCatalog

__all__ = [
    "ACCESS_TOKEN_ENV",
    "ACCOUNT_KEYS_ENV",
    "AzureScanner",
    "StaticTokenCredential",
    "command",
    "default_credential",
    "parse_account_keys",
    "unknown_from",
]

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
RESOURCES_API_VERSION = "2021-04-01"
ACCOUNT_KEY_SCOPE = "$account-encryption-key"

# Azure Storage refuses TLS 1.0/1.1 on every account in every cloud since 3 February 2026 (moved
# from 1 Nov 2024, then 1 Nov 2025): TLS 1.2 is the platform floor whatever `minimumTlsVersion` says.
TLS_FLOOR = ProviderTlsFloor(
    version="TLS1_2",
    since=date(2026, 2, 3),
    source="https://learn.microsoft.com/en-us/azure/storage/common/transport-layer-security-configure-migrate-to-tls2",
)

BlobCredentialMode = Literal["token", "shared-key", "none"]
KEY_LEAVES = ("scheme", "key_management", "key_id", "key_location")

_OP_ACCOUNTS = "storage:StorageAccounts.List"
_OP_BLOB_LIST = "blob:ListContainers"
_OP_ARM_LIST = "storage:BlobContainers.List"
_OP_ARM_GET = "storage:BlobContainers.Get"
_OP_SCOPES = "storage:EncryptionScopes.List"
_OP_VAULT = "resources:Resources.List"

# How much of an answer that could not be parsed is kept as evidence.
RAW_EVIDENCE_BYTES = 2048
# Statuses retried on both planes (with the Retry-After a service sends, up to `retry_after_max`).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _Malformed(Exception):
    """An answer that arrived whole but parses to nothing the API can mean."""


class _LastAnswer(threading.local):
    """The last HTTP answer this thread received, kept so an unparsable one can become evidence."""

    status: int | None = None
    body: bytes | None = None

    def clear(self) -> None:
        self.status, self.body = None, None

    def on_request(self, request: PipelineRequest[Any]) -> None:
        """`raw_request_hook`: a new request forgets the previous answer."""
        self.clear()

    def on_response(self, response: PipelineResponse[Any, Any]) -> None:
        """`raw_response_hook`: remember the status and body of every answer."""
        http = response.http_response
        self.status = http.status_code
        try:
            self.body = http.body()
        except Exception:  # a streamed or broken body: nothing to keep
            self.body = None

    def evidence(self) -> dict[str, Any]:
        """The last answer, bounded to RAW_EVIDENCE_BYTES and with secrets redacted."""
        body = self.body
        if body is None:
            return {"status": self.status, "bytes": None, "body": None}
        head = body[:RAW_EVIDENCE_BYTES].decode("utf-8", errors="backslashreplace")
        return {
            "status": self.status,
            "bytes": len(body),
            "body": redact(head),
            "truncated": len(body) > RAW_EVIDENCE_BYTES,
        }


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a service asks to wait (`retry-after-ms`, `x-ms-retry-after-ms`, `Retry-After`)."""
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    return None


class _ArmRetry(RetryPolicy[Any, Any]):
    """azure-core's retry, with the wait a `Retry-After` asks for bounded by `retry_after_max`.

    A service asking for a longer wait ends the retries (the call reports `throttled`) instead of
    holding a worker for as long as it asks.
    """

    def __init__(self, *, retry_after_max: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._retry_after_max = retry_after_max

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        wait = self.get_retry_after(response)
        if wait is not None and wait > self._retry_after_max:
            return False
        return bool(super().is_retry(settings, response))

    def _sleep_for_retry(self, response: PipelineResponse[Any, Any], transport: Any) -> bool:
        wait = self.get_retry_after(response)
        if wait:
            transport.sleep(min(wait, self._retry_after_max))
            return True
        return False


class _BlobRetry(ExponentialRetry):
    """The data plane's retry: like ARM's, 408/429/500/502/503/504 and connection errors are retried.

    azure-storage-blob's own policy does not retry 429 and waits whole seconds; this one honours
    `Retry-After` (bounded by `retry_after_max`) and backs off `backoff * 2**n` capped at `backoff_max`.
    """

    def __init__(
        self, *, retry_total: int, backoff: float, backoff_max: float, retry_after_max: float
    ) -> None:
        super().__init__(initial_backoff=0, increment_base=0, retry_total=retry_total, random_jitter_range=0)
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._retry_after_max = retry_after_max

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return float(min(self._backoff * 2 ** max(int(settings["count"]) - 1, 0), self._backoff_max))

    def _pause(self, settings: dict[str, Any], transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            transport.sleep(backoff)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        settings = self.configure_retries(request)
        transport: Any = request.context.transport
        while True:
            try:
                response = self.next.send(request)
            except ClientAuthenticationError:
                raise  # a signing or token failure does not heal by retrying
            except AzureError as err:
                if not self.increment(settings, request=request.http_request, error=err):
                    raise
                self._pause(settings, transport)
                continue
            if response.http_response.status_code in RETRY_STATUSES:
                wait = _retry_after(response.http_response.headers)
                if (wait is None or wait <= self._retry_after_max) and self.increment(
                    settings, request=request.http_request, response=response.http_response
                ):
                    if wait is not None:
                        transport.sleep(wait)
                    else:
                        self._pause(settings, transport)
                    continue
            break
        if settings["history"]:
            response.context["history"] = settings["history"]
        response.http_response.location_mode = settings["mode"]
        return response


def _now() -> datetime:
    return datetime.now(UTC)


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""


def _error_text(exc: BaseException) -> tuple[str, str]:
    """(error code, one-line message) of an Azure SDK exception, with secrets redacted."""
    code: str | None = None
    message: str | None = None
    if isinstance(exc, HttpResponseError):
        odata = exc.error
        if odata is not None:
            code, message = odata.code, odata.message
        if not code:
            raw_code = getattr(exc, "error_code", None)
            code = str(getattr(raw_code, "value", raw_code)) if raw_code else None
        code = code or (f"HTTP{exc.status_code}" if exc.status_code else None)
    message = message or str(getattr(exc, "message", None) or exc)
    return redact(code or type(exc).__name__), redact(_first_line(message))


def _is_malformed(exc: BaseException) -> bool:
    """True if `exc` says an answer arrived but could not be understood (not a transport error)."""
    if isinstance(exc, IncompleteReadError):
        return False  # the connection broke mid-answer
    return isinstance(exc, _Malformed | DecodeError) or not isinstance(exc, AzureError)


def malformed_unknown(exc: BaseException, operation: str) -> Unknown:
    """The `Unknown` an answer that could not be parsed (or parsed to nothing) makes."""
    detail = _first_line(str(exc))[:200]
    detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return Unknown(
        code=UnknownCode.ERROR,
        reason=redact(f"MalformedAnswer: malformed/empty answer to {operation} ({detail}) ({operation})"),
    )


def unknown_from(exc: BaseException, operation: str) -> Unknown:
    """The `Unknown` an SDK exception makes of the attributes it prevented reading."""
    if _is_malformed(exc):
        return malformed_unknown(exc, operation)
    code, message = _error_text(exc)
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    timed_out = isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError) or (
        isinstance(exc, ServiceRequestError | ServiceResponseError) and "timed out" in str(exc).lower()
    )
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # No HTTP answer at all: the credential produced no token (nothing configured, CLI logged out).
        kind = UnknownCode.NO_CREDENTIALS
    elif timed_out or status in (408, 504):
        kind = UnknownCode.TIMEOUT
    elif status in (401, 403):
        kind = UnknownCode.ACCESS_DENIED
    elif status == 429:
        kind = UnknownCode.THROTTLED
    else:
        kind = UnknownCode.ERROR
    return Unknown(code=kind, reason=f"{code}: {message} ({operation})")


def _evidence_error(exc: BaseException) -> str:
    if _is_malformed(exc):
        return malformed_unknown(exc, "the call").reason
    code, message = _error_text(exc)
    return f"{code}: {message}"


def _jsonable(value: Any) -> Any:
    """An SDK value as plain JSON (enums to their values, datetimes to ISO text)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):  # the SDKs' (str, Enum) types print as 'Class.MEMBER'
        return _jsonable(value.value)
    return value


def _parse_resource_group(resource_id: str) -> str | None:
    parts = resource_id.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "resourcegroups":
            return parts[i + 1]
    return None


@dataclass
class _Container:
    """One container as listed, with where its attributes came from."""

    name: str
    metadata: dict[str, str] | None
    public_access: str | None
    default_scope: str | None
    deny_override: bool | None
    evidence: list[Evidence]
    unknown: dict[str, Unknown] = field(default_factory=dict)


@dataclass
class _Facts:
    """What the account listing (and its key vault) says, shared by every container of the account."""

    subscription: str
    account_id: str
    name: str
    resource_group: str | None
    raw: dict[str, Any]
    blob_endpoint: str | None
    location: Location | None = None
    encryption: Encryption | None = None
    transport: Transport | None = None
    allow_public: bool | None = None
    tags: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, Unknown] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class _Scopes:
    """The account's encryption scopes as {name: raw JSON}, or why they could not be read."""

    by_name: dict[str, dict[str, Any]]
    failure: Unknown | None
    evidence: Evidence


@dataclass
class _KeyEncryption:
    """An encryption setting resolved to the model, with the unknowns and evidence behind it."""

    encryption: Encryption
    unknown: dict[str, Unknown]
    evidence: list[Evidence]


_DONE = object()


class AzureScanner(Scanner):
    """Inventories Azure blob containers of one or more subscriptions."""

    provider: ClassVar[Provider] = "azure"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        concurrency: int = 16,
        *,
        subscriptions: list[str],
        credential: TokenCredential,
        arm_endpoint: str = DEFAULT_ARM_ENDPOINT,
        blob_endpoint_template: str | None = None,
        ca_bundle: str | None = None,
        blob_credential: BlobCredentialMode = "token",
        account_keys: Mapping[str, str] | None = None,
        container_page_size: int | None = None,
        retry_total: int = 4,
        retry_backoff: float = 0.8,
        retry_backoff_max: float = 30.0,
        retry_after_max: float = 60.0,
        connection_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        super().__init__(needs, catalog, concurrency)
        self.subscriptions = list(dict.fromkeys(subscriptions))
        self.credential = credential
        self.arm_endpoint = arm_endpoint.rstrip("/")
        self.blob_endpoint_template = blob_endpoint_template
        self.verify: str | bool = ca_bundle or True
        self.blob_credential = blob_credential
        self.account_keys = dict(account_keys or {})
        for key in self.account_keys.values():
            register_secret(key)
        self.container_page_size = container_page_size
        self.retry_total = retry_total
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.retry_after_max = retry_after_max
        self.connection_timeout = connection_timeout
        self.read_timeout = read_timeout
        # The longest one logical call (every retry and wait included) can take: no wait in the scan
        # is longer than this, so a server that never answers cannot hold the scan.
        self.call_bound = (
            (retry_total + 1) * (connection_timeout + read_timeout)
            + retry_total * max(retry_backoff_max, retry_after_max)
            + 5.0
        )

        self.want_location = needs.wants("location")
        self.want_encryption = needs.wants("encryption")
        self.want_keys = any(needs.wants(f"encryption.{leaf}") for leaf in KEY_LEAVES)
        self.want_key_location = needs.wants("encryption.key_location")
        self.want_transport = needs.wants("transport")
        self.want_access = needs.wants("access")
        self.want_tags = needs.wants("tags")

        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=64,
            pool_maxsize=concurrency + 4,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._clients: dict[str, StorageManagementClient] = {}
        self._clients_lock = threading.Lock()
        self._answer = _LastAnswer()
        self._vault_lock = threading.Lock()
        self._vaults: dict[tuple[str, str], Future[tuple[str | None, Unknown | None, Evidence]]] = {}

    # --- clients ---------------------------------------------------------------------------------

    def _transport(self) -> RequestsTransport:
        return RequestsTransport(
            session=self._session,
            session_owner=False,
            connection_verify=self.verify,
            connection_timeout=self.connection_timeout,
            read_timeout=self.read_timeout,
        )

    def _arm(self, subscription: str) -> StorageManagementClient:
        with self._clients_lock:
            client = self._clients.get(subscription)
            if client is None:
                client = StorageManagementClient(
                    self.credential,
                    subscription,
                    base_url=self.arm_endpoint,
                    credential_scopes=[f"{self.arm_endpoint}/.default"],
                    transport=self._transport(),
                    retry_policy=_ArmRetry(
                        retry_total=self.retry_total,
                        retry_backoff_factor=self.retry_backoff,
                        retry_backoff_max=self.retry_backoff_max,
                        retry_after_max=self.retry_after_max,
                        timeout=self.call_bound,
                    ),
                    raw_request_hook=self._answer.on_request,
                    raw_response_hook=self._answer.on_response,
                )
                self._clients[subscription] = client
        return client

    def _blob_client(self, facts: _Facts) -> tuple[BlobServiceClient | None, str | None, str]:
        """A data-plane client for the account, or None and why the data plane is not tried."""
        if self.blob_credential == "none":
            return None, None, "the data plane is disabled (--blob-credential none)"
        if self.blob_endpoint_template:
            url = self.blob_endpoint_template.format(account=facts.name)
        elif facts.blob_endpoint:
            url = facts.blob_endpoint
        else:
            return None, None, "ARM returned no primaryEndpoints.blob for the account"
        credential: Any
        if self.blob_credential == "shared-key":
            key = self.account_keys.get(facts.name)
            if key is None:
                return None, url, f"no shared key for account '{facts.name}' in {ACCOUNT_KEYS_ENV}"
            if not valid_shared_key(key):
                return None, url, f"the shared key for account '{facts.name}' is not base64"
            credential = {"account_name": facts.name, "account_key": key}
        else:
            credential = self.credential
        client = BlobServiceClient(
            url,
            credential=credential,
            transport=self._transport(),
            retry_policy=_BlobRetry(
                retry_total=self.retry_total,
                backoff=self.retry_backoff,
                backoff_max=self.retry_backoff_max,
                retry_after_max=self.retry_after_max,
            ),
            raw_request_hook=self._answer.on_request,
            raw_response_hook=self._answer.on_response,
        )
        return client, url, ""

    # --- the scan --------------------------------------------------------------------------------

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield every container (or account) and coverage gap as it completes.

        The driver thread lists accounts and hands each to a worker; workers turn every failure
        into unknowns or coverage gaps, so the scan ends when the driver has returned and the
        queue is drained, whatever any one answer was.
        """
        records: queue.Queue[InventoryRecord] = queue.Queue(maxsize=max(256, self.concurrency * 16))
        stop = threading.Event()
        finished = threading.Event()
        failures: list[BaseException] = []

        def emit(record: InventoryRecord) -> None:
            if isinstance(record, CoverageGap):
                record.reason = redact(record.reason)
            while not stop.is_set():
                try:
                    records.put(record, timeout=0.2)
                    return
                except queue.Full:
                    continue

        def drive() -> None:
            try:
                self._drive(emit, stop)
            except BaseException as exc:  # a bug or an interrupt: surfaced to the consumer
                failures.append(exc)
            finally:
                finished.set()

        driver = threading.Thread(target=drive, name="azure-scan", daemon=True)
        driver.start()
        try:
            while True:
                try:
                    item = records.get(timeout=0.1)
                except queue.Empty:
                    # Every record is queued before `finished` is set, so empty-after-finished is the end.
                    if finished.is_set() and records.empty():
                        break
                    continue
                yield item
            if failures:
                raise failures[0]
        finally:
            stop.set()
            driver.join()
            for client in self._clients.values():
                client.close()
            self._session.close()

    def _drive(self, emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
        slots = threading.BoundedSemaphore(self.concurrency * 2)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="azure-account")
        try:
            for subscription in self.subscriptions:
                for raw, listed_at in self._list_accounts(subscription, emit):
                    while not slots.acquire(timeout=0.2):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        slots.release()
                        return
                    future = pool.submit(self._scan_account_guarded, subscription, raw, listed_at, emit)
                    future.add_done_callback(lambda _: slots.release())
        finally:
            # Workers end by themselves (every call is bounded); a stopped scan drops queued ones.
            pool.shutdown(wait=True, cancel_futures=stop.is_set())

    def _list_accounts(
        self, subscription: str, emit: Callable[[InventoryRecord], None]
    ) -> Iterator[tuple[dict[str, Any], datetime]]:
        """Every storage account of a subscription; a listing failure becomes a coverage gap."""
        listed = 0
        pages_read = 0
        self._answer.clear()
        try:
            pages = self._arm(subscription).storage_accounts.list().by_page()
            for page in pages:
                self.calls.add(_OP_ACCOUNTS)
                pages_read += 1
                at = _now()
                self._check_arm_page(_OP_ACCOUNTS)
                entries = [_jsonable(dict(account)) for account in page]
                for entry in entries:
                    listed += 1
                    yield entry, at
                self._answer.clear()
        except Exception as exc:
            self.calls.add(_OP_ACCOUNTS)
            unknown = unknown_from(exc, _OP_ACCOUNTS)
            reason = unknown.reason
            if _is_malformed(exc) and self._answer.body is not None:
                reason = f"{reason}; answer of {len(self._answer.body)} bytes on page {pages_read or 1}"
            if listed:
                reason = f"storage account listing stopped after {listed} accounts: {reason}"
            emit(
                CoverageGap(
                    provider="azure",
                    account=subscription,
                    scope="subscription",
                    code=unknown.code,
                    reason=reason,
                    at=_now(),
                )
            )

    def _check_arm_page(self, operation: str) -> None:
        """Raise `_Malformed` unless the answer just read is an ARM list page: {"value": [...]}."""
        body = self._answer.body
        if body is None:
            return  # nothing captured (no hook on this path): trust the SDK's parse
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise _Malformed(f"not JSON: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("value"), list):
            raise _Malformed(f"{operation} answered without a 'value' list")

    def _scan_account_guarded(
        self,
        subscription: str,
        raw: dict[str, Any],
        listed_at: datetime,
        emit: Callable[[InventoryRecord], None],
    ) -> None:
        """`_scan_account`, with anything it did not foresee made a coverage gap for the account."""
        emitted: set[str] = set()
        name = raw.get("name") if isinstance(raw, dict) else None
        account_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            if not isinstance(name, str) or not name or not isinstance(account_id, str) or not account_id:
                raise _Malformed("a storage account entry without a name or id")
            self._scan_account(subscription, raw, listed_at, emit, emitted)
        except Exception as exc:
            unknown = unknown_from(exc, _OP_ACCOUNTS)
            what = f"storage account {account_id or name or '(unnamed entry)'}"
            extent = (
                f"scanned only in part ({len(emitted)} containers recorded)" if emitted else "not scanned"
            )
            emit(
                CoverageGap(
                    provider="azure",
                    account=subscription,
                    scope="containers" if emitted else "account",
                    code=unknown.code,
                    reason=f"{what} {extent}: {unknown.reason}",
                    at=_now(),
                )
            )

    def _scan_account(
        self,
        subscription: str,
        raw: dict[str, Any],
        listed_at: datetime,
        emit: Callable[[InventoryRecord], None],
        emitted: set[str],
    ) -> None:
        facts = self._account_facts(subscription, raw, listed_at)
        scopes = self._encryption_scopes(facts) if self.want_keys else None

        def emit_page(containers: list[_Container]) -> None:
            for container in containers:
                if container.name not in emitted:
                    emit(self._container_record(facts, container, scopes))
                    emitted.add(container.name)

        failures: list[tuple[str, Unknown]] = []
        attempts: list[Evidence] = []
        client, url, why_not = self._blob_client(facts)
        listed_all = False
        if client is not None:
            with client:
                failure, evidence = self._list_data_plane(client, url or "", facts, emit_page)
            if failure is None:
                listed_all = True
            else:
                failures.append(("blob data plane", failure))
                attempts.append(evidence)
        if not listed_all:
            failure, evidence = self._list_arm(facts, emit_page)
            if failure is None:
                listed_all = True
            else:
                if why_not:
                    failures.insert(0, ("blob data plane", Unknown(code=UnknownCode.ERROR, reason=why_not)))
                failures.append(("ARM", failure))
                attempts.append(evidence)
        if listed_all:
            if not emitted:
                emit(self._account_record(facts, scopes, None, []))
            return
        code = failures[-1][1].code
        reason = "; ".join(f"{plane}: {u.reason}" for plane, u in failures)
        extent = f"listed only in part ({len(emitted)} listed)" if emitted else "could not be listed"
        if not emitted:
            emit(self._account_record(facts, scopes, Unknown(code=code, reason=reason), attempts))
        emit(
            CoverageGap(
                provider="azure",
                account=subscription,
                scope="containers",
                code=code,
                reason=f"containers of storage account {facts.account_id} {extent}: {reason}",
                at=_now(),
            )
        )

    # --- container listing -----------------------------------------------------------------------

    def _list_data_plane(
        self,
        client: BlobServiceClient,
        url: str,
        facts: _Facts,
        emit_page: Callable[[list[_Container]], None],
    ) -> tuple[Unknown | None, Evidence]:
        request: dict[str, Any] = {"endpoint": url, "include": ["metadata"] if self.want_tags else []}
        if self.container_page_size:
            request["maxresults"] = self.container_page_size
        number = 0
        self._answer.clear()
        try:
            pages = client.list_containers(
                include_metadata=self.want_tags, results_per_page=self.container_page_size
            ).by_page()
            for page in pages:
                self.calls.add(_OP_BLOB_LIST)
                number += 1
                at = _now()
                body = self._answer.body
                if body is not None and b"EnumerationResults" not in body[:1024]:
                    raise _Malformed("the answer is not an EnumerationResults document")
                batch: list[_Container] = []
                for props in page:
                    scope = props.encryption_scope
                    listed = {
                        "name": props.name,
                        "metadata": dict(props.metadata or {}) if self.want_tags else None,
                        "public_access": _jsonable(props.public_access),
                        "default_encryption_scope": scope.default_encryption_scope if scope else None,
                        "prevent_encryption_scope_override": (
                            scope.prevent_encryption_scope_override if scope else None
                        ),
                        "last_modified": _jsonable(props.last_modified),
                    }
                    batch.append(
                        _Container(
                            name=props.name,
                            metadata=listed["metadata"],
                            public_access=listed["public_access"],
                            default_scope=listed["default_encryption_scope"],
                            deny_override=listed["prevent_encryption_scope_override"],
                            evidence=[
                                Evidence(
                                    call=_OP_BLOB_LIST,
                                    at=at,
                                    attributes=["name", "tags", "access", "encryption"],
                                    request={**request, "page": number},
                                    response=listed,
                                )
                            ],
                        )
                    )
                emit_page(batch)
                self._answer.clear()
        except Exception as exc:
            return self._listing_failure(_OP_BLOB_LIST, exc, request, number + 1)
        return None, Evidence(call=_OP_BLOB_LIST, at=_now(), attributes=[])

    def _listing_failure(
        self, operation: str, exc: Exception, request: dict[str, Any], page: int
    ) -> tuple[Unknown, Evidence]:
        """A container listing that failed on `page`: why, and the evidence of the failed call."""
        self.calls.add(operation)
        return self._failure(exc, operation, ["tags", "access", "encryption"], {**request, "page": page})

    def _failure(
        self, exc: Exception, operation: str, attributes: list[str], request: dict[str, Any] | None
    ) -> tuple[Unknown, Evidence]:
        """Why a call failed, and its evidence: the error, plus the raw answer when it was unreadable."""
        unknown = unknown_from(exc, operation)
        malformed = _is_malformed(exc)
        return unknown, Evidence(
            call=operation,
            at=_now(),
            attributes=attributes,
            request=request,
            response=self._answer.evidence() if malformed else None,
            error=unknown.reason if malformed else _evidence_error(exc),
        )

    def _list_arm(
        self, facts: _Facts, emit_page: Callable[[list[_Container]], None]
    ) -> tuple[Unknown | None, Evidence]:
        request: dict[str, Any] = {
            "subscription": facts.subscription,
            "resourceGroup": facts.resource_group,
            "account": facts.name,
        }
        if facts.resource_group is None:
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"BadResourceId: no resource group in '{facts.account_id}' ({_OP_ARM_LIST})",
            )
            return unknown, Evidence(call=_OP_ARM_LIST, at=_now(), attributes=[], error=unknown.reason)
        client = self._arm(facts.subscription)
        kwargs: dict[str, Any] = {}
        if self.container_page_size:
            kwargs["maxpagesize"] = str(self.container_page_size)
            request["$maxpagesize"] = self.container_page_size
        number = 0
        self._answer.clear()
        try:
            for page in client.blob_containers.list(facts.resource_group, facts.name, **kwargs).by_page():
                self.calls.add(_OP_ARM_LIST)
                number += 1
                at = _now()
                self._check_arm_page(_OP_ARM_LIST)
                batch = [
                    self._arm_container(facts, _jsonable(dict(item)), at, {**request, "page": number})
                    for item in page
                ]
                self._answer.clear()
                emit_page(batch)
        except Exception as exc:
            return self._listing_failure(_OP_ARM_LIST, exc, request, number + 1)
        return None, Evidence(call=_OP_ARM_LIST, at=_now(), attributes=[])

    def _arm_container(
        self, facts: _Facts, item: dict[str, Any], at: datetime, request: dict[str, Any]
    ) -> _Container:
        props = item.get("properties") or {}
        name = item.get("name")
        if not isinstance(name, str) or not name or not isinstance(props, dict):
            raise _Malformed("a container entry without a name or properties")
        container = _Container(
            name=name,
            metadata=None,
            public_access=props.get("publicAccess"),
            default_scope=props.get("defaultEncryptionScope"),
            deny_override=props.get("denyEncryptionScopeOverride"),
            evidence=[
                Evidence(
                    call=_OP_ARM_LIST,
                    at=at,
                    attributes=["name", "tags", "access", "encryption"],
                    request=request,
                    response=item,
                )
            ],
        )
        if not self.want_tags:
            return container
        if "metadata" in props:
            container.metadata = dict(props.get("metadata") or {})
            return container
        # The ARM container list leaves metadata out; the per-container GET has it.
        get_request = {**{k: v for k, v in request.items() if k != "page"}, "container": name}
        self._answer.clear()
        try:
            self.calls.add(_OP_ARM_GET)
            group = facts.resource_group or ""  # _list_arm returns early without one
            got = self._arm(facts.subscription).blob_containers.get(group, facts.name, name)
            if got is None:
                raise _Malformed("no container in the answer")
            answer = _jsonable(dict(got))
            got_props = answer.get("properties")
            if answer.get("name") != name or not isinstance(got_props, dict):
                raise _Malformed(f"the answer is not container '{name}' with properties")
            metadata = got_props.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise _Malformed("metadata is not a mapping")
            container.metadata = {str(k): str(v) for k, v in metadata.items()}
            container.evidence.append(
                Evidence(
                    call=_OP_ARM_GET, at=_now(), attributes=["tags"], request=get_request, response=answer
                )
            )
        except Exception as exc:
            unknown, evidence = self._failure(exc, _OP_ARM_GET, ["tags"], get_request)
            container.unknown["tags"] = unknown
            container.evidence.append(evidence)
        finally:
            self._answer.clear()
        return container

    # --- account settings ------------------------------------------------------------------------

    def _account_facts(self, subscription: str, raw: dict[str, Any], listed_at: datetime) -> _Facts:
        props_raw = raw.get("properties")
        props: dict[str, Any] = props_raw if isinstance(props_raw, dict) else {}
        account_id = str(raw.get("id") or "")
        endpoints = props.get("primaryEndpoints")
        blob_endpoint = endpoints.get("blob") if isinstance(endpoints, dict) else None
        allow_public = props.get("allowBlobPublicAccess")
        raw_tags = raw.get("tags")
        facts = _Facts(
            subscription=subscription,
            account_id=account_id,
            name=str(raw.get("name")),
            resource_group=_parse_resource_group(account_id),
            raw=raw,
            blob_endpoint=blob_endpoint if isinstance(blob_endpoint, str) and blob_endpoint else None,
            allow_public=allow_public if isinstance(allow_public, bool) else None,
            tags={str(k): str(v) for k, v in raw_tags.items()} if isinstance(raw_tags, dict) else {},
        )
        malformed = f"MalformedAnswer: malformed/empty answer to {_OP_ACCOUNTS}"
        if props_raw is not None and not isinstance(props_raw, dict):
            for group in ("location", "encryption", "transport", "access"):
                facts.unknown[group] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"{malformed} (properties is not an object) ({_OP_ACCOUNTS})",
                )
        if raw_tags is not None and not isinstance(raw_tags, dict):
            facts.unknown["tags"] = Unknown(
                code=UnknownCode.ERROR, reason=f"{malformed} (tags is not an object) ({_OP_ACCOUNTS})"
            )
        if allow_public is not None and not isinstance(allow_public, bool):
            facts.unknown["access.public_access_blocked"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{malformed} (allowBlobPublicAccess is {type(allow_public).__name__}) "
                f"({_OP_ACCOUNTS})",
            )
        groups = [
            g
            for g, wanted in (
                ("location", self.want_location),
                ("encryption", self.want_encryption),
                ("transport", self.want_transport),
                ("access", self.want_access),
                ("tags", self.want_tags),
            )
            if wanted
        ]
        facts.evidence.append(
            Evidence(
                call=_OP_ACCOUNTS,
                at=listed_at,
                attributes=groups,
                request={"subscription": subscription},
                response=raw,
            )
        )
        # A field of an unexpected shape makes its group unknown, never the account's other groups.
        if self.want_location:
            try:
                self._account_location(facts, raw, props)
            except Exception as exc:
                facts.location = None
                facts.unknown["location"] = malformed_unknown(exc, _OP_ACCOUNTS)
        if self.want_transport:
            try:
                self._account_transport(facts, props, listed_at)
            except Exception as exc:
                facts.transport = None
                facts.unknown["transport"] = malformed_unknown(exc, _OP_ACCOUNTS)
        if self.want_encryption:
            try:
                resolved = self._account_encryption(facts, props)
            except Exception as exc:
                resolved = self._unresolved_keys(
                    malformed_unknown(exc, _OP_ACCOUNTS).reason, UnknownCode.ERROR
                )
            facts.encryption = resolved.encryption
            facts.unknown.update(resolved.unknown)
            facts.evidence.extend(resolved.evidence)
        return facts

    def _account_location(self, facts: _Facts, raw: dict[str, Any], props: dict[str, Any]) -> None:
        location_raw = raw.get("location")
        if not location_raw:
            facts.unknown["location"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingLocation: the account has no location ({_OP_ACCOUNTS})",
            )
            return
        if not isinstance(location_raw, str):
            raise _Malformed(f"location is {type(location_raw).__name__}")
        primary = location_raw.lower().replace(" ", "")
        sku_raw = raw.get("sku")
        sku_name = sku_raw.get("name") if isinstance(sku_raw, dict) else None
        sku = sku_name if isinstance(sku_name, str) else ""
        regions = [primary]
        replicas: list[Replica] = []
        # In every case below the primary is known to hold the data, so `regions` keeps it and the
        # unknown is partial ("members"): a policy can still fail on a known region outside its zone.
        if not sku:
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MalformedAnswer: malformed/empty answer to {_OP_ACCOUNTS} (no sku.name, so "
                f"the replication and its regions are unknown) ({_OP_ACCOUNTS})",
                partial="members",
            )
        elif self.catalog.azure_is_geo_redundant(sku):
            secondary_raw = props.get("secondaryLocation")
            endpoints = props.get("secondaryEndpoints")
            target = endpoints.get("blob") if isinstance(endpoints, dict) else None
            if secondary_raw is not None and not isinstance(secondary_raw, str):
                replicas.append(
                    Replica(
                        region=None, kind="geo-secondary", target=target if isinstance(target, str) else None
                    )
                )
                facts.unknown["location.regions"] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"MalformedAnswer: malformed/empty answer to {_OP_ACCOUNTS} (secondaryLocation "
                    f"is {type(secondary_raw).__name__}) ({_OP_ACCOUNTS})",
                    partial="members",
                )
            else:
                secondary = (
                    secondary_raw.lower().replace(" ", "")
                    if secondary_raw
                    else self.catalog.azure_pair(primary)
                )
                replicas.append(
                    Replica(
                        region=secondary,
                        kind="geo-secondary",
                        target=target if isinstance(target, str) else None,
                    )
                )
                if secondary is None:
                    facts.unknown["location.regions"] = Unknown(
                        code=UnknownCode.ERROR,
                        reason=f"NoPairedRegion: SKU {sku} keeps a copy in the paired region, but ARM "
                        f"returned no secondaryLocation and the zone catalog has no pair for '{primary}' "
                        f"({_OP_ACCOUNTS})",
                        partial="members",
                    )
                elif secondary != primary:
                    regions.append(secondary)
        elif sku.lower() not in {s.lower() for s in self.catalog.azure.local_skus}:
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"UnknownSku: SKU '{sku}' is in neither the geo-redundant nor the local SKU list "
                f"of the zone catalog ({_OP_ACCOUNTS})",
                partial="members",
            )
        facts.location = Location(
            raw=str(location_raw), type="region", primary=primary, regions=regions, replicas=replicas
        )

    def _account_transport(self, facts: _Facts, props: dict[str, Any], listed_at: datetime) -> None:
        https_only = props.get("supportsHttpsTrafficOnly")
        transport = Transport(
            plaintext_refused=None, plaintext_refused_by=None, min_tls_version=None, min_tls_enforced_by=None
        )
        if isinstance(https_only, bool):
            transport.plaintext_refused = https_only
            transport.plaintext_refused_by = "account:supportsHttpsTrafficOnly" if https_only else None
        else:
            facts.unknown["transport.plaintext_refused"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingSetting: ARM returned no supportsHttpsTrafficOnly ({_OP_ACCOUNTS})",
            )
        minimum = props.get("minimumTlsVersion")
        if minimum:
            transport.min_tls_version = str(minimum)
            transport.min_tls_enforced_by = "account:minimumTlsVersion"
        elif TLS_FLOOR.since is not None and listed_at.date() >= TLS_FLOOR.since:
            transport.min_tls_version = TLS_FLOOR.version
            transport.min_tls_enforced_by = "provider"
            transport.provider_floor = TLS_FLOOR
        else:
            facts.unknown["transport.min_tls_version"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingSetting: ARM returned no minimumTlsVersion ({_OP_ACCOUNTS})",
            )
        facts.transport = transport

    def _account_encryption(self, facts: _Facts, props: dict[str, Any]) -> _KeyEncryption:
        encryption = props.get("encryption") or {}
        source = encryption.get("keySource")
        if not source:
            return self._unresolved_keys(
                f"MissingSetting: ARM returned no encryption.keySource ({_OP_ACCOUNTS})", UnknownCode.ERROR
            )
        if str(source).lower() == "microsoft.storage":
            return _microsoft_managed()
        if str(source).lower() == "microsoft.keyvault":
            vault = encryption.get("keyvaultproperties") or {}
            uri, name, version = vault.get("keyvaulturi"), vault.get("keyname"), vault.get("keyversion")
            key_id = vault.get("currentVersionedKeyIdentifier")
            if uri and name:
                key_id = f"{str(uri).rstrip('/')}/keys/{name}" + (f"/{version}" if version else "")
            return self._key_vault_encryption(
                facts.subscription, key_id, "account:encryption.keyvaultproperties"
            )
        return self._unresolved_keys(
            f"UnknownKeySource: encryption.keySource '{source}' ({_OP_ACCOUNTS})", UnknownCode.NOT_SUPPORTED
        )

    def _unresolved_keys(self, reason: str, code: UnknownCode) -> _KeyEncryption:
        # Azure Storage encrypts every account with AES-256 and it cannot be turned off:
        # https://learn.microsoft.com/en-us/azure/storage/common/storage-service-encryption
        unknown = {f"encryption.{leaf}": Unknown(code=code, reason=reason) for leaf in KEY_LEAVES}
        return _KeyEncryption(
            Encryption(
                enabled=True,
                algorithm="AES256",
                scheme=None,
                key_management=None,
                key_id=None,
                key_location=None,
            ),
            unknown,
            [],
        )

    def _key_vault_encryption(self, subscription: str, key_id: str | None, origin: str) -> _KeyEncryption:
        unknown: dict[str, Unknown] = {}
        evidence: list[Evidence] = []
        location: str | None = None
        if key_id is None:
            reason = f"MissingKey: {origin} names no Key Vault key ({_OP_ACCOUNTS})"
            unknown["encryption.key_id"] = Unknown(code=UnknownCode.ERROR, reason=reason)
            unknown["encryption.key_location"] = Unknown(code=UnknownCode.ERROR, reason=reason)
        elif not self.want_key_location:
            unknown["encryption.key_location"] = Unknown(
                code=UnknownCode.NOT_COLLECTED,
                reason="the loaded policies do not read encryption.key_location",
            )
        else:
            location, failure, vault_evidence = self._vault_location(subscription, key_id)
            evidence.append(vault_evidence)
            if failure is not None:
                unknown["encryption.key_location"] = failure
        return _KeyEncryption(
            Encryption(
                enabled=True,
                algorithm="AES256",
                scheme="customer-managed-key-vault",
                key_management="customer-managed",
                key_id=key_id,
                key_location=location,
            ),
            unknown,
            evidence,
        )

    def _vault_location(self, subscription: str, key_id: str) -> tuple[str | None, Unknown | None, Evidence]:
        """The region of the vault holding `key_id`: one ARM call per distinct vault, shared by all."""
        host = (urlparse(key_id).hostname or "").lower()
        cache_key = (subscription, host)
        with self._vault_lock:
            future = self._vaults.get(cache_key)
            owner = future is None
            if future is None:
                future = self._vaults[cache_key] = Future()
        if owner:
            try:
                future.set_result(self._lookup_vault(subscription, host))
            except BaseException as exc:
                # _lookup_vault turns every failure into an answer; this is a bug or an interrupt,
                # and the threads waiting on this vault must not wait for ever.
                future.set_exception(exc)
                raise
        request = {"subscription": subscription, "vault": host}
        try:
            return future.result(timeout=self.call_bound)
        except FutureTimeout:
            unknown = Unknown(
                code=UnknownCode.TIMEOUT,
                reason=f"Timeout: the lookup of vault '{host}' took longer than {self.call_bound:.0f} s "
                f"({_OP_VAULT})",
            )
        except Exception as exc:
            unknown = unknown_from(exc, _OP_VAULT)
        evidence = Evidence(
            call=_OP_VAULT,
            at=_now(),
            attributes=["encryption.key_location"],
            request=request,
            error=unknown.reason,
        )
        return None, unknown, evidence

    def _lookup_vault(self, subscription: str, host: str) -> tuple[str | None, Unknown | None, Evidence]:
        vault = host.split(".", 1)[0]
        kind = "Microsoft.KeyVault/managedHSMs" if ".managedhsm." in host else "Microsoft.KeyVault/vaults"
        query = f"resourceType eq '{kind}' and name eq '{vault}'"
        request = {"subscription": subscription, "$filter": query}
        self.calls.add(_OP_VAULT)
        self._answer.clear()
        try:
            response = self._arm(subscription).send_request(
                HttpRequest(
                    "GET",
                    f"/subscriptions/{subscription}/resources",
                    params={"$filter": query, "api-version": RESOURCES_API_VERSION},
                )
            )
            if response.status_code != 200:
                raise HttpResponseError(response=response, error_format=ARMErrorFormat)
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise _Malformed("the resources listing has no 'value' list")
            found = [
                r for r in body["value"] if isinstance(r, dict) and str(r.get("name", "")).lower() == vault
            ]
        except Exception as exc:
            unknown, evidence = self._failure(exc, _OP_VAULT, ["encryption.key_location"], request)
            return None, unknown, evidence
        finally:
            self._answer.clear()
        evidence = Evidence(
            call=_OP_VAULT,
            at=_now(),
            attributes=["encryption.key_location"],
            request=request,
            response={"value": found},
        )
        if not found or not found[0].get("location"):
            return (
                None,
                Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"VaultNotFound: no {kind} named '{vault}' in subscription {subscription} "
                    f"(it may live in another subscription or tenant) ({_OP_VAULT})",
                ),
                evidence,
            )
        return str(found[0]["location"]).lower().replace(" ", ""), None, evidence

    def _encryption_scopes(self, facts: _Facts) -> _Scopes:
        request = {
            "subscription": facts.subscription,
            "resourceGroup": facts.resource_group,
            "account": facts.name,
        }
        by_name: dict[str, dict[str, Any]] = {}
        self._answer.clear()
        try:
            if facts.resource_group is None:
                raise AzureError(f"no resource group in '{facts.account_id}'")
            for page in (
                self._arm(facts.subscription)
                .encryption_scopes.list(facts.resource_group, facts.name)
                .by_page()
            ):
                self.calls.add(_OP_SCOPES)
                self._check_arm_page(_OP_SCOPES)
                for scope in page:
                    raw = _jsonable(dict(scope))
                    scope_name = raw.get("name")
                    if not isinstance(scope_name, str) or not scope_name:
                        raise _Malformed("an encryption scope without a name")
                    by_name[scope_name] = raw
                self._answer.clear()
        except Exception as exc:
            self.calls.add(_OP_SCOPES)
            unknown, evidence = self._failure(exc, _OP_SCOPES, ["encryption"], request)
            return _Scopes(by_name, unknown, evidence)
        return _Scopes(
            by_name,
            None,
            Evidence(
                call=_OP_SCOPES,
                at=_now(),
                attributes=["encryption"],
                request=request,
                response=list(by_name.values()),
            ),
        )

    def _scope_encryption(self, facts: _Facts, scope: dict[str, Any]) -> _KeyEncryption | None:
        props = scope.get("properties") or {}
        source = str(props.get("source") or "").lower()
        if source == "microsoft.storage":
            return _microsoft_managed()
        if source == "microsoft.keyvault":
            vault = props.get("keyVaultProperties") or {}
            key_id = vault.get("keyUri") or vault.get("currentVersionedKeyIdentifier")
            return self._key_vault_encryption(
                facts.subscription, key_id, f"encryption scope '{scope.get('name')}'"
            )
        return None

    # --- records ---------------------------------------------------------------------------------

    def _container_encryption(
        self, facts: _Facts, container: _Container, scopes: _Scopes | None
    ) -> _KeyEncryption | None:
        """The encryption a container's blobs get: its default scope's, else the account's.

        Unless the container denies scope overrides, a writer may pick any enabled scope of the
        account per blob, so a customer-managed default is only as strong as the weakest such scope.
        """
        base = facts.encryption
        if base is None:
            return None
        account = _KeyEncryption(
            base,
            {k: v for k, v in facts.unknown.items() if k.startswith("encryption")},
            list(facts.evidence[1:]),
        )
        if scopes is None:
            # The key leaves depend on the container's encryption scope, which was not read.
            return self._unresolved_keys(
                "the loaded policies read no encryption key attribute", UnknownCode.NOT_COLLECTED
            )
        evidence = [scopes.evidence]
        if scopes.failure is not None:
            # Without the scope list we cannot tell which key a container's blobs may use.
            unresolved = self._unresolved_keys(scopes.failure.reason, scopes.failure.code)
            unresolved.evidence.extend(evidence)
            return unresolved
        chosen = account
        if container.default_scope and container.default_scope != ACCOUNT_KEY_SCOPE:
            scope = scopes.by_name.get(container.default_scope)
            resolved = self._scope_encryption(facts, scope) if scope is not None else None
            if resolved is None:
                why = (
                    "is not among the account's encryption scopes"
                    if scope is None
                    else "has an unknown source"
                )
                unresolved = self._unresolved_keys(
                    f"UnknownScope: default encryption scope '{container.default_scope}' {why} "
                    f"({_OP_SCOPES})",
                    UnknownCode.ERROR,
                )
                unresolved.evidence.extend(evidence)
                return unresolved
            chosen = resolved
        if not container.deny_override and chosen.encryption.key_management == "customer-managed":
            for scope in scopes.by_name.values():
                if str((scope.get("properties") or {}).get("state") or "Enabled").lower() != "enabled":
                    continue
                other = self._scope_encryption(facts, scope)
                if other is not None and other.encryption.key_management == "provider-managed":
                    chosen = other
                    break
        return _KeyEncryption(chosen.encryption, chosen.unknown, [*evidence, *chosen.evidence])

    def _container_record(
        self, facts: _Facts, container: _Container, scopes: _Scopes | None
    ) -> StorageResource:
        unknown = {k: v for k, v in facts.unknown.items() if not k.startswith("encryption")}
        evidence = [*facts.evidence, *container.evidence]
        encryption = None
        if self.want_encryption:
            resolved = self._container_encryption(facts, container, scopes)
            if resolved is not None:
                encryption = resolved.encryption
                unknown.update(resolved.unknown)
                evidence.extend(e for e in resolved.evidence if e not in evidence)
            else:
                unknown.update({k: v for k, v in facts.unknown.items() if k.startswith("encryption")})
        tags = None
        if self.want_tags:
            if container.metadata is not None:
                tags = {**facts.tags, **container.metadata}
            else:
                tags = dict(facts.tags)
        unknown.update(container.unknown)
        access = None
        if self.want_access:
            access = Access(
                public_access_blocked=facts.allow_public is False,
                detail={"allowBlobPublicAccess": facts.allow_public, "publicAccess": container.public_access},
            )
        return StorageResource(
            provider="azure",
            kind="container",
            account=facts.subscription,
            storage_account=facts.name,
            name=container.name,
            id=f"{facts.account_id}/blobServices/default/containers/{container.name}",
            scanned_at=_now(),
            location=facts.location.model_copy(deep=True) if facts.location else None,
            encryption=encryption.model_copy() if encryption else None,
            transport=facts.transport.model_copy() if facts.transport else None,
            access=access,
            tags=tags,
            unknown=unknown,
            evidence=evidence,
        )

    def _account_record(
        self,
        facts: _Facts,
        scopes: _Scopes | None,
        containers_unknown: Unknown | None,
        attempts: list[Evidence],
    ) -> StorageResource:
        """The account as one resource: it has no containers, or they could not be listed."""
        unknown = dict(facts.unknown)
        evidence = [*facts.evidence, *attempts]
        encryption = facts.encryption.model_copy() if facts.encryption else None
        if scopes is not None:
            evidence.append(scopes.evidence)
        if containers_unknown is not None:
            if self.want_tags:
                unknown["tags"] = containers_unknown
            # Unreadable containers may name encryption scopes other than the account's key.
            if encryption is not None and (scopes is None or scopes.failure is not None or scopes.by_name):
                unknown.update({f"encryption.{leaf}": containers_unknown for leaf in KEY_LEAVES})
                encryption = self._unresolved_keys(
                    containers_unknown.reason, containers_unknown.code
                ).encryption
        elif scopes is not None and scopes.failure is not None and encryption is not None:
            unknown.update({f"encryption.{leaf}": scopes.failure for leaf in KEY_LEAVES})
            encryption = self._unresolved_keys(scopes.failure.reason, scopes.failure.code).encryption
        access = None
        if self.want_access:
            access = Access(
                public_access_blocked=facts.allow_public is False,
                detail={"allowBlobPublicAccess": facts.allow_public},
            )
        return StorageResource(
            provider="azure",
            kind="account",
            account=facts.subscription,
            storage_account=facts.name,
            name=facts.name,
            id=facts.account_id,
            scanned_at=_now(),
            location=facts.location,
            encryption=encryption,
            transport=facts.transport,
            access=access,
            tags=dict(facts.tags) if self.want_tags else None,
            unknown=unknown,
            evidence=evidence,
        )


def _microsoft_managed() -> _KeyEncryption:
    return _KeyEncryption(
        Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="microsoft-managed",
            key_management="provider-managed",
            key_id=None,
            key_location=None,
        ),
        {},
        [],
    )


@click.command("azure")
@common_scan_options
@click.option(
    "--subscription",
    "subscriptions",
    multiple=True,
    required=True,
    help="Subscription id to scan (repeatable).",
)
@click.option(
    "--arm-endpoint",
    default=DEFAULT_ARM_ENDPOINT,
    show_default=True,
    help="Azure Resource Manager base URL (sovereign clouds, tests). Must be https.",
)
@click.option(
    "--blob-endpoint-template",
    default=None,
    help="Blob endpoint per account, with '{account}', e.g. 'http://127.0.0.1:10000/{account}' "
    "(default: the account's primaryEndpoints.blob from ARM).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM file of CA certificates to trust for ARM and blob endpoints (default: the system's).",
)
@click.option(
    "--blob-credential",
    type=click.Choice(["token", "shared-key", "none"]),
    default="token",
    show_default=True,
    help=f"How to list containers on the data plane: Entra ID token, shared keys from ${ACCOUNT_KEYS_ENV}, "
    "or not at all (ARM only).",
)
@click.option(
    "--container-page-size",
    type=click.IntRange(1, 5000),
    default=None,
    help="Containers per listing page (default: the service's, 5000 on the data plane).",
)
@click.option(
    "--max-retries", default=4, show_default=True, type=click.IntRange(0, 20), help="Retries per call."
)
@click.option(
    "--retry-backoff",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0, 60),
    help="Exponential backoff factor in seconds (Retry-After wins when the service sends it).",
)
@click.option(
    "--timeout", default=60.0, show_default=True, type=click.FloatRange(1, 600), help="Read timeout (s)."
)
def command(
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    subscriptions: tuple[str, ...],
    arm_endpoint: str,
    blob_endpoint_template: str | None,
    ca_bundle: Path | None,
    blob_credential: BlobCredentialMode,
    container_page_size: int | None,
    max_retries: int,
    retry_backoff: float,
    timeout: float,
) -> ScanSummary:
    """Scan Azure blob containers of one or more subscriptions into an inventory."""
    if urlparse(arm_endpoint).scheme != "https":
        raise InputError(
            "--arm-endpoint", f"must be an https URL (bearer tokens need TLS), got {arm_endpoint!r}"
        )
    if blob_endpoint_template is not None and "{account}" not in blob_endpoint_template:
        raise InputError("--blob-endpoint-template", "must contain '{account}'")
    account_keys: dict[str, str] = {}
    if blob_credential == "shared-key":
        account_keys = parse_account_keys(os.environ.get(ACCOUNT_KEYS_ENV, ""))
        if not account_keys:
            raise InputError("--blob-credential", f"shared-key needs account keys in ${ACCOUNT_KEYS_ENV}")
    if blob_credential == "token" and os.environ.get(ACCESS_TOKEN_ENV):
        raise InputError(
            "--blob-credential",
            f"${ACCESS_TOKEN_ENV} holds an ARM token, not a storage one: use shared-key or none",
        )
    needs, catalog = scanner_context(policy_paths)
    scanner = AzureScanner(
        needs,
        catalog,
        concurrency,
        subscriptions=list(subscriptions),
        credential=default_credential(),
        arm_endpoint=arm_endpoint,
        blob_endpoint_template=blob_endpoint_template,
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        blob_credential=blob_credential,
        account_keys=account_keys,
        container_page_size=container_page_size,
        retry_total=max_retries,
        retry_backoff=retry_backoff,
        read_timeout=timeout,
    )
    return finish_scan(scanner, output, progress)
