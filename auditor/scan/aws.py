"""AWS scanner: every S3 bucket (and Bedrock resource) of every account, only the calls the loaded
policies need.

Per bucket it reads, as the policies require: the region (ListBuckets' ``BucketRegion``, else
GetBucketLocation), replication destinations (GetBucketReplication + HeadBucket per destination),
default encryption (GetBucketEncryption + one KMS DescribeKey per distinct key), the bucket policy
(GetBucketPolicy; the transport verdict is derived from it by `auditor.scan.aws_bucket_policy`), the public
access block and the tags. A "not found" answer is explicitly absent; any other failure leaves the
attribute unknown with its reason, so a policy reports `error`, never `pass`. See docs/scanners/aws.md.

Buckets are listed only when a loaded policy is scoped to `bucket`; Bedrock resources and the AI
services opt-out policy only when one is scoped to their kind (`auditor.scan.aws_ai`,
docs/scanners/aws-bedrock.md).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import click
from botocore.exceptions import ClientError

from auditor.cli_options import SCAN_EXIT_CODES, list_option
from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Provider,
    Replica,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws_accounts import (
    AccountResolver,
    AccountSource,
    SessionHook,
    classify_error,
    client_config,
    read_accounts_file,
)
from auditor.scan.aws_ai import BedrockScanner
from auditor.scan.aws_bucket_policy import apply_bucket_policy
from auditor.scan.aws_calls import AccountClients
from auditor.scan.aws_encryption import (
    S3_DEFAULT_ENCRYPTION_SOURCE,
    arn_region,
    key_to_settle,
    s3_default_encryption,
)
from auditor.scan.aws_source import (
    PUBLIC_ACCESS_FLAGS,
    AwsCloud,
    AwsOptions,
    region_of_location,
    s3_transport,
)
from auditor.scan.aws_source import TLS_FLOOR as TLS_FLOOR  # re-exported: the floor its records carry
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import RetrySettings, bounded, now
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.section import options_retry, section_options
from auditor.scan.threads import POLL, stream
from auditor.streams import diagnostic

# AWS retired TLS 1.0/1.1 on all its API endpoints; the post (updated) says the gradual rollout
# completed by December 31, 2023 (first announced for June 28, 2023).
SSE_DEFAULT_NOTE = (
    "No default encryption configuration. Real S3 applies SSE-S3 to new objects by default since "
    f"2023-01-05 ({S3_DEFAULT_ENCRYPTION_SOURCE}); "
    "auditor does not assume it and records encryption as not configured."
)
LIST_PAGE_SIZE = 1000
REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
# The shared retry/timeout settings this scanner honours (declared with its options).
RETRY_SUPPORTED = AwsOptions.retry_used


def _members(problem: Unknown) -> Unknown:
    """`problem` as partial knowledge: the recorded list holds known members, others may be missing."""
    return Unknown(code=problem.code, reason=problem.reason, partial="members")


def _bucket_of(arn: str) -> str:
    return arn.split(":::", 1)[1].split("/", 1)[0] if ":::" in arn else arn


class AwsScanner(Scanner):
    """Scans the S3 buckets and Bedrock resources of AWS accounts into `StorageResource` records."""

    provider: ClassVar[Provider] = "aws"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        concurrency: int = 16,
        *,
        source: AccountSource | None = None,
        regions: Iterable[str] | None = None,
        retry_mode: str = "standard",
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        verify_region: bool = False,
        session_hook: SessionHook | None = None,
        default_region: str = "us-east-1",
        retry_settings: RetrySettings | None = None,
    ) -> None:
        super().__init__(needs, catalog, concurrency)
        self.source = source or AccountSource()
        self.regions = frozenset(r.lower() for r in regions) if regions is not None else None
        self.verify_region = verify_region
        given = retry_settings or RetrySettings()
        given.refuse_unsupported("aws", RETRY_SUPPORTED)
        self.retry = given.merged(
            max_attempts=max_attempts, timeout=read_timeout, connect_timeout=connect_timeout
        )
        self.config = client_config(
            concurrency,
            retry_mode,
            int(self.retry.max_attempts or max_attempts),
            float(self.retry.connect_timeout or connect_timeout),
            float(self.retry.timeout or read_timeout),
        )
        self.resolver = AccountResolver(self.source, self.config, self.calls, session_hook, default_region)
        # What the policies scoped to buckets read (the bucket calls follow it), and the AI resources.
        self.bucket_needs = needs.for_kinds("bucket")
        self.bedrock = BedrockScanner(needs, self.regions, concurrency)
        self._skipped_lock = threading.Lock()
        self.skipped_by_region = 0

    # --- the stream ------------------------------------------------------------------------------

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield every bucket and AI resource of every account (and a gap per scope that cannot be scanned).

        A driver thread resolves the accounts one after the other and lists each account's
        buckets; workers scan the buckets and emit their records (`auditor.scan.threads.stream`).
        """
        yield from stream(self._drive, capacity=self.concurrency * 4, name="aws-scan")

    def _drive(self, emit: Callable[[InventoryRecord], None], stop: threading.Event) -> None:
        for item in self.resolver.sessions():
            if stop.is_set():
                return
            if isinstance(item, CoverageGap):
                emit(item)
                continue
            account = AccountClients(item, self.config, self.resolver.region_of(item.session), self.calls)
            self._scan_account(account, emit, stop)

    def _scan_account(
        self, account: AccountClients, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> None:
        if self.needs.wants_kind("bucket"):
            self._scan_buckets(account, emit, stop)
        if self.bedrock.wanted and not stop.is_set():
            self.bedrock.scan_account(account, emit, stop)

    def _scan_buckets(
        self, account: AccountClients, emit: Callable[[InventoryRecord], None], stop: threading.Event
    ) -> None:
        # Bounded in-flight work: memory does not grow with the estate.
        slots = threading.BoundedSemaphore(self.concurrency * 4)

        def scan_one(entry: dict[str, Any]) -> None:
            try:
                record = self._scan_bucket_safely(account, entry)
                if record is not None:
                    emit(record)
            finally:
                slots.release()

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="auditor-aws") as pool:
            for entry in self._list_buckets(account):
                if isinstance(entry, CoverageGap):
                    emit(entry)
                    continue
                while not slots.acquire(timeout=POLL):
                    if stop.is_set():
                        return
                if stop.is_set():
                    slots.release()
                    return
                pool.submit(scan_one, entry)

    def _list_buckets(self, account: AccountClients) -> Iterator[dict[str, Any] | CoverageGap]:
        token: str | None = None
        first = True
        while True:
            params: dict[str, Any] = {"MaxBuckets": LIST_PAGE_SIZE}
            if token:
                params["ContinuationToken"] = token
            page = self._list_page(account, params)
            if isinstance(page, CoverageGap):
                yield page
                return
            buckets = page["Buckets"]
            yield from self._named(account, buckets)
            token = page.get("ContinuationToken")
            if token:
                first = False
                continue
            if first and len(buckets) >= LIST_PAGE_SIZE:
                # A full page without a ContinuationToken: moto truncates there instead of paging.
                # One unpaginated listing settles it (real S3 allows it up to 10,000 buckets).
                full = self._list_page(account, {})
                if isinstance(full, CoverageGap):
                    yield full
                    return
                seen = {b.get("Name") for b in buckets}
                yield from self._named(account, [b for b in full["Buckets"] if b.get("Name") not in seen])
            return

    @staticmethod
    def _named(
        account: AccountClients, entries: list[dict[str, Any]]
    ) -> Iterator[dict[str, Any] | CoverageGap]:
        for entry in entries:
            if entry.get("Name"):
                yield entry
            else:  # a listing entry without a name cannot be scanned, and must not vanish
                reason = f"malformed answer: a bucket entry without a Name: {bounded(repr(entry), 200)}"
                yield CoverageGap(
                    provider="aws",
                    account=account.account.account_id,
                    scope="buckets",
                    code=UnknownCode.ERROR,
                    reason=f"{reason} (s3:ListBuckets)",
                    at=now(),
                    evidence=[
                        Evidence(
                            call="s3:ListBuckets",
                            at=now(),
                            attributes=["buckets"],
                            response=entry,
                            error=reason,
                        )
                    ],
                )

    def _list_page(self, account: AccountClients, params: dict[str, Any]) -> dict[str, Any] | CoverageGap:
        # An empty or garbled 200 is a gap, never an account without buckets (`<Buckets/>` is).
        answer = account.call(None, "s3", "ListBuckets", ["buckets"], **params)
        if answer.value is not None:
            return answer.value
        unknown = answer.unknown or classify_error(
            answer.error or RuntimeError("no answer"), "s3:ListBuckets"
        )
        return CoverageGap(
            provider="aws",
            account=account.account.account_id,
            scope="buckets",
            code=unknown.code,
            reason=unknown.reason,
            at=now(),
            evidence=[answer.evidence],
        )

    def _scan_bucket_safely(self, account: AccountClients, entry: dict[str, Any]) -> InventoryRecord | None:
        """`_scan_bucket`, with an unexpected failure recorded as a gap for that bucket alone."""
        try:
            return self._scan_bucket(account, entry)
        except Exception as exc:  # one bad answer never stops the rest of the scan
            return CoverageGap(
                provider="aws",
                account=account.account.account_id,
                scope=f"bucket:{entry.get('Name')}",
                code=UnknownCode.ERROR,
                reason=f"{type(exc).__name__}: {bounded(str(exc))} (scanning the bucket)",
                at=now(),
            )

    # --- one API call ----------------------------------------------------------------------------

    # --- one bucket ------------------------------------------------------------------------------

    def _scan_bucket(self, account: AccountClients, entry: dict[str, Any]) -> StorageResource | None:
        name = str(entry["Name"])
        wants = self.bucket_needs.wants
        evidence: list[Evidence] = []
        unknown: dict[str, Unknown] = {}

        raw: str | None = None
        region: str | None = None
        location_unknown: Unknown | None = None
        listed = entry.get("BucketRegion")
        if listed and not self.verify_region:
            raw, region = str(listed), region_of_location(self.catalog, str(listed))
            if wants("location"):
                evidence.append(
                    Evidence(call="s3:ListBuckets", at=now(), attributes=["location"], response=entry)
                )
        elif wants("location") or self.regions is not None:
            answer = account.call(None, "s3", "GetBucketLocation", ["location"], Bucket=name)
            call = answer.evidence
            evidence.append(call)
            if answer.unknown is not None or answer.value is None:
                location_unknown = answer.unknown
            else:
                raw = answer.value.get("LocationConstraint") or ""
                region = region_of_location(self.catalog, raw)

        if self.regions is not None and region is not None and region not in self.regions:
            with self._skipped_lock:
                self.skipped_by_region += 1
            return None

        location: Location | None = None
        if wants("location"):
            if location_unknown is not None or region is None:
                unknown["location"] = location_unknown or Unknown(
                    code=UnknownCode.ERROR, reason=f"no region for bucket {name}"
                )
            else:
                location = self._location(account, name, raw, region, evidence, unknown)

        encryption = (
            self._encryption(account, name, region, evidence, unknown) if wants("encryption") else None
        )
        transport = self._transport(account, name, region, evidence, unknown) if wants("transport") else None
        access = self._access(account, name, region, evidence, unknown) if wants("access") else None
        tags = self._tags(account, name, region, evidence, unknown) if wants("tags") else None

        identity = account.account
        record = StorageResource(
            provider="aws",
            kind="bucket",
            account=identity.account_id,
            name=name,
            id=f"arn:{identity.partition}:s3:::{name}",
            scanned_at=now(),
            location=location,
            encryption=encryption,
            transport=transport,
            access=access,
            tags=tags,
            unknown=unknown,
            evidence=evidence,
        )
        apply_bucket_policy(record)  # the transport verdict, from the raw bucket policy
        return record

    def _location(
        self,
        account: AccountClients,
        name: str,
        raw: str | None,
        region: str,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> Location:
        replicas: list[Replica] = []
        if self.bucket_needs.wants("location.regions") or self.bucket_needs.wants("location.replicas"):
            attributes = ["location.regions", "location.replicas"]
            answer = account.call(region, "s3", "GetBucketReplication", attributes, Bucket=name)
            call = answer.evidence
            evidence.append(call)
            if answer.unknown is not None:
                # The replicas are unknown whole; the primary region is still a known member.
                unknown["location.replicas"] = answer.unknown
                unknown["location.regions"] = _members(answer.unknown)
            elif answer.value is not None:
                replicas = self._replicas(account, answer.value, evidence, unknown)
        else:
            skipped = Unknown(
                code=UnknownCode.NOT_COLLECTED,
                reason="GetBucketReplication not called: no loaded policy reads location.regions or replicas",
            )
            unknown["location.regions"] = unknown["location.replicas"] = skipped
        others = sorted({r.region for r in replicas if r.region and r.region != region})
        return Location(raw=raw, type="region", primary=region, regions=[region, *others], replicas=replicas)

    def _replicas(
        self,
        account: AccountClients,
        response: dict[str, Any],
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> list[Replica]:
        # Every rule counts, enabled or not: a disabled rule's destination may still hold copies.
        replicas: list[Replica] = []
        targets: list[str] = []
        for rule in response.get("ReplicationConfiguration", {}).get("Rules", []):
            target = (rule.get("Destination") or {}).get("Bucket")
            if target and target not in targets:
                targets.append(str(target))
        for target in targets:
            bucket = _bucket_of(target)
            region, problem, call = account.destinations.get(
                bucket, functools.partial(self._destination_region, account, bucket)
            )
            evidence.append(call)
            replicas.append(Replica(region=region, kind="replication", target=target))
            if problem is not None:
                # Every destination is listed (region null when unresolved); `regions` holds the
                # primary and each resolved replica region: known members, others may be missing.
                unknown.setdefault("location.regions", _members(problem))
        return replicas

    def _destination_region(
        self, account: AccountClients, bucket: str
    ) -> tuple[str | None, Unknown | None, Evidence]:
        answer = account.call(None, "s3", "HeadBucket", ["location.regions"], Bucket=bucket)
        call = answer.evidence
        region: str | None = None
        if answer.value is not None:
            region = answer.value.get("BucketRegion")
        elif isinstance(answer.error, ClientError):
            # S3 names the bucket's region in this header even when it refuses the request (403/301).
            headers = answer.error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region")
        if region:
            return str(region).lower(), None, call
        problem = answer.unknown or Unknown(
            code=UnknownCode.ERROR, reason=f"HeadBucket gave no region ({bucket})"
        )
        return None, problem, call

    def _encryption(
        self,
        account: AccountClients,
        name: str,
        region: str | None,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> Encryption | None:
        answer = account.call(region, "s3", "GetBucketEncryption", ["encryption"], Bucket=name)
        call = answer.evidence
        evidence.append(call)
        not_configured = Encryption(
            enabled=False,
            algorithm=None,
            scheme=None,
            key_management=None,
            key_id=None,
            key_location=None,
        )
        if answer.absent:
            call.response = {**(call.response or {}), "auditor_note": SSE_DEFAULT_NOTE}
            return not_configured
        if answer.unknown is not None or answer.value is None:
            unknown["encryption"] = answer.unknown or Unknown(code=UnknownCode.ERROR, reason="no answer")
            return None
        rules = answer.value["ServerSideEncryptionConfiguration"]["Rules"]
        default = next(
            (
                r["ApplyServerSideEncryptionByDefault"]
                for r in rules
                if isinstance(r, dict) and r.get("ApplyServerSideEncryptionByDefault")
            ),
            None,
        )
        if default is None:
            # Rules without ApplyServerSideEncryptionByDefault (e.g. only BucketKeyEnabled, as real
            # S3 answers for some buckets) set no default encryption: the same as no configuration.
            call.response = {**(call.response or {}), "auditor_note": SSE_DEFAULT_NOTE}
            return not_configured
        encryption = s3_default_encryption(
            str(default.get("SSEAlgorithm")), default.get("KMSMasterKeyID") or None, region, unknown
        )
        key = key_to_settle(encryption)
        return encryption if key is None else self._kms_key(account, encryption, key, evidence, unknown)

    def _kms_key(
        self,
        account: AccountClients,
        encryption: Encryption,
        key: str,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> Encryption:
        """`encryption` with its KMS key's manager and location, as kms:DescribeKey tells them."""

        def result(management: Any, key_id: str | None, key_location: str | None) -> Encryption:
            update = {"key_management": management, "key_id": key_id, "key_location": key_location}
            return encryption.model_copy(update=update)

        if not (
            self.bucket_needs.wants("encryption.key_management")
            or self.bucket_needs.wants("encryption.key_location")
        ):
            skipped = Unknown(
                code=UnknownCode.NOT_COLLECTED,
                reason="kms:DescribeKey not called: no loaded policy reads the key's manager or location",
            )
            unknown["encryption.key_management"] = unknown["encryption.key_location"] = skipped
            return result(None, key, None)
        key_region = encryption.key_location  # the key ARN's region, else the bucket's
        attributes = ["encryption.key_management", "encryption.key_location"]
        answer = account.keys.get(
            (key_region or "", key),
            lambda: account.call(key_region, "kms", "DescribeKey", attributes, KeyId=key),
        )
        call = answer.evidence
        evidence.append(call)
        metadata = (answer.value or {}).get("KeyMetadata")
        if answer.unknown is not None or not metadata:
            problem = answer.unknown or Unknown(
                code=UnknownCode.ERROR, reason="DescribeKey gave no KeyMetadata"
            )
            unknown["encryption.key_management"] = unknown["encryption.key_location"] = problem
            return result(None, key, None)
        arn = str(metadata.get("Arn") or key)
        manager = metadata.get("KeyManager")
        if manager == "AWS":
            return result("provider-managed", arn, None)
        if manager == "CUSTOMER":
            return result("customer-managed", arn, arn_region(arn) or key_region)
        problem = Unknown(code=UnknownCode.ERROR, reason=f"DescribeKey KeyManager '{manager}' not understood")
        unknown["encryption.key_management"] = unknown["encryption.key_location"] = problem
        return result(None, arn, None)

    def _transport(
        self,
        account: AccountClients,
        name: str,
        region: str | None,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> Transport:
        answer = account.call(region, "s3", "GetBucketPolicy", ["transport"], Bucket=name)
        call = answer.evidence
        evidence.append(call)
        policy: dict[str, Any] | None = None
        if answer.unknown is not None:
            unknown["transport.bucket_policy"] = answer.unknown
        elif answer.value is not None:
            try:
                parsed = json.loads(str(answer.value.get("Policy")))
            except ValueError as exc:
                parsed = None
                unknown["transport.bucket_policy"] = Unknown(
                    code=UnknownCode.ERROR, reason=f"bucket policy is not JSON: {exc} (s3:GetBucketPolicy)"
                )
            if isinstance(parsed, dict):
                policy = parsed
            elif "transport.bucket_policy" not in unknown:
                unknown["transport.bucket_policy"] = Unknown(
                    code=UnknownCode.ERROR, reason="bucket policy is not a JSON object (s3:GetBucketPolicy)"
                )
        return s3_transport(policy)

    def _access(
        self,
        account: AccountClients,
        name: str,
        region: str | None,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> Access | None:
        answer = account.call(region, "s3", "GetPublicAccessBlock", ["access"], Bucket=name)
        call = answer.evidence
        evidence.append(call)
        if answer.absent:
            return Access(public_access_blocked=False, detail=None)
        if answer.unknown is not None or answer.value is None:
            unknown["access"] = answer.unknown or Unknown(code=UnknownCode.ERROR, reason="no answer")
            return None
        config = dict(answer.value.get("PublicAccessBlockConfiguration") or {})
        blocked = all(config.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS)
        return Access(public_access_blocked=blocked, detail=config)

    def _tags(
        self,
        account: AccountClients,
        name: str,
        region: str | None,
        evidence: list[Evidence],
        unknown: dict[str, Unknown],
    ) -> dict[str, str] | None:
        answer = account.call(region, "s3", "GetBucketTagging", ["tags"], Bucket=name)
        call = answer.evidence
        evidence.append(call)
        if answer.absent:
            return {}
        if answer.unknown is not None or answer.value is None:
            unknown["tags"] = answer.unknown or Unknown(code=UnknownCode.ERROR, reason="no answer")
            return None
        return {str(t.get("Key")): str(t.get("Value") or "") for t in answer.value["TagSet"] if t.get("Key")}


def _parse_regions(values: tuple[str, ...]) -> list[str] | None:
    regions = [r.strip().lower() for value in values for r in value.split(",") if r.strip()]
    for region in regions:
        if not REGION_PATTERN.match(region):
            raise InputError("--regions", f"'{region}' is not an AWS region code such as eu-west-1")
    return regions or None


@click.command("aws", epilog=SCAN_EXIT_CODES)
@common_scan_options
@list_option(
    "--profile",
    "profiles",
    metavar="PROFILE",
    help="Named profile to scan (default: the boto3 chain)",
)
@click.option(
    "--role-arn",
    "role",
    default=None,
    help="Role to assume in each account: an ARN (template with '{account_id}') or a role name.",
)
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File of account ids to assume --role-arn into (one per line, '#' comments).",
)
@click.option(
    "--organization", is_flag=True, help="Assume --role-arn into every ACTIVE account of the organization."
)
@list_option(
    "--regions",
    "region_values",
    metavar="REGION",
    help="Only scan buckets and Bedrock resources in these regions",
)
@click.option(
    "--retry-mode", type=click.Choice(["standard", "adaptive"]), default="standard", show_default=True
)
@click.option(
    "--verify-region",
    is_flag=True,
    help="Call GetBucketLocation for every bucket even when ListBuckets gives its BucketRegion.",
)
def command(
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    profiles: tuple[str, ...],
    role: str | None,
    accounts_file: Path | None,
    organization: bool,
    region_values: tuple[str, ...],
    retry_mode: str,
    verify_region: bool,
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory the S3 buckets and Bedrock resources of one or more AWS accounts."""
    _parse_regions(region_values)  # flags are checked in the order they always were
    accounts = read_accounts_file(accounts_file) if accounts_file else ()
    section = AwsCloud(
        profiles=list(profiles),
        role=role,
        accounts=list(accounts),
        organization=organization,
        regions=list(region_values),
        options={"concurrency": concurrency, "retry-mode": retry_mode, "verify-region": verify_region},
    )
    return scan_section(section, list(policy_paths), output, progress, retry)


# --- the source: one section of auditor.yaml scanned (auditor.scan.aws_source registers it) ------


def scan_section(
    section: AwsCloud,
    policy_paths: list[Path],
    output: Path,
    progress: bool | None,
    retry: RetrySettings | None = None,
) -> ScanSummary:
    """Scan what `section` names into `output` (the command and scale-out units both run this)."""
    options = section_options(section, AwsOptions)
    regions = _parse_regions(tuple(section.regions))
    source = AccountSource(
        profiles=tuple(section.profiles),
        role=section.role,
        accounts=tuple(section.accounts),
        organization=section.organization,
    )
    needs, catalog = scanner_context(policy_paths)
    scanner = AwsScanner(
        needs,
        catalog,
        options.concurrency,
        source=source,
        regions=regions,
        retry_mode=options.retry_mode,
        verify_region=options.verify_region,
        retry_settings=retry or options_retry(options),
    )
    summary = finish_scan(scanner, output, progress)
    if regions is not None and scanner.needs.wants_kind("bucket"):
        diagnostic(f"skipped {scanner.skipped_by_region} buckets outside --regions {','.join(regions)}")
    return summary
