"""The policy language, defined once as pydantic models: policies, conditions, waivers, tests.

See docs/policy-language.md for the user-facing description.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from auditor.findings import Severity, Status
from auditor.model import STORAGE_KINDS, Provider, ResourceKind
from auditor.policy.operators import OPERATORS
from auditor.sources import provider_names
from auditor.strict import StrictModel

POLICY_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$"

if TYPE_CHECKING:
    Operator = str
else:  # the names of the operator table, in its order (pydantic lists them in its error message)
    Operator = Literal[tuple(OPERATORS)]


_VALUE_MAPPING = "a value mapping must be {param: NAME} or {zone: NAME}"


class ParamRef(StrictModel):
    """``{param: NAME}``: the value of a parameter the policy declares."""

    param: str


def _ref_kind(raw: Any, literal: str, *, zone: bool = True) -> str | None:
    """The union tag of a value: a reference (by its only key), None for any other mapping."""
    if isinstance(raw, ParamRef) or (isinstance(raw, dict) and set(raw) == {"param"}):
        return "<param>"
    if zone and (isinstance(raw, ZoneRef) or (isinstance(raw, dict) and set(raw) == {"zone"})):
        return "<zone>"
    if isinstance(raw, dict | ZoneRef):
        return None  # the custom error of the union
    return literal


ZoneName = Annotated[
    Annotated[ParamRef, Tag("<param>")] | Annotated[str, Tag("<name>")],
    Discriminator(
        lambda raw: _ref_kind(raw, "<name>", zone=False),
        custom_error_type="value",
        custom_error_message=_VALUE_MAPPING,
    ),
]


class ZoneRef(StrictModel):
    """``{zone: NAME}`` or ``{zone: {param: NAME}}``: the locations of a residency zone."""

    zone: ZoneName


LeafValue = Annotated[
    Annotated[ParamRef, Tag("<param>")]
    | Annotated[ZoneRef, Tag("<zone>")]
    | Annotated[Any, Tag("<literal>")],
    Discriminator(
        lambda raw: _ref_kind(raw, "<literal>"),
        custom_error_type="value",
        custom_error_message=_VALUE_MAPPING,
    ),
]
"""A leaf's value: a literal, a `ParamRef` or a `ZoneRef` (any other mapping is an error)."""


def as_written(value: Any) -> Any:
    """A leaf value as the YAML spelled it (``{'param': 'zone'}`` for a `ParamRef`)."""
    if isinstance(value, ParamRef):
        return {"param": value.param}
    if isinstance(value, ZoneRef):
        return {"zone": as_written(value.zone)}
    return value


def param_refs(value: Any) -> list[str]:
    """The parameter names a leaf value refers to."""
    if isinstance(value, ParamRef):
        return [value.param]
    if isinstance(value, ZoneRef):
        return param_refs(value.zone)
    return []


class Leaf(StrictModel):
    """A test of one attribute: ``{attribute: location.regions, op: subset_of, value: {zone: eu}}``.

    `value` is a literal, ``{param: NAME}``, or ``{zone: NAME}`` / ``{zone: {param: NAME}}``.
    """

    attribute: str
    op: Operator
    value: LeafValue = None


class AllOf(StrictModel):
    """True when every member is true."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(StrictModel):
    """True when at least one member is true."""

    any: list[Condition] = Field(min_length=1)


class NotOf(StrictModel):
    """True when its member is false."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    not_: Condition = Field(alias="not")


