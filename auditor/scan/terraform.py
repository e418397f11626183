"""Terraform scanner: the storage a plan declares, as inventory records of the clouds' providers.

Reads the JSON of `terraform show -json PLAN` (`auditor.scan.terraform_plan`) and builds one
record per S3 bucket, GCS bucket and Azure blob container (or storage account without
containers), resolving across resources as Terraform does: the AWS provider v4+ split bucket
resources, KMS keys, replication destinations and Key Vaults declared in the same plan, provider
blocks (aliases, module inheritance, `var.*`). A value known only after apply is unknown with code
`not_known_until_apply`; a value the plan does not determine is unknown with the reason. Every
record keeps, per resource it was built from, the values read and where they are declared
(file, address, `.tf` line with `--source-root`). See docs/scanners/terraform.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import click

from auditor.cli_options import SCAN_EXIT_CODES
from auditor.errors import InputError
from auditor.inventory import InventoryRecord
from auditor.model import (
    Access,
    Encryption,
    Evidence,
    Location,
    LocationType,
    Provider,
    Replica,
    ReplicaKind,
    SourceLocation,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws_bucket_policy import apply_bucket_policy
from auditor.scan.aws_encryption import (
    KMS_ALGORITHMS,
    S3_DEFAULT_ENCRYPTION_SOURCE,
    SSE_SCHEMES,
    key_to_settle,
    s3_default_encryption,
    s3_provider_default,
)
from auditor.scan.aws_source import s3_transport
from auditor.scan.azure_source import is_geo_redundant, paired_region
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import RetrySettings, now
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.gcp_source import GcpCatalog, bucket_regions
from auditor.scan.terraform_hcl import SourceMap
from auditor.scan.terraform_plan import Plan, PlannedResource, Unresolved, read_plan
from auditor.scan.terraform_source import TerraformOptions, TerraformSection
from auditor.streams import diagnostic

CALL = "terraform:plan"
# S3 applies SSE-S3 (AES-256) to every bucket without a configuration since 2023-01-05, and
# GetBucketEncryption on the deployed bucket answers it: the live scan will report SSE-S3.
S3_DEFAULT_NOTE = (
    "No encryption declared. S3 applies SSE-S3 (AES-256) to every bucket since 2023-01-05 "
    f"({S3_DEFAULT_ENCRYPTION_SOURCE}); recorded as that provider default, which is what the deployed "
    "bucket reports."
)
GCS_DEFAULT_SOURCE = "https://cloud.google.com/storage/docs/encryption/default-keys"
GCS_TLS_REASON = (
    "gcp.restrictTLSVersion is an organization policy, not a bucket setting: a Terraform plan of "
    "the bucket does not hold it"
)
RESPONSE_STRING_LIMIT = 4096
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/(?P<location>[^/]+)/keyRings/[^/]+/cryptoKeys/[^/]+")
_REFERENCE = re.compile(r"^(?P<type>[a-z0-9_]+)\.(?P<name>[A-Za-z0-9_-]+)(?:\[(?P<key>[^\]]*)\])?")
_ACCOUNT_IN_ARN = re.compile(r"^arn:[^:]+:iam::(?P<account>\d{12}):")
_PUBLIC_ACCESS_FLAGS = {
    "block_public_acls": "BlockPublicAcls",
    "ignore_public_acls": "IgnorePublicAcls",
    "block_public_policy": "BlockPublicPolicy",
    "restrict_public_buckets": "RestrictPublicBuckets",
}
_GCS_MEMBER_KIND: dict[str, ReplicaKind] = {
    "dual-region": "dual-region-member",
    "multi-region": "multi-region-member",
}


def after_apply(what: str) -> Unknown:
    """`what` is computed by the provider when the plan is applied."""
    return Unknown(code=UnknownCode.NOT_KNOWN_UNTIL_APPLY, reason=f"{what} (known after apply)")


def not_in_plan(reason: str) -> Unknown:
    """A value the plan does not determine."""
    return Unknown(code=UnknownCode.NOT_SUPPORTED, reason=reason)


def _unresolved(problem: Unresolved) -> Unknown:
    return after_apply(problem.reason) if problem.after_apply else not_in_plan(problem.reason)


def _shown(value: Any) -> Any:
    """A value for evidence: long strings cut (a plan may hold large documents)."""
    if isinstance(value, str) and len(value) > RESPONSE_STRING_LIMIT:
        return f"{value[:RESPONSE_STRING_LIMIT]}... [{len(value) - RESPONSE_STRING_LIMIT} more characters]"
    if isinstance(value, dict):
        return {str(k): _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _first(value: Any) -> dict[str, Any] | None:
    """The first element of a nested block list (`[{...}]`), or None."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return None


@dataclass
class Building:
    """A record being built: its unknowns and evidence."""

    unknown: dict[str, Unknown] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)


class TerraformScanner(Scanner):
    """Builds records from parsed plans (read before the scan starts: bad input writes nothing)."""

    provider: ClassVar[Provider] = "terraform"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        plans: list[Plan],
        source_root: Path | None,
        repository_root: Path | None = None,
    ) -> None:
        super().__init__(needs, catalog, 1)
        self.plans = plans
        self.sources = SourceMap(source_root, repository_root) if source_root is not None else None
        self.at = now()

    def scan(self) -> Iterator[InventoryRecord]:
        """Yield the records of every plan, in plan then resource order."""
        for plan in self.plans:
            yield from PlanRecords(self, plan).records()


