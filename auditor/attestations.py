"""Attestations: values no API exposes, supplied by a person who vouches for them, until a date.

An attestation file (``auditor scan <source> --attestations FILE``, ``attestations:`` in
auditor.yaml) lists entries, each naming an attribute path, its value, the resources it covers
(source, account glob, resource glob, kinds), who attests it, when, on what basis and until when:

.. code-block:: yaml

    attestations:
      - id: ATT-OPENAI-SHARING
        attribute: training.provider_may_train
        value: false
        scope: {source: openai, accounts: ["org-*"], kinds: [ai-settings]}
        attested_by: dpo@acme.example
        attested_on: 2026-10-01
        reference: "DPA-2026-014 s.4; data controls screenshot in TICKET-812"
        expires: 2027-03-31

An attestation fills an attribute the scan could not observe (unknown for any reason, or not
collected); it never overrides an observed value. The record keeps an evidence item of kind
attestation (`Evidence.attestation`, with the file and line), and `check` treats an attestation
that expired before the check date as unknown (`expired`), so a lapsed attestation is an `error`,
never a pass.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator

from auditor.atomicfile import atomic_output
from auditor.inventory import dump_record, read_inventory
from auditor.model import (
    GROUP_MODELS,
    KIND_GROUPS,
    RESOURCE_KINDS,
    AttestationRecord,
    Evidence,
    ResourceKind,
    SourceLocation,
    StorageResource,
    Unknown,
    UnknownCode,
    attribute_kind,
)
from auditor.policy.yamlfile import YamlDocument, load_yaml
from auditor.sources import source_names
from auditor.strict import StrictModel

ATTESTATION_CALL = "attestation"

# Leaves that say what decided an attested value: set with it (`{reference}` is the entry's).
DECIDED_WITH: dict[str, dict[str, str]] = {
    "training.provider_may_train": {"training.decided_by": "attestation", "training.setting": "{reference}"},
    "transport.min_tls_version": {"transport.min_tls_enforced_by": "attestation:{reference}"},
    "transport.plaintext_refused": {"transport.plaintext_refused_by": "attestation:{reference}"},
}


def attestable_paths() -> frozenset[str]:
    """Every attribute path an attestation may name: a leaf of an attribute group."""
    return frozenset(
        f"{group}.{leaf}" for group, model in GROUP_MODELS.items() for leaf in model.model_fields
    )


class AttestationScope(StrictModel):
    """Which records an attestation covers: a source, and globs on accounts and resources."""

    source: str = Field(description="The source whose records it covers (openai, aws, gcp, azure, ...).")
    accounts: list[str] = Field(
        default_factory=lambda: ["*"], description="Account, organization, project or subscription globs."
    )
    resources: list[str] = Field(default_factory=lambda: ["*"], description="Globs on resource name or id.")
    kinds: list[ResourceKind] | None = Field(
        default=None, description="Resource kinds (default: every kind that carries the attribute)."
    )

    @field_validator("source")
    @classmethod
    def _registered(cls, value: str) -> str:
        known = source_names()
        if value not in known:
            raise ValueError(f"unknown source '{value}' (expected one of {', '.join(known)})")
        return value


class Attestation(StrictModel):
    """One attested value (see the module docstring)."""

    id: str | None = None
    attribute: str
    value: Any
    scope: AttestationScope
    attested_by: str = Field(min_length=1)
    attested_on: date
    reference: str = Field(min_length=1, description="Ticket, contract clause or document it rests on.")
    expires: date

    @field_validator("attribute")
    @classmethod
    def _attestable(cls, value: str) -> str:
        if value not in attestable_paths():
            raise ValueError(
                f"'{value}' is not an attribute an attestation can set (a leaf such as "
                "training.provider_may_train or transport.min_tls_version)"
            )
        return value

    @field_validator("attested_on", "expires", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")

    @field_validator("value")
    @classmethod
    def _fits_attribute(cls, value: Any, info: ValidationInfo) -> Any:
        attribute = info.data.get("attribute")
        if attribute is None:
            return value  # the attribute itself is wrong: reported on its own line
        group, _, leaf = attribute.partition(".")
        annotation: Any = GROUP_MODELS[group].model_fields[leaf].annotation
        try:
            value = TypeAdapter(annotation).validate_python(value, strict=True)
        except ValidationError as exc:
            raise ValueError(f"{value!r} does not fit {attribute}: {_first(exc)}") from None
        if value is None:
            raise ValueError("an attestation states a value; null is not one")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Attestation:
        group = self.attribute.partition(".")[0]
        kinds = self.scope.kinds if self.scope.kinds is not None else self.carrying_kinds
        wrong = [kind for kind in kinds if group not in KIND_GROUPS[kind]]
        if wrong:
            raise ValueError(f"scope.kinds: {', '.join(wrong)} do not carry '{group}'")
        if self.expires < self.attested_on:
            raise ValueError(f"expires {self.expires} is before attested_on {self.attested_on}")
        return self

    @property
    def carrying_kinds(self) -> list[ResourceKind]:
        """The kinds that carry the attribute's group."""
        group = self.attribute.partition(".")[0]
        return [kind for kind in RESOURCE_KINDS if group in KIND_GROUPS[kind]]

    def covers(self, record: StorageResource) -> bool:
        """True if `record` is inside this attestation's scope."""
        scope = self.scope
        kinds = scope.kinds if scope.kinds is not None else self.carrying_kinds
        return (
            record.provider == scope.source
            and record.kind in kinds
            and any(fnmatch.fnmatchcase(record.account, glob) for glob in scope.accounts)
            and any(
                fnmatch.fnmatchcase(record.name, glob) or fnmatch.fnmatchcase(record.id, glob)
                for glob in scope.resources
            )
        )