def _condition_kind(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key in ("all", "any", "not"):
            if key in raw:
                return f"<{key}>"
        return "<leaf>"
    if isinstance(raw, AllOf):
        return "<all>"
    if isinstance(raw, AnyOf):
        return "<any>"
    if isinstance(raw, NotOf):
        return "<not>"
    if isinstance(raw, Leaf):
        return "<leaf>"
    return None


Condition = Annotated[
    Annotated[AllOf, Tag("<all>")]
    | Annotated[AnyOf, Tag("<any>")]
    | Annotated[NotOf, Tag("<not>")]
    | Annotated[Leaf, Tag("<leaf>")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is a mapping with 'all', 'any', 'not' or 'attribute'",
    ),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()

ParameterType = Literal["string", "zone", "list", "integer", "boolean", "version"]

# A version parameter is a whole version: 1, 1.2, 1.2.3, optionally spelled TLS1_2 / TLSv1.2 / v1.2.
_VERSION_TEXT = re.compile(r"(?i:tls ?v?|v)?\d+(?:[._]\d+){0,2}")


def _context(info: ValidationInfo) -> dict[str, Any]:
    return info.context if isinstance(info.context, dict) else {}


def _integer_text(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"'{_context(info).get('name')}' takes an integer") from None
    return value


def _boolean_text(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"'{_context(info).get('name')}' takes true or false")
        return value.lower() == "true"
    return value


def _list_text(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _known_zone(value: str, info: ValidationInfo) -> str:
    zones = _context(info).get("zones")
    if zones is not None and value not in zones:
        raise ValueError(f"unknown zone '{value}' (known: {', '.join(sorted(zones))})")
    return value


def _version_text(value: str, info: ValidationInfo) -> str:
    if not _VERSION_TEXT.fullmatch(value.strip()):
        raise ValueError(f"'{_context(info).get('name')}' takes a version such as '1.2', got {value!r}")
    return value


@dataclass(frozen=True)
class ParameterKind:
    """How values of one parameter type are checked: text (``--param``, or text in a policy test)
    is converted first, then the value must fit the pydantic type."""

    wants: str
    adapter: TypeAdapter[Any]


_STRICT = ConfigDict(strict=True)

PARAMETER_KINDS: dict[str, ParameterKind] = {
    "string": ParameterKind("a string", TypeAdapter(str, config=_STRICT)),
    "zone": ParameterKind(
        "a zone name", TypeAdapter(Annotated[str, AfterValidator(_known_zone)], config=_STRICT)
    ),
    "list": ParameterKind(
        "a list of strings (or comma-separated text)",
        TypeAdapter(Annotated[list[str], BeforeValidator(_list_text)], config=_STRICT),
    ),
    "integer": ParameterKind(
        "an integer", TypeAdapter(Annotated[int, BeforeValidator(_integer_text)], config=_STRICT)
    ),
    "boolean": ParameterKind(
        "true or false", TypeAdapter(Annotated[bool, BeforeValidator(_boolean_text)], config=_STRICT)
    ),
    "version": ParameterKind(
        "a version such as '1.2'", TypeAdapter(Annotated[str, AfterValidator(_version_text)], config=_STRICT)
    ),
}


class Parameter(StrictModel):
    """A value a user can set with ``--param NAME=VALUE`` (lists: comma-separated)."""

    type: ParameterType = "string"
    default: Any = None
    description: str = ""

    def value_of(self, name: str, raw: Any, zones: Collection[str] | None = None) -> Any:
        """`raw` (text from ``--param``, or a YAML value) as a value of this parameter's type.

        Text is converted (``a,b`` to a list, ``true`` to a bool, ...); with `zones`, a zone must
        be one of them. ValueError says what is wrong, naming the parameter.
        """
        kind = PARAMETER_KINDS[self.type]
        try:
            return kind.adapter.validate_python(raw, context={"name": name, "zones": zones})
        except ValidationError as exc:
            error = exc.errors()[0]
            cause = (error.get("ctx") or {}).get("error")
            if error["type"] == "value_error" and isinstance(cause, ValueError):
                raise ValueError(str(cause)) from None
            if self.type == "version":
                raise ValueError(f"'{name}' takes {kind.wants}, got {raw!r}") from None
            raise ValueError(f"'{name}' takes {kind.wants}") from None


class Scope(StrictModel):
    """Which resources a policy applies to; resources outside it get no finding."""

    providers: list[Provider] = Field(default_factory=lambda: list(provider_names()))
    # Unnamed, a policy applies to the storage kinds (bucket, container, account), as before AI kinds
    # existed; AI kinds (ai-project, ai-deployment, ...) are in scope only where a policy names them.
    kinds: list[ResourceKind] = Field(default_factory=lambda: list(STORAGE_KINDS))
    # Inactive states (archived) a policy also applies to; records in other states always qualify.
    states: list[str] = Field(default_factory=list)
    where: Condition | None = None

    @field_validator("providers")
    @classmethod
    def _registered(cls, providers: list[str]) -> list[str]:
        known = provider_names()
        for provider in providers:
            if provider not in known:
                raise ValueError(f"unknown source '{provider}' (expected one of {', '.join(known)})")
        return providers


class Policy(StrictModel):
    """One rule, with the controls it evidences and how to remediate it."""

    id: str = Field(pattern=POLICY_ID_PATTERN)
    title: str
    description: str
    severity: Severity
    scope: Scope = Field(default_factory=Scope)
    parameters: dict[str, Parameter] = Field(default_factory=dict)
    condition: Condition
    expected: str | None = Field(default=None, description="Plain-words expectation for reports.")
    controls: dict[str, list[str]] = Field(default_factory=dict)
    remediation: dict[Provider, str] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)

    @property
    def family(self) -> str:
        """The namespace before the first dot: residency, encryption, transport, training, ..."""
        return self.id.split(".", 1)[0]


class PolicyFile(StrictModel):
    """A policy file: ``policies: [...]``."""

    policies: list[Policy]


class ResourceSelector(StrictModel):
    """Which resources a waiver covers; every given criterion must match (globs allowed)."""

    ids: list[str] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)
    providers: list[Provider] = Field(default_factory=list)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_empty(self) -> ResourceSelector:
        if not (self.ids or self.names or self.accounts or self.providers or self.tags):
            raise ValueError(
                "a resource selector needs at least one of ids, names, accounts, providers, tags"
            )
        return self


class Waiver(StrictModel):
    """An accepted exception: which policy, which resources, why, who approved it, until when."""

    id: str | None = None
    policy: str = Field(description="Policy id, or a glob such as 'transport.*'.")
    resources: ResourceSelector
    justification: str = Field(min_length=1)
    approver: str = Field(min_length=1)
    expires: date

    @field_validator("expires", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"expires must be a date as YYYY-MM-DD, got {value!r}") from exc
        if isinstance(value, date):
            return value
        raise ValueError(f"expires must be a date as YYYY-MM-DD, got {value!r}")


class WaiverFile(StrictModel):
    """A waiver file: ``waivers: [...]``."""

    waivers: list[Waiver]


class ExpectedStatus(StrictModel):
    """One expectation of a policy test case."""

    policy: str
    resource: str = Field(description="The resource's id or name.")
    status: Status | Literal["none"] = Field(description="'none' expects no finding (out of scope).")


class PolicyTestCase(StrictModel):
    """Input resources, parameters and the statuses the policies must give them."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    today: date | None = None
    waivers: list[Waiver] = Field(default_factory=list)
    resources: list[dict[str, Any]] = Field(min_length=1)
    expect: list[ExpectedStatus] = Field(min_length=1)


class PolicyTestFile(StrictModel):
    """A policy test file: ``tests: [...]``, with optional ``definitions:`` to hold YAML anchors."""

    definitions: dict[str, Any] = Field(default_factory=dict)
    tests: list[PolicyTestCase]
