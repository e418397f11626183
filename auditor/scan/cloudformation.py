"""CloudFormation templates as inventory records: each `AWS::S3::Bucket` the stack would create.

A record has provider "aws" and origin "cloudformation", so every policy, waiver and report reads
it as it reads the live scan of the deployed bucket. Per bucket: the region is the stack's
(`--region`); replication destinations declared in the scanned templates are in that region too,
others are unknown; `BucketEncryption` (none: S3's documented default, SSE-S3), the key from an
`AWS::KMS::Key` of the template (customer-managed, in the stack's region), the bucket policy of an
`AWS::S3::BucketPolicy` (analysed exactly as a live one), the public access block and the tags.
Values the template cannot settle are unknown with their reason (auditor.scan.cloudformation_intrinsics).
Evidence points at the template file, line and logical id. See docs/scanners/cloudformation.md.
"""

from __future__ import annotations

import json
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
    CoverageGap,
    Encryption,
    Evidence,
    Location,
    Provider,
    Replica,
    SourceLocation,
    StorageResource,
    Transport,
    Unknown,
    UnknownCode,
    normalize_tag_key,
)
from auditor.policy.zones import ZoneCatalog
from auditor.scan.aws_bucket_policy import apply_bucket_policy
from auditor.scan.aws_encryption import (
    KMS_ALGORITHMS,
    S3_DEFAULT_ENCRYPTION_SOURCE,
    is_aws_managed_key,
    key_to_settle,
    s3_default_encryption,
    s3_provider_default,
)
from auditor.scan.aws_source import PUBLIC_ACCESS_FLAGS, s3_transport
from auditor.scan.base import AttributeNeeds, Scanner, ScanSummary, scanner_context
from auditor.scan.calls import RetrySettings, now
from auditor.scan.cloudformation_intrinsics import (
    Resolver,
    Stack,
    Unresolved,
    first_unresolved,
    parameter_values,
)
from auditor.scan.cloudformation_source import CloudFormationOptions, CloudFormationSection
from auditor.scan.cloudformation_template import ParameterFile, Template, load_parameters, load_template
from auditor.scan.command import common_scan_options, finish_scan
from auditor.scan.section import section_options

CALL = "cloudformation:template"
GROUPS = ["location", "encryption", "transport", "access", "tags"]
KEY_ATTRIBUTES = ["encryption.key_management", "encryption.key_location"]
RESPONSE_LIMIT = 16 * 1024  # characters of a resource's Properties kept as evidence
RESPONSE_HEAD = 2048
# Transforms whose output auditor reads as written: SAM adds no S3 bucket the template does not
# declare as AWS::S3::Bucket, and the language extensions only add functions (refused or unknown).
READ_AS_WRITTEN = frozenset({"AWS::Serverless-2016-10-31", "AWS::LanguageExtensions"})


def _bounded(value: Any) -> Any:
    text = json.dumps(value, default=str, sort_keys=False)
    if len(text) <= RESPONSE_LIMIT:
        return json.loads(text)
    return {"bytes": len(text.encode()), "head": text[:RESPONSE_HEAD], "head_truncated": True}


def _unknown(problem: Unresolved, partial: Any = None) -> Unknown:
    return Unknown(code=problem.code, reason=problem.reason, partial=partial)


def _bucket_of(arn: str) -> str:
    return arn.split(":::", 1)[1].split("/", 1)[0] if ":::" in arn else arn


def _true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