class PlanRecords:
    """The records of one plan."""

    def __init__(self, scanner: TerraformScanner, plan: Plan) -> None:
        self.scanner = scanner
        self.catalog = scanner.catalog
        self.plan = plan
        self.by_type: dict[str, list[PlannedResource]] = {}
        for resource in plan.resources:
            self.by_type.setdefault(resource.type, []).append(resource)
        self.file = str(plan.path)

    def records(self) -> Iterator[StorageResource]:
        for bucket in self.by_type.get("aws_s3_bucket", []):
            self.scanner.calls.add(CALL)
            yield self.aws_bucket(bucket)
        for bucket in self.by_type.get("google_storage_bucket", []):
            self.scanner.calls.add(CALL)
            yield self.gcs_bucket(bucket)
        for account in self.by_type.get("azurerm_storage_account", []):
            self.scanner.calls.add(CALL)
            yield from self.azure_account(account)

    # --- shared ---------------------------------------------------------------------------------

    def identity(self, resource: PlannedResource) -> str:
        return f"{self.file}#{resource.address}"

    def location_of(self, resource: PlannedResource) -> SourceLocation:
        sources = self.scanner.sources
        if sources is not None:
            chain: list[str] = []
            parts = [p for p in resource.config_module.split(".") if p and p != "module"]
            found = True
            for depth in range(1, len(parts) + 1):
                call = self.plan.module_call(".".join(f"module.{p}" for p in parts[:depth]))
                source = (call or {}).get("source")
                if not isinstance(source, str):
                    found = False
                    break
                chain.append(source)
            if found:
                where = sources.locate(sources.module_dir(chain), resource.type, resource.name)
                if where is not None:
                    return SourceLocation(file=where[0], line=where[1], address=resource.address)
        return SourceLocation(file=self.file, line=None, address=resource.address)

    def evidence(
        self, building: Building, resource: PlannedResource, attributes: list[str], keys: list[str]
    ) -> None:
        values = {k: resource.values.get(k) for k in keys if k in resource.values}
        unknown = (
            {k: True for k in keys}
            if resource.unknown is True
            else {k: v for k, v in (resource.unknown or {}).items() if k in keys and v not in ({}, [], False)}
        )
        response: dict[str, Any] = {"actions": resource.actions, "after": _shown(values)}
        if unknown:
            response["after_unknown"] = unknown
        building.evidence.append(
            Evidence(
                call=CALL,
                at=self.scanner.at,
                attributes=attributes,
                request={"address": resource.address},
                response=response,
                location=self.location_of(resource),
            )
        )

    def linked(self, child: PlannedResource, attribute: str, parent_type: str) -> PlannedResource | None:
        """The resource of `parent_type` that `child.<attribute>` points at: by reference, else by value."""
        candidates = [p for p in self.by_type.get(parent_type, []) if p.module == child.module]
        for reference in child.references(attribute):
            match = _REFERENCE.match(reference)
            if match is None or match.group("type") != parent_type:
                continue
            named = [p for p in candidates if p.name == match.group("name")]
            key = match.group("key")
            if key is not None and not key.startswith(("each", "count")):
                wanted = json.loads(key) if key.startswith('"') or key.isdigit() else key
                named = [p for p in named if p.index == wanted]
            elif len(named) > 1:  # `b[each.key]`/`b[count.index]`: the instance with the same key
                named = [p for p in named if p.index == child.index]
            if len(named) == 1:
                return named[0]
        value, known = child.get(attribute)
        if known and isinstance(value, str) and value:
            everywhere = self.by_type.get(parent_type, [])
            for parent in everywhere:
                if value in _names(parent):
                    return parent
        return None

    def children(self, parent: PlannedResource, child_type: str, attribute: str) -> list[PlannedResource]:
        """The resources of `child_type` whose `attribute` points at `parent`."""
        return [
            c for c in self.by_type.get(child_type, []) if self.linked(c, attribute, parent.type) is parent
        ]

    def provider_value(self, resource: PlannedResource, name: str) -> Any:
        """A setting of the provider block the resource uses (Unresolved if the plan does not say)."""
        provider = self.plan.provider_for(resource)
        if provider is None:
            raise Unresolved(f"the plan has no provider configuration for {resource.address}")
        label = provider.key if ":" not in provider.key else provider.key.replace(":", " provider ")
        return self.plan.resolve(provider.expressions.get(name), provider.module, f"provider {label} {name}")

    def aws_region(self, resource: PlannedResource) -> str:
        """The AWS region of a resource: its own `region` (provider v6), else its provider's."""
        value, known = resource.get("region")
        if known and isinstance(value, str) and value:
            return value.lower()
        try:
            region = self.provider_value(resource, "region")
        except Unresolved as problem:
            raise Unresolved(
                f"{problem.reason}; the AWS region then comes from the environment Terraform ran in"
            ) from None
        if not isinstance(region, str) or not region:
            raise Unresolved(f"the provider's region for {resource.address} is not a string")
        return region.lower()

    def aws_account(self, resource: PlannedResource) -> str:
        """The account the provider block declares (allowed_account_ids, assume_role), else 'unknown'."""
        try:
            allowed = self.provider_value(resource, "allowed_account_ids")
            if isinstance(allowed, list) and len(allowed) == 1:
                return str(allowed[0])
        except Unresolved:
            pass
        provider = self.plan.provider_for(resource)
        role = _first((provider.expressions if provider else {}).get("assume_role"))
        if role is not None and provider is not None:
            try:
                arn = self.plan.resolve(role.get("role_arn"), provider.module, "assume_role.role_arn")
                match = _ACCOUNT_IN_ARN.match(str(arn))
                if match:
                    return match.group("account")
            except Unresolved:
                pass
        return "unknown"

    # --- AWS ------------------------------------------------------------------------------------

    def aws_bucket(self, bucket: PlannedResource) -> StorageResource:
        b = Building()
        name_value, name_known = bucket.get("bucket")
        name = str(name_value) if name_known and isinstance(name_value, str) and name_value else None
        self.evidence(
            b,
            bucket,
            ["location", "encryption", "transport", "tags", "access"],
            [
                "bucket",
                "bucket_prefix",
                "region",
                "server_side_encryption_configuration",
                "policy",
                "replication_configuration",
                "tags",
                "tags_all",
            ],
        )
        region: str | None = None
        try:
            region = self.aws_region(bucket)
        except Unresolved as problem:
            b.unknown["location"] = _unresolved(problem)
        location = self.aws_location(bucket, region, b) if region is not None else None
        encryption = self.aws_encryption(bucket, region, b)
        transport = self.aws_transport(bucket, name, b)
        record = StorageResource(
            provider="aws",
            kind="bucket",
            account=self.aws_account(bucket),
            name=name or bucket.address,
            id=self.identity(bucket),
            scanned_at=self.scanner.at,
            origin="terraform",
            location=location,
            encryption=encryption,
            transport=transport,
            access=self.aws_access(bucket, b),
            tags=self.aws_tags(bucket, b),
            unknown=b.unknown,
            evidence=b.evidence,
        )
        apply_bucket_policy(record)
        return record

    def aws_location(self, bucket: PlannedResource, region: str, b: Building) -> Location:
        destinations: list[tuple[Any, bool, list[str]]] = []  # (value, known, references)
        split = self.children(bucket, "aws_s3_bucket_replication_configuration", "bucket")
        problem: Unknown | None = None
        if split:
            for config in split:
                self.evidence(
                    b, config, ["location.regions", "location.replicas"], ["bucket", "role", "rule"]
                )
                rules, known = config.get("rule")
                if not known:
                    problem = after_apply(f"the replication rules of {config.address}")
                    continue
                for i, _rule in enumerate(rules or []):
                    value, known = config.get("rule", i, "destination", 0, "bucket")
                    destinations.append(
                        (value, known, config.references("rule", i, "destination", 0, "bucket"))
                    )
        else:
            inline, known = bucket.get("replication_configuration")
            declared = bucket.declares("replication_configuration")
            if not known and declared is not False:
                problem = after_apply(f"the replication_configuration of {bucket.address}")
            elif known and inline:
                rules, _ = bucket.get("replication_configuration", 0, "rules")
                for i, _rule in enumerate(rules or []):
                    path = ("replication_configuration", 0, "rules", i, "destination", 0, "bucket")
                    value, known = bucket.get(*path)
                    destinations.append((value, known, bucket.references(*path)))
        replicas: list[Replica] = []
        for value, known, references in destinations:
            target = self.aws_destination(bucket, value, known, references)
            if isinstance(target, Unknown):
                problem = problem or target
                shown = str(value) if known and value else None
                replicas.append(Replica(region=None, kind="replication", target=shown))
            else:
                replicas.append(Replica(region=target[0], kind="replication", target=target[1]))
        if problem is not None:
            b.unknown["location.regions"] = problem.model_copy(update={"partial": "members"})
            b.unknown["location.replicas"] = problem
        others = sorted({r.region for r in replicas if r.region and r.region != region})
        return Location(
            raw=region, type="region", primary=region, regions=[region, *others], replicas=replicas
        )

    def aws_destination(
        self, bucket: PlannedResource, value: Any, known: bool, references: list[str]
    ) -> tuple[str, str] | Unknown:
        """(region, target ARN) of a replication destination declared in the plan, or why not."""
        candidates: list[PlannedResource] = []
        for reference in references:
            match = _REFERENCE.match(reference)
            if match and match.group("type") == "aws_s3_bucket":
                candidates = [
                    p
                    for p in self.by_type["aws_s3_bucket"]
                    if p.name == match.group("name") and p.module == bucket.module
                ]
                break
        if not candidates and known and isinstance(value, str):
            wanted = value.split(":::", 1)[-1]
            candidates = [p for p in self.by_type["aws_s3_bucket"] if p.get("bucket") == (wanted, True)]
        if len(candidates) != 1:
            what = str(value) if known and value else "a value known after apply"
            return not_in_plan(f"replication destination {what} is not a bucket declared in this plan")
        destination = candidates[0]
        try:
            region = self.aws_region(destination)
        except Unresolved as problem:
            return _unresolved(problem)
        dest_name, dest_known = destination.get("bucket")
        target = f"arn:aws:s3:::{dest_name}" if dest_known and dest_name else destination.address
        return region, target

    def aws_encryption(self, bucket: PlannedResource, region: str | None, b: Building) -> Encryption | None:
        split = self.children(bucket, "aws_s3_bucket_server_side_encryption_configuration", "bucket")
        source: PlannedResource | None = None
        path: tuple[str | int, ...] = ()
        if split:
            source = split[-1]
            self.evidence(b, source, ["encryption"], ["bucket", "rule", "expected_bucket_owner"])
            path = ("rule", 0, "apply_server_side_encryption_by_default", 0)
        else:
            inline, known = bucket.get("server_side_encryption_configuration")
            declared = bucket.declares("server_side_encryption_configuration")
            if not known and declared is not False:
                b.unknown["encryption"] = after_apply(
                    f"the server_side_encryption_configuration of {bucket.address}"
                )
                return None
            if known and inline:
                source = bucket
                path = (
                    "server_side_encryption_configuration",
                    0,
                    "rule",
                    0,
                    "apply_server_side_encryption_by_default",
                    0,
                )
        if source is None:
            # No configuration declared: S3's documented default, as the deployed bucket reports it.
            b.evidence[0].response = {**(b.evidence[0].response or {}), "auditor_note": S3_DEFAULT_NOTE}
            return s3_provider_default()
        algorithm, known = source.get(*path, "sse_algorithm")
        if not known:
            b.unknown["encryption"] = after_apply(f"the sse_algorithm of {source.address}")
            return None
        if str(algorithm) not in SSE_SCHEMES:
            b.unknown["encryption"] = not_in_plan(
                f"sse_algorithm {algorithm!r} of {source.address} is not known"
            )
            return None
        key_path = (*path, "kms_master_key_id")
        key, key_known = source.get(*key_path)
        kms = (
            self.linked_by_path(source, key_path, "aws_kms_key") if str(algorithm) in KMS_ALGORITHMS else None
        )
        if kms is not None:
            return self.aws_plan_key(kms, str(algorithm), key if key_known and key else None, b)
        given: str | Unknown | None = str(key) if key else None
        if not key_known:
            given = after_apply(f"kms_master_key_id of {source.address}")
        encryption = s3_default_encryption(str(algorithm), given, region, b.unknown)
        undeclared = key_to_settle(encryption)
        if undeclared is not None:
            b.unknown["encryption.key_management"] = not_in_plan(
                f"KMS key {undeclared} is not declared in this plan: whether AWS or the customer manages it "
                "is known to KMS only"
            )
            if encryption.key_location is None:
                b.unknown["encryption.key_location"] = b.unknown["encryption.key_management"]
        return encryption

    def aws_plan_key(self, kms: PlannedResource, algorithm: str, key: Any, b: Building) -> Encryption:
        """The encryption of a KMS key declared in the plan: customer-managed, in its provider's region."""
        self.evidence(
            b,
            kms,
            ["encryption.key_management", "encryption.key_location"],
            ["arn", "key_id", "multi_region", "region"],
        )
        arn, arn_known = kms.get("arn")
        key_id = str(key) if key else str(arn) if arn_known and arn else None
        if key_id is None:
            b.unknown["encryption.key_id"] = after_apply(f"the ARN of {kms.address}")
        location: str | None = None
        try:
            location = self.aws_region(kms)
        except Unresolved as problem:
            b.unknown["encryption.key_location"] = _unresolved(problem)
        encryption = s3_default_encryption(algorithm, key_id, None, b.unknown)
        return encryption.model_copy(update={"key_management": "customer-managed", "key_location": location})

    def linked_by_path(
        self, child: PlannedResource, path: tuple[str | int, ...], parent_type: str
    ) -> PlannedResource | None:
        """The resource of `parent_type` the expression at `path` references (same module)."""
        for reference in child.references(*path):
            match = _REFERENCE.match(reference)
            if match is None or match.group("type") != parent_type:
                continue
            named = [
                p
                for p in self.by_type.get(parent_type, [])
                if p.name == match.group("name") and p.module == child.module
            ]
            if len(named) > 1:
                named = [p for p in named if p.index == child.index]
            if len(named) == 1:
                return named[0]
        value, known = child.get(*path)
        if known and isinstance(value, str) and value:
            for parent in self.by_type.get(parent_type, []):
                if value in _names(parent):
                    return parent
        return None

    def aws_transport(self, bucket: PlannedResource, name: str | None, b: Building) -> Transport:
        split = self.children(bucket, "aws_s3_bucket_policy", "bucket")
        policy: dict[str, Any] | None = None
        problem: Unknown | None = None
        text: Any = None
        if split:
            source = split[-1]
            self.evidence(b, source, ["transport"], ["bucket", "policy"])
            text, known = source.get("policy")
            if not known:
                problem = after_apply(f"the policy of {source.address}")
        else:
            text, known = bucket.get("policy")
            declared = bucket.declares("policy")
            if not known and declared is not False:
                problem = after_apply(f"the policy of {bucket.address}")
            elif not known:
                text = None
        if problem is None and isinstance(text, str) and text:
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                problem = not_in_plan(f"bucket policy is not JSON: {exc}")
            else:
                if isinstance(parsed, dict):
                    policy = parsed
                else:
                    problem = not_in_plan("bucket policy is not a JSON object")
        if problem is None and policy is not None and name is None:
            problem = after_apply(
                f"the name of {bucket.address}, which the policy's Resource ARNs must cover"
            )
        if problem is not None:
            b.unknown["transport.bucket_policy"] = problem
        return s3_transport(policy if problem is None else None)

    def aws_access(self, bucket: PlannedResource, b: Building) -> Access | None:
        split = self.children(bucket, "aws_s3_bucket_public_access_block", "bucket")
        if not split:
            return Access(public_access_blocked=False, detail=None)
        source = split[-1]
        self.evidence(b, source, ["access"], ["bucket", *_PUBLIC_ACCESS_FLAGS])
        detail: dict[str, Any] = {}
        for key, flag in _PUBLIC_ACCESS_FLAGS.items():
            value, known = source.get(key)
            if not known:
                b.unknown["access"] = after_apply(f"{key} of {source.address}")
                return None
            detail[flag] = value
        return Access(public_access_blocked=all(v is True for v in detail.values()), detail=detail)

    def aws_tags(self, bucket: PlannedResource, b: Building) -> dict[str, str] | None:
        provider = self.plan.provider_for(bucket)
        block = _first((provider.expressions if provider else {}).get("default_tags"))
        defaults = (block.get("tags"),) if block is not None else None
        return self.merged_tags(bucket, b, ("tags_all", "tags", "tags"), defaults, "default_tags")

    def merged_tags(
        self,
        resource: PlannedResource,
        b: Building,
        keys: tuple[str, str, str],
        provider_defaults: tuple[Any] | None,
        defaults_name: str,
    ) -> dict[str, str] | None:
        """Tags as the provider applies them: the effective map (`keys[0]`: tags_all, effective_labels)
        where the plan knows it, else the declared ones (`keys[1]`) over the provider's defaults
        (`provider_defaults`: the expression, in a 1-tuple when the provider declares any)."""
        effective_key, declared_key, noun = keys
        effective, known = resource.get(effective_key)
        if known and isinstance(effective, dict):
            return {str(k): str(v) for k, v in effective.items()}
        declared, declared_known = resource.get(declared_key)
        if not declared_known:
            b.unknown["tags"] = after_apply(f"the {noun} of {resource.address}")
            return None
        merged: dict[str, str] = {}
        provider = self.plan.provider_for(resource)
        if provider_defaults is not None and provider is not None:
            try:
                defaults = self.plan.resolve(provider_defaults[0], provider.module, defaults_name)
            except Unresolved as problem:
                b.unknown["tags"] = _unresolved(problem)
                return None
            merged.update({str(k): str(v) for k, v in (defaults or {}).items()})
        merged.update({str(k): str(v) for k, v in (declared or {}).items()})
        return merged

    # --- Google Cloud ---------------------------------------------------------------------------

    def gcs_bucket(self, bucket: PlannedResource) -> StorageResource:
        b = Building()
        self.evidence(
            b,
            bucket,
            ["location", "encryption", "tags", "access", "transport"],
            [
                "name",
                "location",
                "custom_placement_config",
                "encryption",
                "labels",
                "effective_labels",
                "project",
                "public_access_prevention",
            ],
        )
        name, name_known = bucket.get("name")
        return StorageResource(
            provider="gcp",
            kind="bucket",
            account=self.gcp_project(bucket),
            name=str(name) if name_known and name else bucket.address,
            id=self.identity(bucket),
            scanned_at=self.scanner.at,
            origin="terraform",
            location=self.gcs_location(bucket, b),
            encryption=self.gcs_encryption(bucket, b),
            transport=self.gcs_transport(b),
            access=self.gcs_access(bucket, b),
            tags=self.gcs_labels(bucket, b),
            unknown=b.unknown,
            evidence=b.evidence,
        )

    def gcp_project(self, bucket: PlannedResource) -> str:
        project, known = bucket.get("project")
        if known and isinstance(project, str) and project:
            return project
        try:
            value = self.provider_value(bucket, "project")
            return str(value) if value else "unknown"
        except Unresolved:
            return "unknown"

    def gcs_location(self, bucket: PlannedResource, b: Building) -> Location | None:
        raw, known = bucket.get("location")
        if not known or not isinstance(raw, str) or not raw:
            b.unknown["location"] = (
                after_apply(f"the location of {bucket.address}")
                if not known
                else not_in_plan(f"{bucket.address} has no location")
            )
            return None
        placement, placement_known = bucket.get("custom_placement_config")
        if not placement_known:
            b.unknown["location.regions"] = after_apply(f"custom_placement_config of {bucket.address}")
            b.unknown["location.replicas"] = b.unknown["location.regions"]
            b.unknown["location.type"] = b.unknown["location.regions"]
            return Location(raw=raw, type=None, primary=raw.lower(), regions=[], replicas=[])
        data_locations = (_first(placement) or {}).get("data_locations")
        section = self.catalog.section("gcp", GcpCatalog)
        code = raw.lower()
        kind: LocationType
        if data_locations:
            kind = "dual-region"
        elif code in section.multi_regions:
            kind = "multi-region"
        elif code in section.dual_regions:
            kind = "dual-region"
        else:
            kind = "region"
        members = bucket_regions(self.catalog, raw, kind, [str(d) for d in data_locations or []] or None)
        unresolved = [r for r in members if self.catalog.country_of("gcp", r) is None]
        member_kind = _GCS_MEMBER_KIND.get(kind)
        replicas = [Replica(region=r, kind=member_kind) for r in members] if member_kind else []
        if unresolved:
            b.unknown["location.regions"] = not_in_plan(
                f"{kind} location {raw!r} resolves to {unresolved}, not in the zone catalog"
            )
        return Location(raw=raw, type=kind, primary=code, regions=members, replicas=replicas)

    def gcs_encryption(self, bucket: PlannedResource, b: Building) -> Encryption | None:
        block, known = bucket.get("encryption")
        if not known:
            b.unknown["encryption"] = after_apply(f"the encryption block of {bucket.address}")
            return None
        if not _first(block):
            return Encryption(
                enabled=True,
                algorithm="AES256",
                scheme="google-managed",
                key_management="provider-managed",
                key_id=None,
                key_location=None,
                provider_default=True,
                source=GCS_DEFAULT_SOURCE,
            )
        result = Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="CMEK",
            key_management="customer-managed",
            key_id=None,
            key_location=None,
        )
        key, key_known = bucket.get("encryption", 0, "default_kms_key_name")
        if key_known and isinstance(key, str) and key:
            result.key_id = key
            match = _KMS_KEY.match(key)
            if match:
                result.key_location = match.group("location").lower()
            else:
                b.unknown["encryption.key_location"] = not_in_plan(f"{key!r} is not a Cloud KMS key name")
            return result
        b.unknown["encryption.key_id"] = after_apply(f"default_kms_key_name of {bucket.address}")
        crypto_key = self.linked_by_path(
            bucket, ("encryption", 0, "default_kms_key_name"), "google_kms_crypto_key"
        )
        ring = self.linked_by_path(crypto_key, ("key_ring",), "google_kms_key_ring") if crypto_key else None
        location, location_known = ring.get("location") if ring else (None, False)
        if ring is not None and location_known and isinstance(location, str):
            self.evidence(b, ring, ["encryption.key_location"], ["name", "location", "project"])
            result.key_location = location.lower()
        else:
            b.unknown["encryption.key_location"] = b.unknown["encryption.key_id"]
        return result

    def gcs_transport(self, b: Building) -> Transport:
        # The XML API answers plain HTTP and no bucket setting refuses it (as the live scanner records).
        b.unknown["transport.min_tls_version"] = not_in_plan(GCS_TLS_REASON)
        return Transport(
            plaintext_refused=False, plaintext_refused_by=None, min_tls_version=None, min_tls_enforced_by=None
        )

    def gcs_access(self, bucket: PlannedResource, b: Building) -> Access | None:
        prevention, known = bucket.get("public_access_prevention")
        if not known:
            b.unknown["access"] = after_apply(f"public_access_prevention of {bucket.address}")
            return None
        ubla, _ = bucket.get("uniform_bucket_level_access")
        return Access(
            public_access_blocked=prevention == "enforced",
            detail={"uniformBucketLevelAccess": ubla, "publicAccessPrevention": prevention},
        )

    def gcs_labels(self, bucket: PlannedResource, b: Building) -> dict[str, str] | None:
        # effective_labels (provider v5+) where known, else labels over the provider's default_labels.
        provider = self.plan.provider_for(bucket)
        expressions = provider.expressions if provider is not None else {}
        defaults = (expressions["default_labels"],) if "default_labels" in expressions else None
        return self.merged_tags(
            bucket, b, ("effective_labels", "labels", "labels"), defaults, "default_labels"
        )

    # --- Azure ----------------------------------------------------------------------------------

    def azure_account(self, account: PlannedResource) -> Iterator[StorageResource]:
        b = Building()
        self.evidence(
            b,
            account,
            ["location", "encryption", "transport", "access", "tags"],
            [
                "name",
                "location",
                "account_tier",
                "account_replication_type",
                "min_tls_version",
                "enable_https_traffic_only",
                "https_traffic_only_enabled",
                "customer_managed_key",
                "allow_nested_items_to_be_public",
                "allow_blob_public_access",
                "tags",
            ],
        )
        name, name_known = account.get("name")
        account_name = str(name) if name_known and name else account.address
        location = self.azure_location(account, b)
        encryption = self.azure_encryption(account, b)
        transport = self.azure_transport(account, b)
        access = self.azure_access(account, b)
        tags, tags_known = account.get("tags")
        if not tags_known:
            b.unknown["tags"] = after_apply(f"the tags of {account.address}")
        account_tags = {str(k): str(v) for k, v in (tags or {}).items()} if tags_known else None
        subscription = "unknown"
        try:
            value = self.provider_value(account, "subscription_id")
            subscription = str(value) if value else subscription
        except Unresolved:
            pass
        containers = self.children(
            account, "azurerm_storage_container", "storage_account_id"
        ) or self.children(account, "azurerm_storage_container", "storage_account_name")
        if not containers:
            yield StorageResource(
                provider="azure",
                kind="account",
                account=subscription,
                storage_account=account_name,
                name=account_name,
                id=self.identity(account),
                scanned_at=self.scanner.at,
                origin="terraform",
                location=location,
                encryption=encryption,
                transport=transport,
                access=access,
                tags=account_tags,
                unknown=b.unknown,
                evidence=b.evidence,
            )
            return
        for container in containers:
            c = Building(unknown=dict(b.unknown), evidence=list(b.evidence))
            self.evidence(
                c,
                container,
                ["tags", "encryption"],
                [
                    "name",
                    "storage_account_name",
                    "storage_account_id",
                    "metadata",
                    "default_encryption_scope",
                    "encryption_scope_override_enabled",
                    "container_access_type",
                ],
            )
            cname, cname_known = container.get("name")
            metadata, metadata_known = container.get("metadata")
            tags_out: dict[str, str] | None = None
            if account_tags is not None and metadata_known:
                tags_out = {**account_tags, **{str(k): str(v) for k, v in (metadata or {}).items()}}
            elif not metadata_known:
                c.unknown["tags"] = after_apply(f"the metadata of {container.address}")
            container_encryption = self.azure_container_encryption(account, container, encryption, c)
            yield StorageResource(
                provider="azure",
                kind="container",
                account=subscription,
                storage_account=account_name,
                name=str(cname) if cname_known and cname else container.address,
                id=self.identity(container),
                scanned_at=self.scanner.at,
                origin="terraform",
                location=location.model_copy(deep=True) if location else None,
                encryption=container_encryption,
                transport=transport.model_copy() if transport else None,
                access=Access(
                    public_access_blocked=access.public_access_blocked,
                    detail={
                        **(access.detail or {}),
                        "publicAccess": container.values.get("container_access_type"),
                    },
                )
                if access
                else None,
                tags=tags_out,
                unknown=c.unknown,
                evidence=c.evidence,
            )

    def azure_location(self, account: PlannedResource, b: Building) -> Location | None:
        raw, known = account.get("location")
        if not known or not isinstance(raw, str) or not raw:
            b.unknown["location"] = after_apply(f"the location of {account.address}")
            return None
        primary = raw.lower().replace(" ", "")
        tier, tier_known = account.get("account_tier")
        replication, replication_known = account.get("account_replication_type")
        regions = [primary]
        replicas: list[Replica] = []
        if not (tier_known and replication_known):
            b.unknown["location.regions"] = after_apply(f"the SKU of {account.address}").model_copy(
                update={"partial": "members"}
            )
        else:
            sku = f"{tier}_{replication}"
            if is_geo_redundant(self.catalog, sku):
                secondary = paired_region(self.catalog, primary)
                replicas.append(Replica(region=secondary, kind="geo-secondary"))
                if secondary is None:
                    b.unknown["location.regions"] = Unknown(
                        code=UnknownCode.NOT_SUPPORTED,
                        reason=f"NoPairedRegion: SKU {sku} keeps a copy in the paired region, and the zone "
                        f"catalog has no pair for '{primary}'",
                        partial="members",
                    )
                elif secondary != primary:
                    regions.append(secondary)
        return Location(raw=raw, type="region", primary=primary, regions=regions, replicas=replicas)

    def azure_encryption(self, account: PlannedResource, b: Building) -> Encryption | None:
        split = self.children(account, "azurerm_storage_account_customer_managed_key", "storage_account_id")
        block, known = account.get("customer_managed_key")
        source: PlannedResource | None = None
        path: tuple[str | int, ...] = ()
        if split:
            source, path = split[-1], ()
            self.evidence(
                b, source, ["encryption"], ["key_vault_key_id", "key_vault_id", "key_name", "key_version"]
            )
        elif not known:
            b.unknown["encryption"] = after_apply(f"customer_managed_key of {account.address}")
            return None
        elif _first(block):
            source, path = account, ("customer_managed_key", 0)
        if source is None:
            return Encryption(
                enabled=True,
                algorithm="AES256",
                scheme="microsoft-managed",
                key_management="provider-managed",
                key_id=None,
                key_location=None,
            )
        return self.key_vault_encryption(source, path, b)

    def key_vault_encryption(
        self, source: PlannedResource, path: tuple[str | int, ...], b: Building
    ) -> Encryption:
        result = Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="customer-managed-key-vault",
            key_management="customer-managed",
            key_id=None,
            key_location=None,
        )
        key_id, known = source.get(*path, "key_vault_key_id")
        if known and key_id:
            result.key_id = str(key_id)
        else:
            b.unknown["encryption.key_id"] = after_apply(f"the key_vault_key_id of {source.address}")
        key = self.linked_by_path(source, (*path, "key_vault_key_id"), "azurerm_key_vault_key")
        vault = (
            self.linked_by_path(key, ("key_vault_id",), "azurerm_key_vault")
            if key is not None
            else self.linked_by_path(source, (*path, "key_vault_id"), "azurerm_key_vault")
        )
        location, location_known = vault.get("location") if vault else (None, False)
        if vault is not None and location_known and isinstance(location, str):
            self.evidence(b, vault, ["encryption.key_location"], ["name", "location"])
            result.key_location = location.lower().replace(" ", "")
        else:
            b.unknown["encryption.key_location"] = not_in_plan(
                f"the Key Vault of the key {source.address} uses is not declared in this plan"
            )
        return result

    def azure_container_encryption(
        self, account: PlannedResource, container: PlannedResource, base: Encryption | None, c: Building
    ) -> Encryption | None:
        scope_name, known = container.get("default_encryption_scope")
        if not known and container.declares("default_encryption_scope") is False:
            known, scope_name = True, None  # computed by the provider when not set: the account's key
        if not known:
            for leaf in ("scheme", "key_management", "key_id", "key_location"):
                c.unknown[f"encryption.{leaf}"] = after_apply(
                    f"default_encryption_scope of {container.address}"
                )
            return base.model_copy() if base else None
        if not scope_name or scope_name == "$account-encryption-key":
            return base.model_copy() if base else None
        scopes = [
            s
            for s in self.children(account, "azurerm_storage_encryption_scope", "storage_account_id")
            if s.get("name") == (scope_name, True)
        ]
        if not scopes:
            for leaf in ("scheme", "key_management", "key_id", "key_location"):
                c.unknown[f"encryption.{leaf}"] = not_in_plan(
                    f"UnknownScope: default encryption scope '{scope_name}' is not declared in this plan"
                )
            return base.model_copy() if base else None
        scope = scopes[0]
        self.evidence(c, scope, ["encryption"], ["name", "source", "key_vault_key_id"])
        source, _ = scope.get("source")
        if str(source).lower() == "microsoft.keyvault":
            for leaf in ("key_id", "key_location"):
                c.unknown.pop(f"encryption.{leaf}", None)
            return self.key_vault_encryption(scope, (), c)
        return Encryption(
            enabled=True,
            algorithm="AES256",
            scheme="microsoft-managed",
            key_management="provider-managed",
            key_id=None,
            key_location=None,
        )

    def azure_transport(self, account: PlannedResource, b: Building) -> Transport:
        transport = Transport(
            plaintext_refused=None, plaintext_refused_by=None, min_tls_version=None, min_tls_enforced_by=None
        )
        # The setting's name changed in azurerm v4 (enable_https_traffic_only -> https_traffic_only_enabled).
        for key in ("https_traffic_only_enabled", "enable_https_traffic_only"):
            value, known = account.get(key)
            if not known:
                b.unknown["transport.plaintext_refused"] = after_apply(f"{key} of {account.address}")
                break
            if isinstance(value, bool):
                transport.plaintext_refused = value
                transport.plaintext_refused_by = f"account:{key}" if value else None
                break
        else:
            b.unknown["transport.plaintext_refused"] = not_in_plan(
                f"{account.address} sets neither https_traffic_only_enabled nor enable_https_traffic_only"
            )
        minimum, known = account.get("min_tls_version")
        if known and isinstance(minimum, str) and minimum:
            transport.min_tls_version = minimum
            transport.min_tls_enforced_by = "account:min_tls_version"
        else:
            b.unknown["transport.min_tls_version"] = (
                after_apply(f"min_tls_version of {account.address}")
                if not known
                else not_in_plan(f"{account.address} has no min_tls_version")
            )
        return transport

    def azure_access(self, account: PlannedResource, b: Building) -> Access | None:
        for key in ("allow_nested_items_to_be_public", "allow_blob_public_access"):
            value, known = account.get(key)
            if not known:
                b.unknown["access"] = after_apply(f"{key} of {account.address}")
                return None
            if isinstance(value, bool):
                return Access(public_access_blocked=value is False, detail={"allowBlobPublicAccess": value})
        return Access(public_access_blocked=None, detail=None)


