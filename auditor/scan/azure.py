"""Azure scanner: blob containers and storage accounts, and Azure OpenAI / AI Foundry resources.

One `StorageResource` per blob container (kind "container"); an account with no containers, or whose
containers cannot be listed, is one resource of kind "account". Every container inherits its account's
location, replication, TLS and encryption, with the evidence pointing at the account listing. Containers
are listed on the blob data plane (azure-storage-blob) and, where that is not reachable, through ARM
(`blob_containers.list`). See docs/scanners/azure.md. AI accounts and their model deployments come from
`auditor.scan.azure_ai` (docs/scanners/azure-openai.md); each part runs only when a loaded policy is
scoped to its kinds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

import click
from azure.storage.blob import BlobServiceClient

from auditor.cli_options import SCAN_EXIT_CODES, list_option
from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    CoverageGap,
    Evidence,
    Provider,
    StorageResource,
    Unknown,
    UnknownCode,
)
from auditor.scan.azure_accounts import TLS_FLOOR, AccountFacts, account_facts
from auditor.scan.azure_ai import AzureAI
from auditor.scan.azure_calls import (
    OP_ACCOUNTS,
    OP_ARM_GET,
    OP_ARM_LIST,
    OP_BLOB_LIST,
    RAW_EVIDENCE_BYTES,
    AzureClients,
    BlobCredentialMode,
    LastAnswer,
    Listing,
    MalformedAnswer,
    check_arm_page,
    jsonable,
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
)
from auditor.scan.azure_keys import KEY_LEAVES, KeyResolver, Scopes
from auditor.scan.azure_source import AzureCloud, AzureOptions
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
    "TLS_FLOOR",
    "AzureScanner",
    "StaticTokenCredential",
    "command",
    "default_credential",
    "parse_account_keys",
    "unknown_from",
]

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# The shared retry/timeout settings this scanner honours (declared with its options).
RETRY_SUPPORTED = AzureOptions.retry_used
# What a container listing page feeds, and what its failure leaves unknown.
LISTED = ["tags", "access", "encryption"]


Emit = Callable[[InventoryRecord], None]
# Lists a subscription's accounts of one kind (a failed listing emitted as a gap) ...
AccountLister = Callable[[str, Emit], Iterator[tuple[dict[str, Any], datetime]]]
# ... and scans one listed account (subscription, listing entry, listed at), emitting its records.
AccountWorker = Callable[[str, dict[str, Any], datetime, Emit], None]


def _redacted(record: InventoryRecord) -> InventoryRecord:
    if isinstance(record, CoverageGap):
        record.reason = redact(record.reason)
    return record


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


class AzureScanner(Scanner):
    """Inventories Azure blob containers and AI resources of one or more subscriptions."""

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
        account_keys = dict(account_keys or {})
        for key in account_keys.values():
            register_secret(key)
        self.container_page_size = container_page_size
        # The longest one logical call (every retry and wait included) can take: no wait in the scan
        # is longer than this, so a server that never answers cannot hold the scan.
        self.call_bound = (
            (retry_total + 1) * (connection_timeout + read_timeout)
            + retry_total * max(retry_backoff_max, retry_after_max)
            + 5.0
        )

        # Storage is listed only for policies scoped to containers or accounts, and reads only what
        # those policies read; the AI part (`AzureAI`) does the same for its kinds.
        self.scan_storage = needs.wants_kind("container") or needs.wants_kind("account")
        self.storage_needs = needs.for_kinds("container", "account")
        self.want_encryption = self.storage_needs.wants("encryption")
        self.want_keys = any(self.storage_needs.wants(f"encryption.{leaf}") for leaf in KEY_LEAVES)
        self.want_access = self.storage_needs.wants("access")
        self.want_tags = self.storage_needs.wants("tags")

        self._answer = LastAnswer()
        self.clients = AzureClients(
            credential=credential,
            arm_endpoint=arm_endpoint.rstrip("/"),
            verify=ca_bundle or True,
            pool_size=concurrency + 4,
            answer=self._answer,
            retry_total=retry_total,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_after_max=retry_after_max,
            connection_timeout=connection_timeout,
            read_timeout=read_timeout,
            call_bound=self.call_bound,
            blob_credential=blob_credential,
            blob_endpoint_template=blob_endpoint_template,
            account_keys=account_keys,
        )
        self.recorder = recorder(self.calls, self._answer)
        self.keys = KeyResolver(
            arm=self.clients.arm,
            answer=self._answer,
            recorder=self.recorder,
            want_key_location=self.storage_needs.wants("encryption.key_location"),
            call_bound=self.call_bound,
        )
        self.ai = AzureAI(
            needs,
            catalog,
            arm=self.clients.arm,
            arm_endpoint=self.clients.arm_endpoint,
            answer=self._answer,
            recorder=self.recorder,
            keys=self.keys,
        )

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
            drive, capacity=max(256, self.concurrency * 16), name="azure-scan", close=self.clients.close
        )

    def _drive(self, emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
        slots = threading.BoundedSemaphore(self.concurrency * 2)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="azure-account")
        # Storage accounts, then AI accounts, per subscription: each lister feeds its account worker.
        parts: list[tuple[AccountLister, AccountWorker]] = []
        if self.scan_storage:
            parts.append((self._list_accounts, self._scan_account_guarded))
        if self.ai.wanted:
            parts.append((self.ai.list_accounts, self.ai.scan_account_guarded))
        try:
            for subscription in self.subscriptions:
                for list_accounts, scan_account in parts:
                    for raw, listed_at in list_accounts(subscription, emit):
                        while not slots.acquire(timeout=0.2):
                            if stop.is_set():
                                return
                        if stop.is_set():
                            slots.release()
                            return
                        future = pool.submit(scan_account, subscription, raw, listed_at, emit)
                        future.add_done_callback(lambda _: slots.release())
        finally:
            # Workers end by themselves (every call is bounded); a stopped scan drops queued ones.
            pool.shutdown(wait=True, cancel_futures=stop.is_set())

    def _list_accounts(
        self, subscription: str, emit: Callable[[InventoryRecord], None]
    ) -> Iterator[tuple[dict[str, Any], datetime]]:
        """Every storage account of a subscription; a listing failure becomes a coverage gap."""
        listing = Listing(
            self.recorder,
            self._answer,
            OP_ACCOUNTS,
            [],
            {"subscription": subscription},
            lambda: self.clients.arm(subscription).storage_accounts.list().by_page(),
            check=lambda: check_arm_page(self._answer, OP_ACCOUNTS),
            item=lambda account: jsonable(dict(account)),
        )
        yield from listing.entries(subscription, "subscription", "storage account", emit)

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
            entry = Evidence(
                call=OP_ACCOUNTS,
                at=listed_at,
                attributes=[],
                request={"subscription": subscription},
                response=raw,
                error=unknown.reason,
            )
            emit(
                CoverageGap(
                    provider="azure",
                    account=subscription,
                    scope="containers" if emitted else "account",
                    code=unknown.code,
                    reason=f"{what} {extent}: {unknown.reason}",
                    at=now(),
                    evidence=[entry],
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
        facts = account_facts(
            subscription, raw, listed_at, needs=self.storage_needs, catalog=self.catalog, keys=self.keys
        )
        scopes = self.keys.encryption_scopes(facts) if self.want_keys else None

        def emit_page(containers: list[_Container]) -> None:
            for container in containers:
                if container.name not in emitted:
                    emit(self._container_record(facts, container, scopes))
                    emitted.add(container.name)

        failures: list[tuple[str, Unknown]] = []
        attempts: list[Evidence] = []
        client, url, why_not = self.clients.blob(facts.name, facts.blob_endpoint)
        listed_all = False
        if client is not None:
            with client:
                failure, evidence = self._list_data_plane(client, url or "", emit_page)
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
                evidence=list(attempts),
            )
        )

    # --- container listing -----------------------------------------------------------------------

    def _list_data_plane(
        self, client: BlobServiceClient, url: str, emit_page: Callable[[list[_Container]], None]
    ) -> tuple[Unknown | None, Evidence]:
        request: dict[str, Any] = {"endpoint": url, "include": ["metadata"] if self.want_tags else []}
        if self.container_page_size:
            request["maxresults"] = self.container_page_size

        def check() -> None:
            body = self._answer.body
            if body is not None and b"EnumerationResults" not in body[:1024]:
                raise MalformedAnswer("the answer is not an EnumerationResults document")

        listing = Listing(
            self.recorder,
            self._answer,
            OP_BLOB_LIST,
            LISTED,
            request,
            lambda: client.list_containers(
                include_metadata=self.want_tags, results_per_page=self.container_page_size
            ).by_page(),
            check=check,
            item=self._listed_container,
        )
        for page in listing:
            at = now()
            evidence_request = {**request, "page": listing.pages_read}
            emit_page(
                [
                    _Container(
                        name=listed["name"],
                        metadata=listed["metadata"],
                        public_access=listed["public_access"],
                        default_scope=listed["default_encryption_scope"],
                        deny_override=listed["prevent_encryption_scope_override"],
                        evidence=[
                            Evidence(
                                call=OP_BLOB_LIST,
                                at=at,
                                attributes=["name", *LISTED],
                                request=evidence_request,
                                response=listed,
                            )
                        ],
                    )
                    for listed in page
                ]
            )
        return self._listing_result(listing)

    def _listed_container(self, props: Any) -> dict[str, Any]:
        """One data-plane listing entry as the evidence shows it."""
        scope = props.encryption_scope
        return {
            "name": props.name,
            "metadata": dict(props.metadata or {}) if self.want_tags else None,
            "public_access": jsonable(props.public_access),
            "default_encryption_scope": scope.default_encryption_scope if scope else None,
            "prevent_encryption_scope_override": scope.prevent_encryption_scope_override if scope else None,
            "last_modified": jsonable(props.last_modified),
        }

    @staticmethod
    def _listing_result(listing: Listing) -> tuple[Unknown | None, Evidence]:
        """Why a container listing failed and the failed page's evidence, or None when it was whole."""
        failed = listing.failure
        if failed is None:
            return None, Evidence(call=listing.operation, at=now(), attributes=[])
        assert failed.unknown is not None
        return failed.unknown, failed.evidence

    def _list_arm(
        self, facts: AccountFacts, emit_page: Callable[[list[_Container]], None]
    ) -> tuple[Unknown | None, Evidence]:
        request: dict[str, Any] = {
            "subscription": facts.subscription,
            "resourceGroup": facts.resource_group,
            "account": facts.name,
        }
        group = facts.resource_group
        if group is None:
            unknown = Unknown(
                code=UnknownCode.ERROR,
                reason=f"BadResourceId: no resource group in '{facts.account_id}' ({OP_ARM_LIST})",
            )
            return unknown, Evidence(call=OP_ARM_LIST, at=now(), attributes=[], error=unknown.reason)
        kwargs: dict[str, Any] = {}
        if self.container_page_size:
            kwargs["maxpagesize"] = str(self.container_page_size)
            request["$maxpagesize"] = self.container_page_size
        listing = Listing(
            self.recorder,
            self._answer,
            OP_ARM_LIST,
            LISTED,
            request,
            lambda: (
                self.clients.arm(facts.subscription)
                .blob_containers.list(group, facts.name, **kwargs)
                .by_page()
            ),
            check=lambda: check_arm_page(self._answer, OP_ARM_LIST),
            item=_arm_entry,
        )
        for page in listing:
            at = now()
            page_request = {**request, "page": listing.pages_read}
            emit_page([self._arm_container(facts, group, item, at, page_request) for item in page])
        return self._listing_result(listing)

    def _arm_container(
        self, facts: AccountFacts, group: str, item: dict[str, Any], at: datetime, request: dict[str, Any]
    ) -> _Container:
        props = item.get("properties") or {}
        name = str(item["name"])
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
                    attributes=["name", *LISTED],
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

        def perform() -> tuple[dict[str, Any], dict[str, str]]:
            got = self.clients.arm(facts.subscription).blob_containers.get(group, facts.name, name)
            if got is None:
                raise MalformedAnswer("no container in the answer")
            answer = jsonable(dict(got))
            got_props = answer.get("properties")
            if answer.get("name") != name or not isinstance(got_props, dict):
                raise MalformedAnswer(f"the answer is not container '{name}' with properties")
            metadata = got_props.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise MalformedAnswer("metadata is not a mapping")
            return answer, {str(k): str(v) for k, v in metadata.items()}

        self._answer.clear()
        try:
            got = self.recorder.call(OP_ARM_GET, ["tags"], get_request, perform, shown=lambda value: value[0])
        finally:
            self._answer.clear()
        container.evidence.append(got.evidence)
        if got.value is not None:
            container.metadata = got.value[1]
        else:
            assert got.unknown is not None
            container.unknown["tags"] = got.unknown
        return container

    # --- records ---------------------------------------------------------------------------------

    def _container_record(
        self, facts: AccountFacts, container: _Container, scopes: Scopes | None
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
        facts: AccountFacts,
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


def _arm_entry(item: Any) -> dict[str, Any]:
    """One ARM container listing entry as plain JSON; an entry without a name fails its page."""
    entry: dict[str, Any] = jsonable(dict(item))
    name = entry.get("name")
    if not isinstance(name, str) or not name or not isinstance(entry.get("properties") or {}, dict):
        raise MalformedAnswer("a container entry without a name or properties")
    return entry


@click.command("azure", epilog=SCAN_EXIT_CODES)
@common_scan_options
@list_option(
    "--subscription",
    "subscriptions",
    required=True,
    metavar="ID",
    help="Subscription id to scan",
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
    """Scan Azure blob containers and Azure OpenAI / AI Foundry resources into an inventory."""
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
    needs, catalog = scanner_context(policy_paths)
    lists_containers = needs.wants_kind("container") or needs.wants_kind("account")
    if lists_containers and blob_credential == "token" and os.environ.get(ACCESS_TOKEN_ENV):
        raise InputError(
            "--blob-credential",
            f"${ACCESS_TOKEN_ENV} holds an ARM token, not a storage one: use shared-key or none",
        )
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
