"""The policy language, defined once as pydantic models: policies, conditions, waivers, tests.

See docs/policy-language.md for the user-facing description.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from auditor.findings import Severity, Status
from auditor.model import PROVIDERS, RESOURCE_KINDS, Provider, ResourceKind

POLICY_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)+$"

Operator = Literal[
    "equals",
    "not_equals",
    "in",
    "not_in",
    "subset_of",
    "contains",
    "exists",
    "matches",
    "gte",
    "gt",
    "lte",
    "lt",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Leaf(_Strict):
    """A test of one attribute: ``{attribute: location.regions, op: subset_of, value: {zone: eu}}``.

    `value` is a literal, ``{param: NAME}``, or ``{zone: NAME}`` / ``{zone: {param: NAME}}``.
    """

    attribute: str
    op: Operator
    value: Any = None


class AllOf(_Strict):
    """True when every member is true."""

    all: list[Condition] = Field(min_length=1)


class AnyOf(_Strict):
    """True when at least one member is true."""

    any: list[Condition] = Field(min_length=1)


class NotOf(_Strict):
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

ParameterType = Literal["string", "zone", "list", "integer", "boolean"]


class Parameter(_Strict):
    """A value a user can set with ``--param NAME=VALUE`` (lists: comma-separated)."""

    type: ParameterType = "string"
    default: Any = None
    description: str = ""


class Scope(_Strict):
    """Which resources a policy applies to; resources outside it get no finding."""

    providers: list[Provider] = Field(default_factory=lambda: list(PROVIDERS))
    kinds: list[ResourceKind] = Field(default_factory=lambda: list(RESOURCE_KINDS))
    where: Condition | None = None


class Policy(_Strict):
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


class PolicyFile(_Strict):
    """A policy file: ``policies: [...]``."""

    policies: list[Policy]


class ResourceSelector(_Strict):
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


class Waiver(_Strict):
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


class WaiverFile(_Strict):
    """A waiver file: ``waivers: [...]``."""

    waivers: list[Waiver]


class ExpectedStatus(_Strict):
    """One expectation of a policy test case."""

    policy: str
    resource: str = Field(description="The resource's id or name.")
    status: Status | Literal["none"] = Field(description="'none' expects no finding (out of scope).")


class PolicyTestCase(_Strict):
    """Input resources, parameters and the statuses the policies must give them."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    today: date | None = None
    waivers: list[Waiver] = Field(default_factory=list)
    resources: list[dict[str, Any]] = Field(min_length=1)
    expect: list[ExpectedStatus] = Field(min_length=1)


class PolicyTestFile(_Strict):
    """A policy test file: ``tests: [...]``, with optional ``definitions:`` to hold YAML anchors."""

    definitions: dict[str, Any] = Field(default_factory=dict)
    tests: list[PolicyTestCase]