def _names(resource: PlannedResource) -> set[str]:
    """The known values a reference to `resource` may carry: name, id, ARN."""
    names: set[str] = set()
    for key in ("bucket", "name", "id", "arn"):
        value, known = resource.get(key)
        if known and isinstance(value, str) and value:
            names.add(value)
    return names


# --- the command ----------------------------------------------------------------------------------


def read_plans(section: TerraformSection) -> list[Plan]:
    """Every plan of the section, parsed before anything is written (InputError: exit 2)."""
    if section.source_root is not None and not section.source_root.is_dir():
        raise InputError(str(section.source_root), "--source-root is not a directory")
    if section.repository_root is not None and not section.repository_root.is_dir():
        raise InputError(str(section.repository_root), "--repository-root is not a directory")
    return [read_plan(path) for path in section.files]


@click.command("terraform", epilog=SCAN_EXIT_CODES)
@common_scan_options
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--source-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of the .tf files the plans came from: findings point at their file and line.",
)
@click.option(
    "--repository-root",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Show .tf paths relative to this directory (the repository root, for code scanning); "
    "default: --source-root.",
)
def command(
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    files: tuple[Path, ...],
    source_root: Path | None,
    repository_root: Path | None,
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory the storage declared in Terraform plan JSON files (`terraform show -json PLAN`)."""
    retry.refuse_unsupported("terraform", TerraformOptions.retry_used)
    section = TerraformSection(
        files=list(files),
        source_root=source_root,
        repository_root=repository_root,
        options={"concurrency": concurrency},
    )
    return scan_section(section, list(policy_paths), output, progress)


def scan_section(
    section: TerraformSection, policy_paths: list[Path], output: Path, progress: bool | None
) -> ScanSummary:
    """Read the plans `section` names into `output` (the command and scale-out units both run this)."""
    plans = read_plans(section)
    needs, catalog = scanner_context(policy_paths)
    scanner = TerraformScanner(needs, catalog, plans, section.source_root, section.repository_root)
    summary = finish_scan(scanner, output, progress)
    for plan in plans:
        if plan.skipped:
            shown = ", ".join(f"{n} {what}" for what, n in sorted(plan.skipped.items()))
            diagnostic(f"{plan.path}: not audited (will not exist after apply): {shown}")
    return summary