def _first(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"])


class AttestationFile(StrictModel):
    """An attestation file: a mapping with an `attestations:` list."""

    attestations: list[Attestation]


@dataclass(frozen=True)
class LoadedAttestation:
    """An attestation with the file and line it was read from."""

    attestation: Attestation
    file: str
    line: int

    @cached_property
    def record(self) -> AttestationRecord:
        """The evidence's account of who attested what, and until when."""
        entry = self.attestation
        return AttestationRecord(
            id=entry.id,
            attested_by=entry.attested_by,
            attested_on=entry.attested_on,
            reference=entry.reference,
            expires=entry.expires,
        )


def load_attestations(paths: Iterable[Path]) -> list[LoadedAttestation]:
    """Every attestation of the files, in order; any error is an InputError at file:line."""
    loaded: list[LoadedAttestation] = []
    for path in paths:
        doc = load_yaml(path)
        if not isinstance(doc.data, dict) or "attestations" not in doc.data:
            raise doc.error((), "an attestation file is a mapping with an 'attestations:' list")
        try:
            parsed = AttestationFile.model_validate(doc.data)
        except ValidationError as exc:
            raise doc.validation_error(exc) from exc
        loaded.extend(_located(doc, parsed))
    return loaded


def _located(doc: YamlDocument, parsed: AttestationFile) -> Iterator[LoadedAttestation]:
    for index, entry in enumerate(parsed.attestations):
        yield LoadedAttestation(entry, str(doc.path), doc.line_of(("attestations", index)))


def attest(record: StorageResource, attestations: Iterable[LoadedAttestation], at: datetime) -> int:
    """Fill the record's unobserved attributes from the attestations covering it (first wins).

    Returns how many values were attested. The record is changed in place.
    """
    applied = 0
    for loaded in attestations:
        entry = loaded.attestation
        if record.unknown_reason(entry.attribute) is None or not entry.covers(record):
            continue  # observed (or already attested) values win
        _set(record, loaded, at)
        applied += 1
    return applied


def _set(record: StorageResource, loaded: LoadedAttestation, at: datetime) -> None:
    entry = loaded.attestation
    group, _, leaf = entry.attribute.partition(".")
    model = GROUP_MODELS[group]
    current = getattr(record, group)
    unknown = dict(record.unknown)
    group_reason = unknown.pop(group, None)
    if current is None:
        group_reason = group_reason or Unknown(
            code=UnknownCode.NOT_COLLECTED,
            reason=f"'{group}' was not collected; only attested values are known",
        )
        values = {
            name: _empty(group, name) for name, field in model.model_fields.items() if field.is_required()
        }
    else:
        values = current.model_dump()
    extra = {
        path: text.format(reference=entry.reference)
        for path, text in DECIDED_WITH.get(entry.attribute, {}).items()
    }
    settled = {entry.attribute, *extra}
    if group_reason is not None:  # the group's reason now holds for each leaf not attested
        for name in model.model_fields:
            path = f"{group}.{name}"
            if path not in settled and model.model_fields[name].is_required():
                unknown.setdefault(path, group_reason)
    values[leaf] = entry.value
    for path, value in extra.items():
        values[path.partition(".")[2]] = value
    for path in settled:
        unknown.pop(path, None)
    setattr(record, group, model.model_validate(values))
    record.unknown = unknown
    record.evidence.append(
        Evidence(
            call=ATTESTATION_CALL,
            at=at,
            attributes=sorted(settled),
            request={"file": loaded.file, "id": entry.id},
            response={"value": entry.value},
            location=SourceLocation(file=loaded.file, line=loaded.line),
            attestation=loaded.record,
        )
    )
    record.keep_evidence_json([item.model_dump(mode="json") for item in record.evidence])


def _empty(group: str, leaf: str) -> Any:
    """The placeholder of a required leaf of a group created for an attestation (listed as unknown)."""
    return [] if attribute_kind(f"{group}.{leaf}") == "list" else None


def attest_inventory(path: Path, attestations: list[LoadedAttestation], at: datetime | None = None) -> int:
    """Rewrite the inventory at `path` (atomically) with the attestations applied; returns the count."""
    when = at or datetime.now(UTC)
    applied = 0
    with atomic_output(path) as handle:
        for record in read_inventory(path):
            if isinstance(record, StorageResource):
                applied += attest(record, attestations, when)
            handle.write(dump_record(record))
    return applied


def expire_attestations(record: StorageResource, today: date) -> None:
    """Make every value attested by an attestation that expired before `today` unknown (`expired`)."""
    for item in record.evidence:
        held = item.attestation
        if held is None or held.expires >= today:
            continue
        reason = Unknown(
            code=UnknownCode.EXPIRED,
            reason=f"attestation {held.id or held.reference} by {held.attested_by} expired on {held.expires}",
        )
        for path in item.attributes:
            record.unknown[path] = reason


def with_expired_attestations(records: Iterable[Any], today: date) -> Iterator[Any]:
    """`records` with `expire_attestations` applied to each resource (for `check`)."""
    for record in records:
        if isinstance(record, StorageResource) and record.evidence:
            expire_attestations(record, today)
        yield record