@dataclass
class Declared:
    """One resource of one template, with its resolver and the condition it may depend on."""

    template: Template
    resolver: Resolver
    logical_id: str
    body: dict[str, Any]
    condition: Unresolved | None = None  # a Condition that cannot be decided: audited as created

    @property
    def loc(self) -> tuple[str, str]:
        """Its path in the template."""
        return ("Resources", self.logical_id)

    @property
    def kind(self) -> str:
        """Its Type."""
        return str(self.body["Type"])

    @property
    def raw_properties(self) -> dict[str, Any]:
        """Properties as written (long-form intrinsics)."""
        properties: dict[str, Any] = self.body.get("Properties") or {}
        return properties

    def properties(self, resolver: Resolver | None = None) -> dict[str, Any]:
        """Properties with the intrinsic functions evaluated (unknowns as `Unresolved`)."""
        resolved: dict[str, Any] = (resolver or self.resolver).resolve(
            self.raw_properties, (*self.loc, "Properties")
        )
        return resolved

    def evidence(self, attributes: list[str], request: dict[str, Any], notes: list[str]) -> Evidence:
        """The declaration as evidence: its Properties (bounded), file, line and logical id."""
        response = dict(self.raw_properties)
        if self.condition is not None:
            notes = [*notes, f"{self.condition.reason}: audited as if created"]
        if notes:
            response["auditor_note"] = " ".join(notes)
        return Evidence(
            call=CALL,
            at=now(),
            attributes=attributes,
            request={"logical_id": self.logical_id, "type": self.kind, **request},
            response=_bounded(response),
            location=SourceLocation(
                file=str(self.template.path), line=self.template.line_of(self.loc), address=self.logical_id
            ),
        )


