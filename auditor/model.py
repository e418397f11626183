"""The normalized inventory: one `StorageResource` per audited thing: an S3 bucket, a GCS bucket, an
Azure blob container or storage account, or an AI resource (an OpenAI project, an Azure OpenAI
deployment, a Bedrock inference profile, a Vertex AI endpoint, an account's AI settings, ...).

Every scanner produces these records and every other part reads them. Attributes are tri-state:

* a value (``"AES256"``, ``True``, ``["eu-west-1"]``),
* explicitly absent (``null`` inside a collected group: the API said there is none),
* unknown, with a reason: the group was not collected, or the attribute's path (or a parent
  path) is listed in ``unknown`` with the error that prevented reading it.

Unknown is never coerced to a default: group leaves are required (nullable) fields, so a record
that omits one is rejected instead of being read as "absent".
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from functools import cached_property, lru_cache
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from auditor.strict import StrictModel

# The source a record came from: a registered source name (auditor.sources). The model only
# checks its shape, so it knows no source; inventory.parse_record and every scanner check it is
# registered (and apply that source's normalization), without importing any cloud SDK.
Provider = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]
ResourceKind = Literal[
    "bucket",
    "container",
    "account",
    "ai-project",
    "ai-account",
    "ai-deployment",
    "ai-inference-profile",
    "ai-agent",
    "ai-invocation-log",
    "ai-endpoint",
    "ai-settings",
]
# Storage kinds: the kinds a policy applies to when its scope names none (as before AI kinds existed).
STORAGE_KINDS: tuple[ResourceKind, ...] = ("bucket", "container", "account")
AI_KINDS: tuple[ResourceKind, ...] = (
    "ai-project",
    "ai-account",
    "ai-deployment",
    "ai-inference-profile",
    "ai-agent",
    "ai-invocation-log",
    "ai-endpoint",
    "ai-settings",
)
RESOURCE_KINDS: tuple[ResourceKind, ...] = STORAGE_KINDS + AI_KINDS
LocationType = Literal["region", "dual-region", "multi-region", "zone", "geography", "data-zone", "global"]
# Processing scope, as providers name it: one region, a data zone (Azure), a geography (OpenAI), anywhere;
# or none: the endpoint refuses every request (the Vertex AI global endpoint denied by an org policy).
ProcessingScope = Literal["region", "data-zone", "geography", "global", "none"]
# In `location.regions` and `processing.regions`: any region the provider operates (global).
ANY_REGION = "*"
TrainingDecider = Literal["organization-policy", "provider-setting", "provider-default", "attestation"]
KeyManagement = Literal["provider-managed", "customer-managed", "customer-supplied"]
ReplicaKind = Literal["replication", "geo-secondary", "dual-region-member", "multi-region-member"]


class UnknownCode(StrEnum):
    """Why an attribute could not be read."""

    ACCESS_DENIED = "access_denied"
    NO_CREDENTIALS = "no_credentials"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    NOT_SUPPORTED = "not_supported"
    NOT_COLLECTED = "not_collected"
    NOT_KNOWN_UNTIL_APPLY = "not_known_until_apply"  # infrastructure as code: a value known after apply
    EXPIRED = "expired"  # an attested value whose attestation expired before the check
    ERROR = "error"


PartialKnowledge = Literal["members", "at_least"]


class Unknown(StrictModel):
    """An attribute that could not be read (fully), and why.

    ``partial`` says the recorded value still carries knowledge: ``members`` means the recorded
    list holds members known to be present while others could not be read (a replica whose region
    is unreadable); ``at_least`` means the recorded value is a lower bound (the provider's TLS
    floor, when the setting that could raise it is unreadable). Operators decide from that part
    where it already settles the answer, and are unknown otherwise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: UnknownCode
    reason: str
    partial: PartialKnowledge | None = None

    @model_serializer(mode="wrap")
    def _omit_whole(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Entries without partial knowledge serialize exactly as before the field existed.
        data: dict[str, Any] = handler(self)
        if data.get("partial") is None:
            data.pop("partial", None)
        return data


def with_partial(reason: Unknown, partial: PartialKnowledge | None) -> Unknown:
    """`reason` with its partial knowledge replaced (also for the struct mirroring `Unknown`)."""
    return type(reason)(code=reason.code, reason=reason.reason, partial=partial)


class SourceLocation(StrictModel):
    """Where in a repository a declared value comes from (infrastructure as code)."""

    file: str = Field(description="Path of the file, relative to the source root when one was given.")
    line: int | None = Field(default=None, ge=1, description="1-based line of the declaration.")
    address: str | None = Field(
        default=None,
        description="Terraform address or template logical id, e.g. 'module.logs.aws_s3_bucket.b'.",
    )


class AttestationRecord(StrictModel):
    """Who attested a value no API exposes, on what basis, and until when (auditor.attestations)."""

    id: str | None = Field(default=None, description="The entry's id in the attestation file, if given.")
    attested_by: str
    attested_on: date
    reference: str = Field(description="Ticket, contract clause or document the attestation rests on.")
    expires: date


class Evidence(StrictModel):
    """One API call (or one declaration in a file) behind one or more attributes: what was asked,
    when, and what came back."""

    call: str = Field(description="API operation, e.g. 's3:GetBucketEncryption', or 'terraform:plan'.")
    at: datetime
    attributes: list[str] = Field(description="Attribute paths (or groups) this answer supports.")
    request: dict[str, Any] | None = None
    response: Any = None
    error: str | None = None
    location: SourceLocation | None = Field(
        default=None,
        description="Infrastructure as code or an attestation: the file and line the evidence was read from.",
    )
    attestation: AttestationRecord | None = Field(
        default=None, description="Set on evidence of kind attestation: the value was attested, not observed."
    )

    @model_serializer(mode="wrap")
    def _omit_no_location(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Evidence of a live API call serializes exactly as before these fields existed.
        data: dict[str, Any] = handler(self)
        if data.get("location") is None:
            data.pop("location", None)
        if data.get("attestation") is None:
            data.pop("attestation", None)
        return data


class Replica(StrictModel):
    """A copy of the data at rest outside the primary location."""

    region: str | None = Field(description="Region of the copy; null when it could not be resolved.")
    kind: ReplicaKind
    target: str | None = None


class Location(StrictModel):
    """Where the data lives at rest."""

    raw: str | None = Field(description="The location value exactly as the API returned it.")
    type: LocationType | None
    primary: str | None = Field(description="Normalized primary region (lower case).")
    regions: list[str] = Field(description="Every region holding the data at rest, replicas included.")
    replicas: list[Replica]


class Encryption(StrictModel):
    """Encryption at rest and who owns the key."""

    enabled: bool | None
    algorithm: str | None = Field(description="Cipher, e.g. 'AES256'.")
    scheme: str | None = Field(description="e.g. SSE-S3, SSE-KMS, DSSE-KMS, google-managed, CMEK.")
    key_management: KeyManagement | None
    key_id: str | None
    key_location: str | None = Field(description="Region of the customer-managed key (lower case).")
    provider_default: bool = Field(
        default=False, description="True when the value is a documented provider default, not a setting."
    )
    source: str | None = Field(default=None, description="URL documenting a provider default.")


class ProviderTlsFloor(StrictModel):
    """A TLS minimum the provider enforces on all its endpoints, with where that is documented."""

    version: str
    since: date | None
    source: str


class Transport(StrictModel):
    """How the data can be reached in transit."""

    plaintext_refused: bool | None
    plaintext_refused_by: str | None = Field(description="What refuses plaintext: a statement, a setting.")
    min_tls_version: str | None = Field(description="Effective minimum TLS version, e.g. '1.2', 'TLS1_2'.")
    min_tls_enforced_by: str | None
    provider_floor: ProviderTlsFloor | None = None
    bucket_policy: dict[str, Any] | None = Field(
        default=None, description="AWS only: the raw bucket policy; transport fields are derived from it."
    )


class Access(StrictModel):
    """Public exposure controls."""

    public_access_blocked: bool | None
    detail: dict[str, Any] | None = None


_TAG_KEY_FOLD = re.compile(r"[-_]")


@lru_cache(maxsize=4096)  # an estate's tag keys are few: each is folded once
def normalize_tag_key(key: str) -> str:
    """Fold a tag key so AWS tags, GCS labels and Azure metadata compare alike.

    Case-insensitive, with '-' and '_' equal: Azure metadata keys cannot contain '-' and GCS
    label keys cannot contain capitals, so one policy key must match all three spellings.
    """
    return _TAG_KEY_FOLD.sub("-", key.casefold())


class Processing(StrictModel):
    """Where requests to an AI resource are processed (``location`` keeps meaning "at rest")."""

    raw: str | None = Field(
        description="The setting exactly as the provider names it: a residency value, a deployment SKU, "
        "a model or inference profile id, an endpoint."
    )
    scope: ProcessingScope | None = Field(
        description="region, data-zone, geography, global, or none (refuses every request; regions empty)."
    )
    regions: list[str] = Field(
        description="Every region (lower case) that may process the requests, resolved through the zone "
        "catalog; '*' means any region."
    )


class Training(StrictModel):
    """Whether the provider may use the content to train models, and what decides it."""

    provider_may_train: bool | None = Field(description="True when the provider may train on the content.")
    decided_by: TrainingDecider | None = Field(
        description="organization-policy, provider-setting, provider-default or attestation."
    )
    setting: str | None = Field(description="The deciding setting or policy as read (or attested).")
    source: str | None = Field(default=None, description="URL documenting a provider default.")
    as_of: date | None = Field(default=None, description="When the documented default was last checked.")
    cache_enabled: bool | None = Field(
        default=None, description="Vertex AI: whether the project caches prompts and outputs (cacheConfig)."
    )


class ResourceMethods:
    """What evaluation asks of a resource beyond its fields, defined once for `StorageResource` and
    for the struct mirroring it that `auditor.fast_decode` reads (same fields, same values)."""

    if not TYPE_CHECKING:  # a mixin of slotted classes (pydantic's, msgspec's) adds no slot of its own
        __slots__ = ()

    # Declared by each class that mixes this in (pydantic fields and private attributes).
    if TYPE_CHECKING:
        unknown: dict[str, Unknown]
        tags: dict[str, str] | None
        evidence: list[Evidence]
        _evidence_json: list[dict[str, Any]] | None
        _evidence_texts: list[bytes] | None
        _evidence_line: bytes | None

    def evidence_json(self) -> list[dict[str, Any]]:
        """Evidence in its JSON form (as read, or serialized once)."""
        if self._evidence_json is None:
            if self._evidence_texts is not None:
                self._evidence_json = [orjson.loads(text) for text in self._evidence_texts]
            elif self._evidence_line is not None:
                self._evidence_json = orjson.loads(self._evidence_line).get("evidence") or []
            else:
                self._evidence_json = [item.model_dump(mode="json") for item in self.evidence]
        return self._evidence_json

    def evidence_texts(self) -> list[bytes]:
        """Each evidence item as JSON text: exactly ``orjson.dumps`` of its `evidence_json` item."""
        if self._evidence_texts is None:
            self._evidence_texts = [orjson.dumps(item) for item in self.evidence_json()]
        return self._evidence_texts

    def keep_evidence_json(self, raw: list[dict[str, Any]]) -> None:
        """Remember the already-validated JSON form of `evidence` (see inventory.parse_record)."""
        self._keep_evidence(raw, None, None)

    def keep_evidence_texts(self, texts: list[bytes]) -> None:
        """Remember each evidence item's JSON text (see auditor.fast_decode)."""
        self._keep_evidence(None, texts, None)

    def keep_evidence_line(self, line: bytes) -> None:
        """Remember the JSON line the record was read from: its evidence is read from it when asked
        (see auditor.fast_decode)."""
        self._keep_evidence(None, None, line)

    def _keep_evidence(
        self, raw: list[dict[str, Any]] | None, texts: list[bytes] | None, line: bytes | None
    ) -> None:
        # One source of the evidence's JSON at a time, so none is left stale by another.
        self._evidence_json, self._evidence_texts, self._evidence_line = raw, texts, line

    @cached_property
    def normalized_tags(self) -> dict[str, str] | None:
        """Tags with keys folded by `normalize_tag_key` (first spelling wins on collision)."""
        if self.tags is None:
            return None
        folded: dict[str, str] = {}
        for key, value in self.tags.items():
            folded.setdefault(normalize_tag_key(key), value)
        return folded

    def unknown_reason(self, path: str) -> Unknown | None:
        """The reason `path` is unknown (checking the path and each parent), or None if readable."""
        if self.unknown:
            probe = path
            while True:
                found = self.unknown.get(probe)
                if found is not None:
                    return found
                cut = probe.rfind(".")
                if cut < 0:
                    break
                probe = probe[:cut]
        group = path.split(".", 1)[0]
        if group in GROUPS and getattr(self, group) is None:
            return _NOT_COLLECTED[group]
        return None


class StorageResource(ResourceMethods, StrictModel):
    """One audited resource: a data store (an S3 or GCS bucket, an Azure container or account) or an
    AI resource (see `AI_KINDS` and `KIND_GROUPS` for the attribute groups each kind carries)."""

    record: Literal["resource"] = "resource"
    provider: Provider
    kind: ResourceKind
    account: str = Field(
        description="AWS account id, GCP project, Azure subscription id, or OpenAI organization id."
    )
    storage_account: str | None = Field(default=None, description="Azure only: the storage account.")
    name: str
    id: str = Field(description="Stable id: ARN, gs:// URI, or Azure resource id + container.")
    scanned_at: datetime | None = None
    origin: str | None = Field(
        default=None,
        description="The infrastructure-as-code source that declared the record ('terraform', "
        "'cloudformation', 'arm'); null (omitted) for a live scan.",
    )
    state: str | None = Field(
        default=None,
        description="Lifecycle state where the provider has one ('active', 'archived'); a record in an "
        "inactive state (`INACTIVE_STATES`) gets no finding unless a policy's scope names the state.",
    )

    location: Location | None = None
    encryption: Encryption | None = None
    transport: Transport | None = None
    access: Access | None = None
    tags: dict[str, str] | None = None
    processing: Processing | None = None
    training: Training | None = None

    unknown: dict[str, Unknown] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_live_origin(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A storage record of a live scan serializes exactly as before `origin`, `processing` and
        # `training` existed: each is left out when unset.
        data: dict[str, Any] = handler(self)
        for optional in ("origin", "state", "processing", "training"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return data

    # The evidence as read from JSONL, kept so findings need not re-serialize it (ResourceMethods).
    _evidence_json: list[dict[str, Any]] | None = PrivateAttr(default=None)
    _evidence_texts: list[bytes] | None = PrivateAttr(default=None)
    _evidence_line: bytes | None = PrivateAttr(default=None)


class CoverageGap(StrictModel):
    """A part of the estate that could not be scanned at all (an account, a project, a region).

    ``evidence`` holds the failed call(s) that made the gap, as attribute evidence does (a
    malformed answer keeps its bounded raw bytes); it is left out of JSON when empty.
    """

    record: Literal["gap"] = "gap"
    provider: Provider
    account: str
    scope: str = Field(description="What was not scanned: 'account', 'region:eu-west-1', 'containers'.")
    code: UnknownCode
    reason: str
    at: datetime | None = None
    evidence: list[Evidence] = Field(
        default_factory=list, description="The failed call(s) behind the gap, raw answer bytes bounded."
    )

    @model_serializer(mode="wrap")
    def _omit_no_evidence(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Gaps without evidence serialize exactly as before the field existed.
        data: dict[str, Any] = handler(self)
        if not data.get("evidence"):
            data.pop("evidence", None)
        return data


GROUPS: frozenset[str] = frozenset(
    {"location", "encryption", "transport", "access", "tags", "processing", "training"}
)
# The reason of an attribute whose whole group was not collected (`unknown_reason`; frozen, shared).
_NOT_COLLECTED = {
    group: Unknown(code=UnknownCode.NOT_COLLECTED, reason=f"'{group}' was not collected") for group in GROUPS
}
GROUP_MODELS: dict[str, type[BaseModel]] = {
    "location": Location,
    "encryption": Encryption,
    "transport": Transport,
    "access": Access,
    "processing": Processing,
    "training": Training,
}
_STORAGE_GROUPS = frozenset({"location", "encryption", "transport", "access", "tags"})
# The attribute groups each kind carries (docs/policy-language.md): a policy that reads a group on a kind
# that does not carry it would be `error` on every such resource, so the policy loader refuses it.
KIND_GROUPS: dict[ResourceKind, frozenset[str]] = {
    "bucket": _STORAGE_GROUPS,
    "container": _STORAGE_GROUPS,
    "account": _STORAGE_GROUPS,
    # An OpenAI API project: storage geography, processing geography, Enterprise Key Management key.
    "ai-project": frozenset({"location", "processing", "encryption"}),
    # An Azure OpenAI / AI Foundry (Cognitive Services) account: content at rest, key, network.
    "ai-account": frozenset({"location", "encryption", "access", "tags", "training"}),
    # An Azure OpenAI deployment: where its SKU processes requests.
    "ai-deployment": frozenset({"processing", "training"}),
    # A Bedrock application inference profile: the regions of its models.
    "ai-inference-profile": frozenset({"processing", "training", "tags"}),
    # A Bedrock agent: the regions its foundation model (or inference profile) processes in.
    "ai-agent": frozenset({"processing", "training", "tags"}),
    # Bedrock model invocation logging in one account and region: where prompts are stored at rest.
    "ai-invocation-log": frozenset({"location"}),
    # A Vertex AI endpoint (regional, or the project's global endpoint): where requests are processed.
    "ai-endpoint": frozenset({"processing", "training"}),
    # Account-, organization- or project-wide AI settings: whether the provider may train on content.
    "ai-settings": frozenset({"training"}),
}
IDENTITY_FIELDS: frozenset[str] = frozenset(
    {"provider", "kind", "account", "storage_account", "name", "id", "origin", "state"}
)
# States of resources that serve no requests and hold no live data (an archived OpenAI project).
INACTIVE_STATES: frozenset[str] = frozenset({"archived"})


def attribute_paths() -> frozenset[str]:
    """Every attribute path a policy may name (``tags.<key>`` is open-ended and checked apart)."""
    paths = set(IDENTITY_FIELDS) | {"tags"}
    for group, model in GROUP_MODELS.items():
        paths.add(group)
        paths.update(f"{group}.{leaf}" for leaf in model.model_fields)
    return frozenset(paths)


def attribute_kind(path: str) -> Literal["list", "bool", "mapping", "scalar"]:
    """What kind of value an attribute path holds, so policies can be checked when they load."""
    if path.startswith("tags."):
        return "scalar"
    if path == "tags":
        return "mapping"
    group, _, leaf = path.partition(".")
    model = GROUP_MODELS.get(group)
    if model is None:
        return "scalar"  # identity fields are strings
    if not leaf:
        return "mapping"
    annotation = model.model_fields[leaf].annotation
    if get_origin(annotation) in (Union, UnionType):  # Optional[X] -> X
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    target = annotation
    origin = get_origin(target) or target
    if origin is list:
        return "list"
    if target is bool:
        return "bool"
    if origin is dict or (isinstance(target, type) and issubclass(target, BaseModel)):
        return "mapping"
    return "scalar"
