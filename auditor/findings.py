"""Findings: the result of one policy on one resource, and the statuses and severities they carry.

A finding serializes to the public findings-JSON contract (docs/findings-json.md) with
`Finding.to_json_dict`; plain slotted dataclasses keep evaluation of large estates cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from auditor.model import Unknown


class Truth(Enum):
    """The value of a condition under three-valued (Kleene) logic: unknown is never true or false."""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, value: bool) -> Truth:
        """TRUE or FALSE for a Python bool."""
        return cls.TRUE if value else cls.FALSE

    def negate(self) -> Truth:
        """Kleene not: not unknown is unknown."""
        return _NEGATION[self]

    def and_(self, other: Truth) -> Truth:
        """Kleene and: FALSE wins over UNKNOWN, which wins over TRUE."""
        return Truth.all_of((self, other))

    def or_(self, other: Truth) -> Truth:
        """Kleene or: TRUE wins over UNKNOWN, which wins over FALSE."""
        return Truth.any_of((self, other))

    @staticmethod
    def all_of(values: Iterable[Truth]) -> Truth:
        """Kleene `all`: FALSE if any is FALSE, else UNKNOWN if any is UNKNOWN, else TRUE."""
        return _junction(values, deciding=Truth.FALSE, otherwise=Truth.TRUE)

    @staticmethod
    def any_of(values: Iterable[Truth]) -> Truth:
        """Kleene `any`: TRUE if any is TRUE, else UNKNOWN if any is UNKNOWN, else FALSE."""
        return _junction(values, deciding=Truth.TRUE, otherwise=Truth.FALSE)


_NEGATION = {Truth.TRUE: Truth.FALSE, Truth.FALSE: Truth.TRUE, Truth.UNKNOWN: Truth.UNKNOWN}


def _junction(values: Iterable[Truth], deciding: Truth, otherwise: Truth) -> Truth:
    undecided = False
    for value in values:
        if value is deciding:
            return deciding
        undecided = undecided or value is Truth.UNKNOWN
    return Truth.UNKNOWN if undecided else otherwise


def unknown_json(unknown: Unknown, value: Any = None) -> dict[str, Any]:
    """An unreadable value as findings JSON spells it: ``{"unknown": {code, reason}}``, with
    ``partial`` and the known part as ``value`` when some of it is known."""
    out: dict[str, Any] = {"code": unknown.code.value, "reason": unknown.reason}
    if unknown.partial is not None:
        out["partial"] = unknown.partial
        out["value"] = value
    return {"unknown": out}


class Status(StrEnum):
    """Outcome of a policy on a resource. `error` means it could not be decided: never compliant."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    WAIVED = "waived"


class Severity(StrEnum):
    """Policy severity, ordered from most to least severe by `rank`."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is more severe: critical=4 ... info=0."""
        return _SEVERITY_RANK[self]

    def at_least(self, threshold: Severity) -> bool:
        """True if this severity is at or above `threshold`."""
        return self.rank >= threshold.rank


_SEVERITY_RANK = {
    Severity.CRITICAL: 4,
    Severity.HIGH: 3,
    Severity.MEDIUM: 2,
    Severity.LOW: 1,
    Severity.INFO: 0,
}


