"""The normalized inventory: one `StorageResource` per S3 bucket, GCS bucket or Azure blob container.

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
from functools import cached_property
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
ResourceKind = Literal["bucket", "container", "account"]
RESOURCE_KINDS: tuple[ResourceKind, ...] = ("bucket", "container", "account")
LocationType = Literal["region", "dual-region", "multi-region", "zone"]
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


class SourceLocation(StrictModel):
    """Where in a repository a declared value comes from (infrastructure as code)."""

    file: str = Field(description="Path of the file, relative to the source root when one was given.")
    line: int | None = Field(default=None, ge=1, description="1-based line of the declaration.")
    address: str | None = Field(
        default=None,
        description="Terraform address or template logical id, e.g. 'module.logs.aws_s3_bucket.b'.",
    )


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
        default=None, description="Infrastructure as code: the file and line this evidence was read from."
    )

    @model_serializer(mode="wrap")
    def _omit_no_location(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Evidence of a live API call serializes exactly as before the field existed.
        data: dict[str, Any] = handler(self)
        if data.get("location") is None:
            data.pop("location", None)
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


def normalize_tag_key(key: str) -> str:
    """Fold a tag key so AWS tags, GCS labels and Azure metadata compare alike.

    Case-insensitive, with '-' and '_' equal: Azure metadata keys cannot contain '-' and GCS
    label keys cannot contain capitals, so one policy key must match all three spellings.
    """
    return _TAG_KEY_FOLD.sub("-", key.casefold())


class StorageResource(StrictModel):
    """One audited data store: an S3 bucket, a GCS bucket, or an Azure blob container / account."""

    record: Literal["resource"] = "resource"
    provider: Provider
    kind: ResourceKind
    account: str = Field(description="AWS account id, GCP project, or Azure subscription id.")
    storage_account: str | None = Field(default=None, description="Azure only: the storage account.")
    name: str
    id: str = Field(description="Stable id: ARN, gs:// URI, or Azure resource id + container.")
    scanned_at: datetime | None = None
    origin: str | None = Field(
        default=None,
        description="The infrastructure-as-code source that declared the record ('terraform', "
        "'cloudformation', 'arm'); null (omitted) for a live scan.",
    )

    location: Location | None = None
    encryption: Encryption | None = None
    transport: Transport | None = None
    access: Access | None = None
    tags: dict[str, str] | None = None

    unknown: dict[str, Unknown] = Field(default_factory=dict)
    evidence: list[Evidence] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_live_origin(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A live scan's record serializes exactly as before `origin` existed.
        data: dict[str, Any] = handler(self)
        if data.get("origin") is None:
            data.pop("origin", None)
        return data

    # The evidence exactly as read from JSONL, kept so findings need not re-serialize it.
    _evidence_json: list[dict[str, Any]] | None = PrivateAttr(default=None)

    def evidence_json(self) -> list[dict[str, Any]]:
        """Evidence in its JSON form (as read, or serialized once)."""
        if self._evidence_json is None:
            self._evidence_json = [item.model_dump(mode="json") for item in self.evidence]
        return self._evidence_json

    def keep_evidence_json(self, raw: list[dict[str, Any]]) -> None:
        """Remember the already-validated JSON form of `evidence` (see inventory.parse_record)."""
        self._evidence_json = raw

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
            return Unknown(code=UnknownCode.NOT_COLLECTED, reason=f"'{group}' was not collected")
        return None


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


GROUPS: frozenset[str] = frozenset({"location", "encryption", "transport", "access", "tags"})
GROUP_MODELS: dict[str, type[BaseModel]] = {
    "location": Location,
    "encryption": Encryption,
    "transport": Transport,
    "access": Access,
}
IDENTITY_FIELDS: frozenset[str] = frozenset(
    {"provider", "kind", "account", "storage_account", "name", "id", "origin"}
)


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
