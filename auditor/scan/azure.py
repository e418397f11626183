"""Azure Blob scanner: storage account settings from ARM, containers from each account's blob service.

One `StorageResource` per blob container (kind "container"); an account with no containers, or whose
containers cannot be listed, is one resource of kind "account". Every container inherits its account's
location, replication, TLS and encryption, with the evidence pointing at the account listing. Containers
are listed on the blob data plane (azure-storage-blob) and, where that is not reachable, through ARM
(`blob_containers.list`). See docs/scanners/azure.md.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlparse

import click
import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.storage import StorageManagementClient
from azure.storage.blob import BlobServiceClient
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
from auditor.scan.azure_calls import (
    OP_ACCOUNTS,
    OP_ARM_GET,
    OP_ARM_LIST,
    OP_BLOB_LIST,
    RAW_EVIDENCE_BYTES,
    ArmRetry,
    BlobRetry,
    LastAnswer,
    MalformedAnswer,
    check_arm_page,
    failure,
    is_malformed,
    jsonable,
    malformed_unknown,
    recorder,
    unknown_from,
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
from auditor.scan.azure_keys import KEY_LEAVES, KeyResolver, Scopes
from auditor.scan.azure_source import AzureCloud, AzureOptions, is_geo_redundant, paired_region
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import RetrySettings, now
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.section import options_retry, section_options
from auditor.scan.threads import stream

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from auditor.policy.zones import ZoneCatalog

__all__ = [
    "ACCESS_TOKEN_ENV",
    "ACCOUNT_KEYS_ENV",
    "RAW_EVIDENCE_BYTES",
    "AzureScanner",
    "StaticTokenCredential",
    "command",
    "default_credential",
    "parse_account_keys",
    "unknown_from",
]

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"

# Azure Storage refuses TLS 1.0/1.1 on every account in every cloud since 3 February 2026 (moved
# from 1 Nov 2024, then 1 Nov 2025): TLS 1.2 is the platform floor whatever `minimumTlsVersion` says.
TLS_FLOOR = ProviderTlsFloor(
    version="TLS1_2",
    since=date(2026, 2, 3),
    source="https://learn.microsoft.com/en-us/azure/storage/common/transport-layer-security-configure-migrate-to-tls2",
)

BlobCredentialMode = Literal["token", "shared-key", "none"]
# The shared retry/timeout settings this scanner honours (azure-core retries count attempts).
RETRY_SUPPORTED = frozenset(
    {"max_attempts", "timeout", "connect_timeout", "retry_backoff", "retry_after_max"}
)


def _redacted(record: InventoryRecord) -> InventoryRecord:
    if isinstance(record, CoverageGap):
        record.reason = redact(record.reason)
    return record


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
        retry_settings: RetrySettings | None = None,
    ) -> None:
        super().__init__(needs, catalog, concurrency)
        given = retry_settings or RetrySettings()
        given.refuse_unsupported("azure", RETRY_SUPPORTED)
        if given.max_attempts is not None:
            retry_total = given.max_attempts - 1
        retry_backoff = given.retry_backoff if given.retry_backoff is not None else retry_backoff
        retry_after_max = given.retry_after_max if given.retry_after_max is not None else retry_after_max
        connection_timeout = given.connect_timeout or connection_timeout
        read_timeout = given.timeout or read_timeout
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
        self._answer = LastAnswer()
        self.recorder = recorder(self.calls, self._answer)
        self.keys = KeyResolver(
            arm=self._arm,
            answer=self._answer,
            recorder=self.recorder,
            want_key_location=self.want_key_location,
            call_bound=self.call_bound,
        )

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
                    retry_policy=ArmRetry(
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
            retry_policy=BlobRetry(
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
        queue is drained, whatever any one answer was (`auditor.scan.threads.stream`).
        """

        def drive(emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
            self._drive(lambda record: emit(_redacted(record)), stop)

        yield from stream(
            drive, capacity=max(256, self.concurrency * 16), name="azure-scan", close=self._close
        )

    def _close(self) -> None:
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
                self.calls.add(OP_ACCOUNTS)
                pages_read += 1
                at = now()
                check_arm_page(self._answer, OP_ACCOUNTS)
                entries = [jsonable(dict(account)) for account in page]
                for entry in entries:
                    listed += 1
                    yield entry, at
                self._answer.clear()
        except Exception as exc:
            self.calls.add(OP_ACCOUNTS)
            unknown = unknown_from(exc, OP_ACCOUNTS)
            reason = unknown.reason
            if is_malformed(exc) and self._answer.body is not None:
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
                    at=now(),
                )
            )

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
                raise MalformedAnswer("a storage account entry without a name or id")
            self._scan_account(subscription, raw, listed_at, emit, emitted)
        except Exception as exc:
            unknown = unknown_from(exc, OP_ACCOUNTS)
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
                    at=now(),
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
        scopes = self.keys.encryption_scopes(facts) if self.want_keys else None

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
                at=now(),
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
                self.calls.add(OP_BLOB_LIST)
                number += 1
                at = now()
                body = self._answer.body
                if body is not None and b"EnumerationResults" not in body[:1024]:
                    raise MalformedAnswer("the answer is not an EnumerationResults document")
                batch: list[_Container] = []
                for props in page:
                    scope = props.encryption_scope
                    listed = {
                        "name": props.name,
                        "metadata": dict(props.metadata or {}) if self.want_tags else None,
                        "public_access": jsonable(props.public_access),
                        "default_encryption_scope": scope.default_encryption_scope if scope else None,
                        "prevent_encryption_scope_override": (
                            scope.prevent_encryption_scope_override if scope else None
                        ),
                        "last_modified": jsonable(props.last_modified),
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
                                    call=OP_BLOB_LIST,
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
            return self._listing_failure(OP_BLOB_LIST, exc, request, number + 1)
        return None, Evidence(call=OP_BLOB_LIST, at=now(), attributes=[])

    def _listing_failure(
        self, operation: str, exc: Exception, request: dict[str, Any], page: int
    ) -> tuple[Unknown, Evidence]:
        """A container listing that failed on `page`: why, and the evidence of the failed call."""
        self.calls.add(operation)
        return failure(
            self.recorder, exc, operation, ["tags", "access", "encryption"], {**request, "page": page}
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
                reason=f"BadResourceId: no resource group in '{facts.account_id}' ({OP_ARM_LIST})",
            )
            return unknown, Evidence(call=OP_ARM_LIST, at=now(), attributes=[], error=unknown.reason)
        client = self._arm(facts.subscription)
        kwargs: dict[str, Any] = {}
        if self.container_page_size:
            kwargs["maxpagesize"] = str(self.container_page_size)
            request["$maxpagesize"] = self.container_page_size
        number = 0
        self._answer.clear()
        try:
            for page in client.blob_containers.list(facts.resource_group, facts.name, **kwargs).by_page():
                self.calls.add(OP_ARM_LIST)
                number += 1
                at = now()
                check_arm_page(self._answer, OP_ARM_LIST)
                batch = [
                    self._arm_container(facts, jsonable(dict(item)), at, {**request, "page": number})
                    for item in page
                ]
                self._answer.clear()
                emit_page(batch)
        except Exception as exc:
            return self._listing_failure(OP_ARM_LIST, exc, request, number + 1)
        return None, Evidence(call=OP_ARM_LIST, at=now(), attributes=[])

    def _arm_container(
        self, facts: _Facts, item: dict[str, Any], at: datetime, request: dict[str, Any]
    ) -> _Container:
        props = item.get("properties") or {}
        name = item.get("name")
        if not isinstance(name, str) or not name or not isinstance(props, dict):
            raise MalformedAnswer("a container entry without a name or properties")
        container = _Container(
            name=name,
            metadata=None,
            public_access=props.get("publicAccess"),
            default_scope=props.get("defaultEncryptionScope"),
            deny_override=props.get("denyEncryptionScopeOverride"),
            evidence=[
                Evidence(
                    call=OP_ARM_LIST,
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
            self.calls.add(OP_ARM_GET)
            group = facts.resource_group or ""  # _list_arm returns early without one
            got = self._arm(facts.subscription).blob_containers.get(group, facts.name, name)
            if got is None:
                raise MalformedAnswer("no container in the answer")
            answer = jsonable(dict(got))
            got_props = answer.get("properties")
            if answer.get("name") != name or not isinstance(got_props, dict):
                raise MalformedAnswer(f"the answer is not container '{name}' with properties")
            metadata = got_props.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise MalformedAnswer("metadata is not a mapping")
            container.metadata = {str(k): str(v) for k, v in metadata.items()}
            container.evidence.append(
                Evidence(call=OP_ARM_GET, at=now(), attributes=["tags"], request=get_request, response=answer)
            )
        except Exception as exc:
            unknown, evidence = failure(self.recorder, exc, OP_ARM_GET, ["tags"], get_request)
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
        malformed = f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS}"
        if props_raw is not None and not isinstance(props_raw, dict):
            for group in ("location", "encryption", "transport", "access"):
                facts.unknown[group] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"{malformed} (properties is not an object) ({OP_ACCOUNTS})",
                )
        if raw_tags is not None and not isinstance(raw_tags, dict):
            facts.unknown["tags"] = Unknown(
                code=UnknownCode.ERROR, reason=f"{malformed} (tags is not an object) ({OP_ACCOUNTS})"
            )
        if allow_public is not None and not isinstance(allow_public, bool):
            facts.unknown["access.public_access_blocked"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"{malformed} (allowBlobPublicAccess is {type(allow_public).__name__}) "
                f"({OP_ACCOUNTS})",
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
                call=OP_ACCOUNTS,
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
                facts.unknown["location"] = malformed_unknown(exc, OP_ACCOUNTS)
        if self.want_transport:
            try:
                self._account_transport(facts, props, listed_at)
            except Exception as exc:
                facts.transport = None
                facts.unknown["transport"] = malformed_unknown(exc, OP_ACCOUNTS)
        if self.want_encryption:
            try:
                resolved = self.keys.account_encryption(facts, props)
            except Exception as exc:
                resolved = self.keys.unresolved(malformed_unknown(exc, OP_ACCOUNTS).reason, UnknownCode.ERROR)
            facts.encryption = resolved.encryption
            facts.unknown.update(resolved.unknown)
            facts.evidence.extend(resolved.evidence)
        return facts

    def _account_location(self, facts: _Facts, raw: dict[str, Any], props: dict[str, Any]) -> None:
        location_raw = raw.get("location")
        if not location_raw:
            facts.unknown["location"] = Unknown(
                code=UnknownCode.ERROR,
                reason=f"MissingLocation: the account has no location ({OP_ACCOUNTS})",
            )
            return
        if not isinstance(location_raw, str):
            raise MalformedAnswer(f"location is {type(location_raw).__name__}")
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
                reason=f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS} (no sku.name, so "
                f"the replication and its regions are unknown) ({OP_ACCOUNTS})",
                partial="members",
            )
        elif is_geo_redundant(self.catalog, sku):
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
                    reason=f"MalformedAnswer: malformed/empty answer to {OP_ACCOUNTS} (secondaryLocation "
                    f"is {type(secondary_raw).__name__}) ({OP_ACCOUNTS})",
                    partial="members",
                )
            else:
                secondary = (
                    secondary_raw.lower().replace(" ", "")
                    if secondary_raw
                    else paired_region(self.catalog, primary)
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
                        f"({OP_ACCOUNTS})",
                        partial="members",
                    )
                elif secondary != primary:
                    regions.append(secondary)
        elif sku.lower() not in {s.lower() for s in self.catalog.azure.local_skus}:
            facts.unknown["location.regions"] = Unknown(
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"UnknownSku: SKU '{sku}' is in neither the geo-redundant nor the local SKU list "
                f"of the zone catalog ({OP_ACCOUNTS})",
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
                reason=f"MissingSetting: ARM returned no supportsHttpsTrafficOnly ({OP_ACCOUNTS})",
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
                reason=f"MissingSetting: ARM returned no minimumTlsVersion ({OP_ACCOUNTS})",
            )
        facts.transport = transport

    # --- records ---------------------------------------------------------------------------------

    def _container_record(
        self, facts: _Facts, container: _Container, scopes: Scopes | None
    ) -> StorageResource:
        unknown = {k: v for k, v in facts.unknown.items() if not k.startswith("encryption")}
        evidence = [*facts.evidence, *container.evidence]
        encryption = None
        if self.want_encryption:
            resolved = self.keys.container_encryption(facts, container, scopes)
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
            scanned_at=now(),
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
        scopes: Scopes | None,
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
                encryption = self.keys.unresolved(
                    containers_unknown.reason, containers_unknown.code
                ).encryption
        elif scopes is not None and scopes.failure is not None and encryption is not None:
            unknown.update({f"encryption.{leaf}": scopes.failure for leaf in KEY_LEAVES})
            encryption = self.keys.unresolved(scopes.failure.reason, scopes.failure.code).encryption
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
            scanned_at=now(),
            location=facts.location,
            encryption=encryption,
            transport=facts.transport,
            access=access,
            tags=dict(facts.tags) if self.want_tags else None,
            unknown=unknown,
            evidence=evidence,
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
    retry: RetrySettings,
) -> ScanSummary:
    """Scan Azure blob containers of one or more subscriptions into an inventory."""
    section = AzureCloud(
        subscriptions=list(subscriptions),
        arm_endpoint=arm_endpoint,
        blob_endpoint_template=blob_endpoint_template,
        ca_bundle=ca_bundle,
        blob_credential=blob_credential,
        options={"concurrency": concurrency}
        | ({"container-page-size": container_page_size} if container_page_size is not None else {}),
    )
    return scan_section(section, list(policy_paths), output, progress, retry)