@dataclass(frozen=True, slots=True)
class Observation:
    """What one condition leaf saw: the attribute, its value (or why unknown), what was expected."""

    attribute: str
    value: Any
    unknown: Unknown | None
    expected: str
    state: Truth

    def describe(self) -> str:
        """'path = value, expected ...' or 'path unknown (code: reason)'.

        With partial knowledge the known part comes first and then why the rest is unknown:
        'path includes [...] (others unknown: code: reason), expected ...' for known members,
        'path >= "1.2" (exact value unknown: code: reason), expected ...' for a lower bound.
        """
        if self.unknown is not None:
            why = f"{self.unknown.code.value}: {self.unknown.reason}"
            if self.unknown.partial == "members":
                return (
                    f"{self.attribute} includes {_shown(self.value)} (others unknown: {why}), "
                    f"expected {self.expected}"
                )
            if self.unknown.partial == "at_least":
                return (
                    f"{self.attribute} >= {_shown(self.value)} (exact value unknown: {why}), "
                    f"expected {self.expected}"
                )
            return f"{self.attribute} unknown ({why})"
        shown = "absent" if self.value is None else _shown(self.value)
        return f"{self.attribute} = {shown}, expected {self.expected}"

    def observed_json(self) -> Any:
        """The findings-JSON `observed` value: the value, or ``{"unknown": {code, reason}}``.

        A partial unknown adds ``partial`` (``members``/``at_least``) and ``value`` (the known
        members, or the lower bound) inside the ``unknown`` object, so readers of the 1.0 shape
        still see an unknown with its code and reason.
        """
        if self.unknown is None:
            return self.value
        return unknown_json(self.unknown, self.value)


def _shown(value: Any) -> str:
    # JSON spelling (true, "x", ["a"]) reads the same for users of every language.
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


@dataclass(frozen=True, slots=True)
class TrainingRef:
    """Whether the provider may train on an AI resource's content, and what decided it.

    `provider_may_train` is the value, or ``{"unknown": {code, reason}}`` when it could not be
    read (an expired attestation included).
    """

    provider_may_train: bool | dict[str, Any] | None
    decided_by: str | None
    source: str | None
    as_of: str | None

    def to_json_dict(self) -> dict[str, Any]:
        """The findings-JSON `resource.training` object."""
        out: dict[str, Any] = {
            "provider_may_train": self.provider_may_train,
            "decided_by": self.decided_by,
            "source": self.source,
        }
        if self.as_of is not None:
            out["as_of"] = self.as_of
        return out


# The resource tag naming the team that owns a resource: findings carry its value as
# `resource.owner`, and reports route fixes and group sections by it.
OWNER_TAG = "owner"


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """The identity of the resource a finding is about, with what an AI resource's reader needs
    beside the finding: where requests are processed, whether the provider may train, and which
    values were attested (each left out of JSON when the kind does not carry it); and its owner
    (the `owner` tag, left out when the resource has none or its tags could not be read)."""

    provider: str
    account: str
    id: str
    name: str
    regions: list[str]
    kind: str = "bucket"
    storage_account: str | None = None
    # Kinds that carry `processing`: its regions, or {"unknown": {code, reason}}.
    processing_regions: list[str] | dict[str, Any] | None = None
    training: TrainingRef | None = None
    attested: tuple[str, ...] = ()
    owner: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """The findings-JSON `resource` object."""
        out: dict[str, Any] = {
            "provider": self.provider,
            "account": self.account,
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "regions": self.regions,
        }
        if self.storage_account is not None:
            out["storage_account"] = self.storage_account
        if self.processing_regions is not None:
            out["processing_regions"] = self.processing_regions
        if self.training is not None:
            out["training"] = self.training.to_json_dict()
        if self.attested:
            out["attested"] = list(self.attested)
        if self.owner is not None:
            out["owner"] = self.owner
        return out


@dataclass(frozen=True, slots=True)
class AppliedWaiver:
    """A waiver that matched a finding; `expired` waivers are reported but do not waive."""

    id: str
    justification: str
    approver: str
    expires: str
    expired: bool
    source: str