@dataclass
class _Build:
    """What one bucket's record is assembled from."""

    unknown: dict[str, Unknown] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class CloudFormationScanner(Scanner):
    """Reads CloudFormation templates into the S3 bucket records the stack would create."""

    provider: ClassVar[Provider] = "cloudformation"

    def __init__(
        self,
        needs: AttributeNeeds,
        catalog: ZoneCatalog,
        templates: list[Path],
        stack: Stack,
        parameters: Path | None = None,
    ) -> None:
        super().__init__(needs, catalog, 1)
        self.stack = stack
        # Everything is read before anything is written: bad input leaves no output behind.
        given = load_parameters(parameters) if parameters is not None else None
        loaded = [load_template(path) for path in templates]
        self._check_given(given, loaded)
        self.gaps: list[CoverageGap] = []
        self.declared: list[Declared] = []
        for template in loaded:
            self._declare(template, Resolver(template, stack, parameter_values(template, given)))
        self._name_buckets()
        self.records: list[InventoryRecord] = [*self._buckets(), *self.gaps]

    def scan(self) -> Iterator[InventoryRecord]:
        """Every bucket the templates declare, then a gap per part auditor cannot read."""
        yield from self.records

    # --- reading the templates -------------------------------------------------------------------

    @staticmethod
    def _check_given(given: ParameterFile | None, templates: list[Template]) -> None:
        if given is None:
            return
        declared = {str(name) for t in templates for name in (t.data.get("Parameters") or {})}
        for name in given.values:
            if name not in declared:
                raise InputError(given.where[name], f"parameter '{name}' is not declared by any template")

    def _declare(self, template: Template, resolver: Resolver) -> None:
        transforms = template.data.get("Transform") or []
        for transform in transforms if isinstance(transforms, list) else [transforms]:
            if str(transform) not in READ_AS_WRITTEN:
                self._gap(template, ("Transform",), f"Transform {transform!r} may change the resources")
        for logical_id, body in template.data["Resources"].items():
            loc = ("Resources", str(logical_id))
            if str(logical_id).startswith("Fn::ForEach::"):
                self._gap(
                    template, loc, f"{logical_id} declares resources in a loop, which auditor does not expand"
                )
                continue
            decided: bool | Unresolved = True
            if "Condition" in body:
                decided = resolver.condition(str(body["Condition"]), (*loc, "Condition"))
            if decided is False:
                continue  # the stack does not create it
            condition = decided if isinstance(decided, Unresolved) else None
            self.declared.append(Declared(template, resolver, str(logical_id), body, condition))

    def _gap(self, template: Template, loc: tuple[str, ...], reason: str) -> None:
        self.gaps.append(
            CoverageGap(
                provider="aws",
                account=self.stack.account or "unknown",
                scope=f"template:{template.where(loc)}",
                code=UnknownCode.NOT_SUPPORTED,
                reason=f"{reason}; its buckets are not audited",
                at=now(),
            )
        )

    def _of_type(self, kind: str) -> list[Declared]:
        return [d for d in self.declared if d.kind == kind]

    def _name_buckets(self) -> None:
        """Each bucket's resolved BucketName (twice: a name may refer to another bucket's)."""
        for _ in range(2):
            for bucket in self._of_type("AWS::S3::Bucket"):
                if "BucketName" in bucket.raw_properties:
                    loc = (*bucket.loc, "Properties", "BucketName")
                    name = bucket.resolver.resolve(bucket.raw_properties["BucketName"], loc)
                    bucket.resolver.names[bucket.logical_id] = (
                        name if isinstance(name, Unresolved) else str(name)
                    )

    def _find(self, value: Any, template: Template, kinds: tuple[str, ...]) -> Declared | None:
        """The declared resource a value names: a `Ref`/`GetAtt` of one, or a bucket's name or ARN."""
        if isinstance(value, Unresolved):
            target = value.refers_to
            return next(
                (
                    d
                    for d in self.declared
                    if d.template is template and d.logical_id == target and d.kind in kinds
                ),
                None,
            )
        if isinstance(value, str) and "AWS::S3::Bucket" in kinds:
            name = _bucket_of(value)
            return next(
                (d for d in self._of_type("AWS::S3::Bucket") if d.resolver.names.get(d.logical_id) == name),
                None,
            )
        return None

    # --- records ---------------------------------------------------------------------------------

    def _buckets(self) -> Iterator[StorageResource]:
        policies: dict[int, list[Declared]] = {}
        for policy in self._of_type("AWS::S3::BucketPolicy"):
            target = policy.properties().get("Bucket")
            bucket = self._find(target, policy.template, ("AWS::S3::Bucket",))
            if bucket is not None:
                policies.setdefault(id(bucket), []).append(policy)
        for bucket in self._of_type("AWS::S3::Bucket"):
            yield self._record(bucket, policies.get(id(bucket), []))

    def _record(self, bucket: Declared, policies: list[Declared]) -> StorageResource:
        build = _Build()
        declared_name = bucket.resolver.names.get(bucket.logical_id)
        stand_ins: dict[str, str] = {}
        if isinstance(declared_name, str):
            name, record_id = declared_name, f"arn:{self.stack.partition}:s3:::{declared_name}"
        else:
            name, record_id = bucket.logical_id, f"{bucket.template.path}#{bucket.logical_id}"
            stand_ins[bucket.logical_id] = bucket.logical_id
            why = (
                declared_name.reason
                if isinstance(declared_name, Unresolved)
                else "CloudFormation generates the bucket's name when the stack is created"
            )
            build.notes.append(f"Bucket name not known ({why}): the record is named by its logical id.")
        properties = bucket.properties()
        location = self._location(bucket, properties, build)
        encryption = self._encryption(bucket, properties, build)
        transport = self._transport(bucket, policies, stand_ins, build)
        access = self._access(properties, build)
        tags = self._tags(properties, build)
        build.evidence.insert(
            0,
            bucket.evidence(
                GROUPS, {"region": self.stack.region, "stack_name": self.stack.stack_name}, build.notes
            ),
        )
        record = StorageResource(
            provider="aws",
            kind="bucket",
            account=self.stack.account or "unknown",
            name=name,
            id=record_id,
            scanned_at=now(),
            origin="cloudformation",
            location=location,
            encryption=encryption,
            transport=transport,
            access=access,
            tags=tags,
            unknown=build.unknown,
            evidence=build.evidence,
        )
        apply_bucket_policy(record)  # the transport verdict, from the bucket policy, as for a live bucket
        return record

    def _location(self, bucket: Declared, properties: dict[str, Any], build: _Build) -> Location:
        region = self.stack.region
        replicas: list[Replica] = []
        configuration = properties.get("ReplicationConfiguration")
        rules = configuration.get("Rules") if isinstance(configuration, dict) else configuration
        if isinstance(rules, Unresolved):
            build.unknown["location.replicas"] = _unknown(rules)
            build.unknown["location.regions"] = _unknown(rules, "members")
        for rule in rules if isinstance(rules, list) else []:
            # Every rule counts, enabled or not: a disabled rule's destination may still hold copies.
            destination = rule.get("Destination") if isinstance(rule, dict) else rule
            target = destination.get("Bucket") if isinstance(destination, dict) else destination
            replicas.append(self._replica(bucket, target, build))
        others = sorted({r.region for r in replicas if r.region and r.region != region})
        return Location(
            raw=region, type="region", primary=region, regions=[region, *others], replicas=replicas
        )

    def _replica(self, bucket: Declared, target: Any, build: _Build) -> Replica:
        found = self._find(target, bucket.template, ("AWS::S3::Bucket",))
        if found is not None:
            # Every bucket of the scanned templates is created in the stack's region.
            build.evidence.append(found.evidence(["location.regions"], {"region": self.stack.region}, []))
            known = found.resolver.names.get(found.logical_id)
            name = known if isinstance(known, str) else None
            arn = (
                f"arn:{self.stack.partition}:s3:::{name}"
                if name
                else f"{found.template.path}#{found.logical_id}"
            )
            return Replica(region=self.stack.region, kind="replication", target=arn)
        if isinstance(target, Unresolved):
            problem = target
        else:
            problem = Unresolved(
                UnknownCode.ERROR,
                f"replication destination {target} is not declared in the scanned templates: its region is "
                "known only to S3 (HeadBucket); scan its template too, or the live bucket",
            )
        # Every destination is listed; `regions` holds the known members, others may be missing.
        build.unknown.setdefault("location.regions", _unknown(problem, "members"))
        return Replica(region=None, kind="replication", target=target if isinstance(target, str) else None)

    def _encryption(self, bucket: Declared, properties: dict[str, Any], build: _Build) -> Encryption | None:
        configuration = properties.get("BucketEncryption")
        rules = (
            configuration.get("ServerSideEncryptionConfiguration")
            if isinstance(configuration, dict)
            else None
        )
        problem = configuration if isinstance(configuration, Unresolved) else rules
        if isinstance(problem, Unresolved):
            build.unknown["encryption"] = _unknown(problem)
            return None
        default = next(
            (
                r["ServerSideEncryptionByDefault"]
                for r in (rules if isinstance(rules, list) else [])
                if isinstance(r, dict) and r.get("ServerSideEncryptionByDefault")
            ),
            None,
        )
        if default is None:
            build.notes.append(
                "No default encryption declared: S3 applies SSE-S3 (AES-256) to every bucket since "
                f"2023-01-05 ({S3_DEFAULT_ENCRYPTION_SOURCE})."
            )
            return s3_provider_default()
        if not isinstance(default, dict):
            build.unknown["encryption"] = _unknown(
                default
                if isinstance(default, Unresolved)
                else Unresolved(UnknownCode.ERROR, "ServerSideEncryptionByDefault is not a mapping")
            )
            return None
        algorithm = default.get("SSEAlgorithm")
        if isinstance(algorithm, Unresolved):
            build.unknown["encryption"] = _unknown(algorithm)
            return None
        key = default.get("KMSMasterKeyID")
        declared = None
        if str(algorithm) in KMS_ALGORITHMS and not is_aws_managed_key(key):
            declared = self._template_key(bucket.template, key)
        if declared is None:
            given = _unknown(key) if isinstance(key, Unresolved) else None if key is None else str(key)
            encryption = s3_default_encryption(str(algorithm), given, self.stack.region, build.unknown)
            if (undeclared := key_to_settle(encryption)) is not None:
                build.unknown["encryption.key_management"] = Unknown(
                    code=UnknownCode.ERROR,
                    reason=f"KMS key {undeclared} is not declared in the scanned templates: whether it is "
                    "customer-managed is known only to KMS (kms:DescribeKey)",
                )
            return encryption
        # An AWS::KMS::Key is always customer-managed, and lives in the stack's region.
        build.evidence.append(declared.evidence(KEY_ATTRIBUTES, {"region": self.stack.region}, []))
        if isinstance(key, Unresolved):  # e.g. Fn::GetAtt of the key's Arn
            build.unknown["encryption.key_id"] = _unknown(key)
        encryption = s3_default_encryption(
            str(algorithm), key if isinstance(key, str) else None, self.stack.region, build.unknown
        )
        return encryption.model_copy(
            update={"key_management": "customer-managed", "key_location": self.stack.region}
        )

    def _template_key(self, template: Template, key: Any) -> Declared | None:
        found = self._find(key, template, ("AWS::KMS::Key", "AWS::KMS::ReplicaKey", "AWS::KMS::Alias"))
        if found is None and isinstance(key, str) and "alias/" in key:
            alias = "alias/" + key.split("alias/", 1)[1]
            found = next(
                (a for a in self._of_type("AWS::KMS::Alias") if a.properties().get("AliasName") == alias),
                None,
            )
        if found is not None and found.kind == "AWS::KMS::Alias":
            target = found.properties().get("TargetKeyId")
            return self._find(target, found.template, ("AWS::KMS::Key", "AWS::KMS::ReplicaKey"))
        return found

    def _transport(
        self, bucket: Declared, policies: list[Declared], stand_ins: dict[str, str], build: _Build
    ) -> Transport:
        document: dict[str, Any] | None = None
        if len(policies) > 1:
            build.unknown["transport.bucket_policy"] = Unknown(
                code=UnknownCode.ERROR,
                reason="the bucket is the target of several AWS::S3::BucketPolicy resources ("
                + ", ".join(p.logical_id for p in policies)
                + "): which one S3 keeps depends on the deployment order",
            )
        for policy in policies[:1]:
            notes = []
            if stand_ins:
                notes.append(
                    "The bucket's name is not known: its ARN is analysed as "
                    f"arn:aws:s3:::{bucket.logical_id}."
                )
            build.evidence.append(policy.evidence(["transport"], {"bucket": bucket.logical_id}, notes))
            if policy.condition is not None:
                build.unknown["transport.bucket_policy"] = _unknown(
                    Unresolved(
                        policy.condition.code,
                        f"the bucket policy {policy.logical_id} may not be created: "
                        f"{policy.condition.reason}",
                    )
                )
                break
            resolver = policy.resolver.with_stand_ins(stand_ins)
            value = policy.properties(resolver).get("PolicyDocument")
            parsed, problem = self._policy_document(value)
            if problem is not None:
                build.unknown["transport.bucket_policy"] = _unknown(problem)
            document = parsed
        return s3_transport(document)

    @staticmethod
    def _policy_document(value: Any) -> tuple[dict[str, Any] | None, Unresolved | None]:
        """The policy document as the analysis reads it, or why it cannot be known."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                return None, Unresolved(UnknownCode.ERROR, f"PolicyDocument is not JSON: {exc}")
        if isinstance(value, Unresolved):
            return None, value
        if not isinstance(value, dict):
            return None, Unresolved(UnknownCode.ERROR, "PolicyDocument is not a JSON object")
        statements = value.get("Statement")
        listed = statements if isinstance(statements, list) else [statements]
        for statement in listed:
            problem = first_unresolved(statement)
            # Only Deny statements decide the transport verdict: an unknown inside an Allow is moot.
            if problem is not None and not (
                isinstance(statement, dict) and statement.get("Effect") == "Allow"
            ):
                return None, problem
        return _known(value), None

    @staticmethod
    def _access(properties: dict[str, Any], build: _Build) -> Access | None:
        configuration = properties.get("PublicAccessBlockConfiguration")
        if configuration is None:
            return Access(public_access_blocked=False, detail=None)
        problem = first_unresolved(configuration)
        if problem is not None or not isinstance(configuration, dict):
            build.unknown["access"] = _unknown(problem or Unresolved(UnknownCode.ERROR, "not a mapping"))
            return None
        return Access(
            public_access_blocked=all(_true(configuration.get(flag)) for flag in PUBLIC_ACCESS_FLAGS),
            detail={flag: _true(configuration.get(flag)) for flag in PUBLIC_ACCESS_FLAGS},
        )

    @staticmethod
    def _tags(properties: dict[str, Any], build: _Build) -> dict[str, str] | None:
        declared = properties.get("Tags", [])
        if isinstance(declared, Unresolved) or not isinstance(declared, list):
            build.unknown["tags"] = _unknown(
                declared
                if isinstance(declared, Unresolved)
                else Unresolved(UnknownCode.ERROR, "Tags is not a list")
            )
            return None
        tags: dict[str, str] = {}
        for item in declared:
            key = item.get("Key") if isinstance(item, dict) else item
            if not isinstance(key, str):
                build.unknown["tags"] = _unknown(
                    key
                    if isinstance(key, Unresolved)
                    else Unresolved(UnknownCode.ERROR, "a tag without a Key")
                )
                return None
            value = item.get("Value", "")
            if isinstance(value, Unresolved):
                # Keyed as policies name tags (folded), since unknown paths are matched as written.
                build.unknown[f"tags.{normalize_tag_key(key)}"] = _unknown(value)
                continue
            tags[key] = "true" if value is True else "false" if value is False else str(value)
        return tags


_MOOT = "<not known until the stack is created>"


def _known(value: Any) -> Any:
    """`value` with each `Unresolved` (only inside Allow statements by now) as a marker string."""
    if isinstance(value, Unresolved):
        return _MOOT
    if isinstance(value, dict):
        return {key: _known(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_known(item) for item in value]
    return value


# --- the command ----------------------------------------------------------------------------------


@click.command("cloudformation", epilog=SCAN_EXIT_CODES)
@common_scan_options
@click.argument("templates", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--region", required=True, help="The region the stack is deployed in (AWS::Region).")
@click.option(
    "--account", default=None, help="The 12-digit account the stack is deployed in (AWS::AccountId)."
)
@click.option("--stack-name", default=None, help="The stack's name (AWS::StackName).")
@click.option(
    "--parameters",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Parameter values (JSON): the AWS CLI list of ParameterKey/ParameterValue, or a key/value map.",
)
def command(
    policy_paths: tuple[Path, ...],
    output: Path,
    concurrency: int,
    progress: bool | None,
    templates: tuple[Path, ...],
    region: str,
    account: str | None,
    stack_name: str | None,
    parameters: Path | None,
    retry: RetrySettings,
) -> ScanSummary:
    """Inventory the S3 buckets CloudFormation templates declare (YAML or JSON)."""
    retry.refuse_unsupported("cloudformation", CloudFormationOptions.retry_used)
    section = CloudFormationSection(
        templates=list(templates),
        region=region,
        account=account,
        stack_name=stack_name,
        parameters=parameters,
        options={"concurrency": concurrency},
    )
    return scan_section(section, list(policy_paths), output, progress)


def scan_section(
    section: CloudFormationSection, policy_paths: list[Path], output: Path, progress: bool | None
) -> ScanSummary:
    """Read the templates `section` names into `output` (the command and scale-out units run this)."""
    section_options(section, CloudFormationOptions)
    try:
        section.check()
    except ValueError as exc:
        field_name, _, message = str(exc).partition(": ")
        raise InputError(f"--{field_name.replace('_', '-')}", message) from None
    needs, catalog = scanner_context(policy_paths)
    stack = Stack(region=section.region.lower(), account=section.account, stack_name=section.stack_name)
    scanner = CloudFormationScanner(needs, catalog, list(section.templates), stack, section.parameters)
    return finish_scan(scanner, output, progress)
