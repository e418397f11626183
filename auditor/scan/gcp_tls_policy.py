"""`auditor scan gcp --tls-policy FILE`: each project's effective gcp.restrictTLSVersion org policy.

The file maps project ids to one of three accepted shapes, modelled below and told apart by their
keys: the short form ``{restricted_tls_versions: [...]}``, an orgpolicy v2 ``Policy`` (``gcloud
org-policies describe --effective``: ``name``/``spec``) or a resource-manager v1 ``OrgPolicy``
(``constraint``/``listPolicy``). Every error names file:line. A policy that is valid but cannot be
evaluated offline (inherited, conditional) is not an error: it leaves the project's minimum TLS
version unknown, with that problem as the reason.

The file is an attestation (the Org Policy API is the observation, `auditor.scan.gcp_org_policy`):
each entry is attested by the file (``attested_by``, default the file's path) on the file's
modification date (``attested_on``), with file:line as its reference, until ``expires`` (default
``attested_on`` + 365 days); an entry may set any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    RootModel,
    Tag,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from auditor.policy.yamlfile import load_yaml

TLS_CONSTRAINT = "gcp.restrictTLSVersion"
# How long a file entry vouches for its value unless it says `expires`.
ATTESTATION_VALIDITY = timedelta(days=365)

# https://cloud.google.com/assured-workloads/docs/restrict-tls-versions: a deny list that accepts
# only TLS_VERSION_1 and TLS_VERSION_1_1; everything not denied stays allowed.
_TLS_ORDER = ("1.0", "1.1", "1.2")
_TLS_VALUES = {
    "TLS_VERSION_1": "1.0",
    "TLS_VERSION_1_0": "1.0",
    "TLS1_0": "1.0",
    "TLS1.0": "1.0",
    "TLS_VERSION_1_1": "1.1",
    "TLS1_1": "1.1",
    "TLS1.1": "1.1",
}


@dataclass(frozen=True)
class TlsPolicyEntry:
    """The effective gcp.restrictTLSVersion of one project, as read from --tls-policy."""

    project: str
    denied: frozenset[str]
    raw: Any
    where: str
    problem: str | None = None
    file: str = ""
    line: int | None = None
    attested_by: str = "tls-policy file"
    attested_on: date = date.min
    expires: date = date.min

    @property
    def min_version(self) -> str | None:
        """Lowest TLS version the constraint leaves allowed (TLS 1.2+ cannot be denied by it)."""
        if self.problem is not None:
            return None
        return next(v for v in _TLS_ORDER if v not in self.denied)


def _tls_version(value: Any) -> str:
    """A denied value (``TLS_VERSION_1``, ``is:TLS1_1``, ...) as the version it denies."""
    version = _TLS_VALUES.get(str(value).strip().upper().removeprefix("IS:"))
    if version is None:
        raise PydanticCustomError(
            "tls_version",
            "unknown TLS version {value}: {constraint} denies only TLS_VERSION_1 (TLS 1.0) "
            "and TLS_VERSION_1_1 (TLS 1.1)",
            {"value": repr(value), "constraint": TLS_CONSTRAINT},
        )
    return version


TlsVersion = Annotated[str, BeforeValidator(_tls_version)]
Effect = tuple[frozenset[str], str | None]  # (denied versions, why it cannot be evaluated)


class _Attested(BaseModel):
    """Who attests an entry, since and until when (each defaults: see the module docstring)."""

    attested_by: str | None = None
    attested_on: date | None = None
    expires: date | None = None


class _Strict(_Attested):
    model_config = ConfigDict(extra="forbid")


class _Document(_Attested):
    # Org-policy documents as gcloud prints them carry more keys (etag, updateTime, dryRunSpec, ...)
    model_config = ConfigDict(extra="ignore")


class ShortForm(_Strict):
    """``{restricted_tls_versions: [TLS_VERSION_1, ...]}``."""

    restricted_tls_versions: list[TlsVersion] | None

    def effect(self, effective: bool = False) -> Effect:
        """The denied versions."""
        return frozenset(self.restricted_tls_versions or ()), None


class V2Values(_Document):
    # field names as the API spells them
    allowedValues: list[Any] | None = None
    deniedValues: list[TlsVersion] | None = None


class V2Rule(_Document):
    condition: dict[str, Any] | None = None
    denyAll: bool = False
    values: V2Values | None = None


class V2Spec(_Document):
    inheritFromParent: bool = False
    reset: bool = False
    rules: list[V2Rule] | None = None


class V2Policy(_Document):
    """An orgpolicy v2 Policy (``gcloud org-policies describe``)."""

    name: str | None = None
    spec: V2Spec | None = None

    @field_validator("name")
    @classmethod
    def _the_tls_constraint(cls, name: str | None) -> str | None:
        if name is not None and not name.endswith(f"/policies/{TLS_CONSTRAINT}"):
            raise PydanticCustomError(
                "constraint",
                "policy {name} is not {constraint}",
                {"name": repr(name), "constraint": TLS_CONSTRAINT},
            )
        return name

    def effect(self, effective: bool = False) -> Effect:
        """The denied versions, or why the policy cannot be evaluated offline.

        An `effective` policy (getEffectivePolicy's answer) already holds the rules it inherits, so
        its ``inheritFromParent`` needs no parent.
        """
        spec = self.spec or V2Spec()
        if spec.inheritFromParent and not effective:
            return frozenset(), "inheritFromParent is set: give the --effective policy"
        if spec.reset:
            return frozenset(), None
        denied: set[str] = set()
        for rule in spec.rules or ():
            if rule.condition:
                return frozenset(), "conditional rules cannot be evaluated offline"
            if rule.denyAll:
                return frozenset(), "denyAll is not a valid deny list for this constraint"
            values = rule.values or V2Values()
            if values.allowedValues:
                return frozenset(), "allowedValues are not supported by this constraint"
            denied.update(values.deniedValues or ())
        return frozenset(denied), None


class V1ListPolicy(_Document):
    inheritFromParent: bool = False
    allValues: str | None = None
    allowedValues: list[Any] | None = None
    deniedValues: list[TlsVersion] | None = None


class V1Policy(_Document):
    """A resource-manager v1 OrgPolicy."""

    constraint: str = f"constraints/{TLS_CONSTRAINT}"
    listPolicy: V1ListPolicy | None = None
    restoreDefault: Any = None  # its presence restores the default (nothing denied)

    @field_validator("constraint")
    @classmethod
    def _the_tls_constraint(cls, constraint: str) -> str:
        if constraint.removeprefix("constraints/") != TLS_CONSTRAINT:
            raise PydanticCustomError(
                "constraint",
                "constraint {name} is not {constraint}",
                {"name": repr(constraint), "constraint": TLS_CONSTRAINT},
            )
        return constraint

    def effect(self, effective: bool = False) -> Effect:
        """The denied versions, or why the policy cannot be evaluated offline."""
        if "restoreDefault" in self.model_fields_set:
            return frozenset(), None
        listed = self.listPolicy or V1ListPolicy()
        if listed.inheritFromParent:
            return frozenset(), "inheritFromParent is set: give the effective policy"
        if listed.allValues == "DENY" or listed.allowedValues:
            return frozenset(), "only a deny list is valid for this constraint"
        return frozenset(listed.deniedValues or ()), None


def _shape(raw: Any) -> str | None:
    if isinstance(raw, dict):
        if "restricted_tls_versions" in raw:
            return "<short>"
        if "spec" in raw or "name" in raw:
            return "<v2>"
        if "listPolicy" in raw or "constraint" in raw:
            return "<v1>"
    return None


ProjectPolicy = Annotated[
    Annotated[ShortForm, Tag("<short>")]
    | Annotated[V2Policy, Tag("<v2>")]
    | Annotated[V1Policy, Tag("<v1>")],
    Discriminator(
        _shape,
        custom_error_type="tls_policy",
        custom_error_message=(
            "expected 'restricted_tls_versions', or an org-policy document "
            "with 'spec' (v2) or 'listPolicy' (v1)"
        ),
    ),
]


class TlsPolicyFile(RootModel[dict[str, ProjectPolicy]]):
    """A --tls-policy file: project id -> its effective gcp.restrictTLSVersion policy."""

    root: dict[str, ProjectPolicy]


def load_tls_policy(path: Path) -> dict[str, TlsPolicyEntry]:
    """Read a --tls-policy file: a mapping of project id to its effective gcp.restrictTLSVersion."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise doc.error((), "a TLS policy file maps project ids to their gcp.restrictTLSVersion policy")
    raw = {str(project): entry for project, entry in doc.data.items()}  # project numbers are ids too
    try:
        parsed = TlsPolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise doc.validation_error(exc) from exc
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC).date()
    entries = {}
    for project, policy in parsed.root.items():
        denied, problem = policy.effect()
        attested_on = policy.attested_on or modified
        expires = policy.expires or attested_on + ATTESTATION_VALIDITY
        if expires < attested_on:
            raise doc.error(
                (project, "expires"), f"{project}.expires {expires} is before attested_on {attested_on}"
            )
        entries[project] = TlsPolicyEntry(
            project,
            denied,
            raw[project],
            doc.where((project,)),
            problem,
            file=str(path),
            line=doc.line_of((project,)),
            attested_by=policy.attested_by or str(path),
            attested_on=attested_on,
            expires=expires,
        )
    return entries