@dataclass(slots=True)
class Finding:
    """One policy evaluated on one resource.

    `message`, `observed` and `reasons` are derived from the leaf `observations` on demand, so
    evaluating a large estate does not format text nobody reads.
    """

    policy_id: str
    status: Status
    severity: Severity
    resource: ResourceRef
    expected: str
    controls: dict[str, list[str]]
    evidence: list[dict[str, Any]]
    underlying_status: Status
    observations: tuple[Observation, ...] = ()
    waiver: AppliedWaiver | None = None
    notes: list[str] = field(default_factory=list)
    # Indexes of `evidence` in the resource's evidence list (the inventory record's `evidence`).
    evidence_refs: tuple[int, ...] = ()

    @property
    def message(self) -> str:
        """Observed vs expected, for people."""
        text = "; ".join(dict.fromkeys(obs.describe() for obs in self.observations))
        if self.waiver is not None and self.waiver.expired:
            text += f" (waiver {self.waiver.id} expired on {self.waiver.expires})"
        return text

    @property
    def observed(self) -> dict[str, Any]:
        """Each attribute read, with its value or ``{"unknown": {code, reason[, partial, value]}}``."""
        return {obs.attribute: obs.observed_json() for obs in self.observations}

    @property
    def reasons(self) -> list[str]:
        """Why the finding could not be decided (unknown attributes, undecidable scope).

        A partially known attribute whose known part decided its test is not a reason: only
        observations left undecided (UNKNOWN) are.
        """
        unknown = {
            obs.attribute: f"{obs.attribute}: {obs.unknown.code.value}: {obs.unknown.reason}"
            for obs in self.observations
            if obs.unknown is not None and obs.state is Truth.UNKNOWN
        }
        return [*self.notes, *unknown.values()]

    def to_json_dict(self, *, reference: bool = False) -> dict[str, Any]:
        """The finding as the findings-JSON contract describes it; `reference`: in the reference form
        (2.0), `evidence_refs` in place of `evidence`, no `controls` and no `expected` (the run's
        policies hold them), and `underlying_status` only where it differs from `status`."""
        out: dict[str, Any] = {
            "policy_id": self.policy_id,
            "status": self.status.value,
            "underlying_status": self.underlying_status.value,
            "severity": self.severity.value,
            "resource": self.resource.to_json_dict(),
            "message": self.message,
            "observed": self.observed,
            "expected": self.expected,
        }
        if reference:
            # what the run holds (its policy's `expected`) or the finding's status says is left out
            del out["expected"]
            if self.underlying_status is self.status:
                del out["underlying_status"]
            out["evidence_refs"] = list(self.evidence_refs)
        else:
            out["controls"] = self.controls
            out["evidence"] = self.evidence
        reasons = self.reasons
        if reasons:
            out["reasons"] = reasons
        if self.waiver is not None:
            out["waiver"] = {
                "id": self.waiver.id,
                "justification": self.waiver.justification,
                "approver": self.waiver.approver,
                "expires": self.waiver.expires,
                "expired": self.waiver.expired,
                "source": self.waiver.source,
            }
        return out


def shared_json(finding: Finding, *, reference: bool = False) -> tuple[bytes, bytes, bytes]:
    """The JSON of `finding` around its resource and its evidence, as (head, middle, tail).

    ``head + resource + middle + evidence + tail`` is exactly ``orjson.dumps(finding.to_json_dict())``
    (``reference``: of the reference form, with ``evidence_refs`` in place of ``evidence``) where
    `resource` is the JSON of its resource object and `evidence` that of its evidence list (or refs).
    Findings with the same decision share it, so it is built once for them all.
    """
    evidence_key = "evidence_refs" if reference else "evidence"
    parts: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
    part = 0
    for key, value in finding.to_json_dict(reference=reference).items():
        if key == "resource" or key == evidence_key:
            part += 1
        else:
            parts[part].append(orjson.dumps(key) + b":" + orjson.dumps(value))
    # Contract order: policy_id ... severity, resource, message ... expected[, controls], evidence, ...
    assert part == 2 and parts[0] and parts[1], "resource and evidence follow other members"
    head = b"{" + b",".join(parts[0]) + b',"resource":'
    middle = b"," + b",".join(parts[1]) + b"," + orjson.dumps(evidence_key) + b":"
    tail = b"".join(b"," + member for member in parts[2]) + b"}"
    return head, middle, tail