# --- the source: one section of auditor.yaml scanned (auditor.scan.azure_source registers it) ----


def scan_section(
    section: AzureCloud,
    policy_paths: list[Path],
    output: Path,
    progress: bool | None,
    retry: RetrySettings | None = None,
) -> ScanSummary:
    """Scan what `section` names into `output` (the command and scale-out units both run this)."""
    options = section_options(section, AzureOptions)
    arm_endpoint = section.arm_endpoint or DEFAULT_ARM_ENDPOINT
    blob_credential: BlobCredentialMode = section.blob_credential or "token"
    if urlparse(arm_endpoint).scheme != "https":
        raise InputError(
            "--arm-endpoint", f"must be an https URL (bearer tokens need TLS), got {arm_endpoint!r}"
        )
    if section.blob_endpoint_template is not None and "{account}" not in section.blob_endpoint_template:
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
        options.concurrency,
        subscriptions=list(section.subscriptions),
        credential=default_credential(),
        arm_endpoint=arm_endpoint,
        blob_endpoint_template=section.blob_endpoint_template,
        ca_bundle=str(section.ca_bundle) if section.ca_bundle else None,
        blob_credential=blob_credential,
        account_keys=account_keys,
        container_page_size=options.container_page_size,
        retry_settings=retry or options_retry(options),
    )
    return finish_scan(scanner, output, progress)
