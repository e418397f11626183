"""Evaluate compiled policies over a stream of inventory records, apply waivers, keep run totals.

scan -> inventory -> **evaluate** -> findings -> report / gate.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from auditor.errors import InputError, raise_all
from auditor.findings import (
    OWNER_TAG,
    AppliedWaiver,
    Finding,
    Observation,
    ResourceRef,
    Severity,
    Status,
    TrainingRef,
    Truth,
    unknown_json,
)
from auditor.inventory import InventoryRecord
from auditor.model import INACTIVE_STATES, KIND_GROUPS, CoverageGap, StorageResource, normalize_tag_key
from auditor.policy.compiler import Getter, PolicyCompiler, Predicate, attribute_getter
from auditor.policy.language import Policy, as_written
from auditor.policy.loader import LoadedPolicy, LoadedWaiver, policy_leaves
from auditor.policy.zones import ZoneCatalog

_STATUS_OF_STATE = {Truth.TRUE: Status.PASS, Truth.FALSE: Status.FAIL, Truth.UNKNOWN: Status.ERROR}
_DECISION_MEMORY = 50_000  # remembered outcomes per policy; cleared when full, so memory stays flat
Decision = tuple[Truth | None, tuple[Observation, ...], tuple[str, ...]]


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


@dataclass
class CompiledPolicy:
    """A policy ready to run: its predicates, resolved parameters and the attributes it reads."""

    loaded: LoadedPolicy
    parameters: dict[str, Any]
    condition: Predicate
    scope_where: Predicate | None
    attributes: frozenset[str]
    expected: str
    _relevant_cache: dict[tuple[str, ...], bool] = field(default_factory=dict, repr=False)
    _scope_pairs: frozenset[tuple[str, str]] | None = field(default=None, repr=False)
    _key_getters: tuple[Getter, ...] = field(default=(), repr=False)
    _decided: dict[tuple[Any, ...], Decision] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._key_getters = tuple(attribute_getter(path) for path in sorted(self.attributes))

    def decide(self, resource: StorageResource) -> Decision:
        """Scope and condition on one resource: (state, observations, notes), state None if out of scope.

        The outcome depends only on the provider and the values the policy reads, and estates
        repeat configurations, so outcomes are remembered by those values (bounded).
        """
        key = self._decision_key(resource)
        if key is not None:
            known = self._decided.get(key)
            if known is not None:
                return known
        decision = self.evaluate_fresh(resource)
        if key is not None:
            if len(self._decided) >= _DECISION_MEMORY:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _decision_key(self, resource: StorageResource) -> tuple[Any, ...] | None:
        # Per attribute: the value the policy sees (for a partial unknown, its known part) and
        # the unknown entry spelled out with its partial kind, so a partial unknown never shares
        # an outcome with a whole unknown, a known value, or a partial with other known members.
        parts: list[Any] = [resource.provider]
        for get in self._key_getters:
            value, unknown = get(resource)
            parts.append(tuple(value) if isinstance(value, list) else value)
            parts.append(None if unknown is None else (unknown.code, unknown.reason, unknown.partial))
        key = tuple(parts)
        try:
            hash(key)
        except TypeError:  # e.g. a whole mapping read with `exists`: evaluate without memory
            return None
        return key

    def evaluate_fresh(self, resource: StorageResource) -> Decision:
        """`decide` without remembered outcomes."""
        if self.scope_where is not None:
            scope_state, scope_obs = self.scope_where(resource)
            if scope_state is Truth.FALSE:
                return None, (), ()
            if scope_state is Truth.UNKNOWN:
                return Truth.UNKNOWN, scope_obs, ("whether the policy applies could not be decided",)
        state, observations = self.condition(resource)
        return state, observations, ()

    @property
    def policy(self) -> Policy:
        """The policy definition."""
        return self.loaded.policy

    def applies_to(self, resource: StorageResource) -> bool:
        """Provider, kind and state are in scope (the `where` condition is evaluated separately).

        A record in an inactive state (an archived project) is in scope only where the policy's
        scope names that state: it serves no requests, so it gets no finding by default.
        """
        if resource.state in INACTIVE_STATES and resource.state not in self.policy.scope.states:
            return False
        return (resource.provider, resource.kind) in self.scope_pairs

    @property
    def scope_pairs(self) -> frozenset[tuple[str, str]]:
        """The (provider, kind) pairs in scope."""
        if self._scope_pairs is None:
            scope = self.policy.scope
            self._scope_pairs = frozenset((p, k) for p in scope.providers for k in scope.kinds)
        return self._scope_pairs

    def relevant_evidence(self, evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The evidence items behind the attributes this policy reads."""
        relevant = self._relevant_cache
        selected = []
        for item in evidence:
            key = tuple(item["attributes"])
            hit = relevant.get(key)
            if hit is None:
                hit = relevant[key] = any(_overlaps(a, p) for a in key for p in self.attributes)
            if hit:
                selected.append(item)
        return selected


def _default(entry: LoadedPolicy, name: str) -> Any:
    """A parameter's default in its type (the loader checked it; a zone's name is checked later)."""
    spec = entry.policy.parameters[name]
    if spec.default is None:
        return None
    try:
        return spec.value_of(name, spec.default)
    except ValueError as exc:
        raise entry.doc.error((*entry.loc, "parameters", name, "default"), f"default: {exc}") from exc


def parse_param_args(args: Iterable[str]) -> dict[str, str]:
    """``k=v`` strings from the command line as a mapping."""
    params: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {arg}", "expected NAME=VALUE")
        params[name.strip()] = value.strip()
    return params


def command_line_param(name: str) -> str:
    """Where a parameter given as ``--param NAME=VALUE`` is named in errors."""
    return f"--param {name}"


def param_errors(
    loaded: list[LoadedPolicy],
    catalog: ZoneCatalog,
    params: dict[str, Any],
    where: Callable[[str], str] = command_line_param,
) -> list[InputError]:
    """Every problem of `params`: names no loaded policy declares, values that do not fit a policy's
    parameter type (one error per parameter), each located by `where`."""
    declared: dict[str, list[LoadedPolicy]] = {}
    for entry in loaded:
        for name in entry.policy.parameters:
            declared.setdefault(name, []).append(entry)
    errors: list[InputError] = []
    for name, raw in params.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            errors.append(
                InputError(where(name), f"no loaded policy declares parameter '{name}' (declared: {known})")
            )
            continue
        for entry in declared[name]:
            try:
                entry.policy.parameters[name].value_of(name, raw, catalog.zones)
            except ValueError as exc:
                located = where(name)
                if located.startswith("--param") and isinstance(raw, str):
                    located = f"{located}={raw}"
                errors.append(InputError(located, str(exc)))
                break
    return errors


def compile_policies(
    loaded: list[LoadedPolicy],
    catalog: ZoneCatalog,
    params: dict[str, Any],
    *,
    where: Callable[[str], str] = command_line_param,
) -> list[CompiledPolicy]:
    """Compile every policy once with `params` (strings as given to ``--param``, or typed values
    from a policy test); every bad parameter is reported at once (InputErrors), located by `where`."""
    raise_all(param_errors(loaded, catalog, params, where))
    compiler = PolicyCompiler(catalog)
    compiled: list[CompiledPolicy] = []
    for entry in loaded:
        policy = entry.policy
        values: dict[str, Any] = {
            name: spec.value_of(name, params[name], catalog.zones)
            if name in params
            else _default(entry, name)
            for name, spec in policy.parameters.items()
        }
        for name, spec in policy.parameters.items():
            if spec.type == "zone" and values[name] not in catalog.zones:
                raise entry.doc.error(
                    (*entry.loc, "parameters", name), f"unknown zone {values[name]!r} for parameter '{name}'"
                )
        condition = compiler.compile(policy.condition, entry, (*entry.loc, "condition"), values)
        scope_where = None
        if policy.scope.where is not None:
            scope_where = compiler.compile(policy.scope.where, entry, (*entry.loc, "scope", "where"), values)
        leaves = list(policy_leaves(entry))
        attributes = frozenset(leaf.attribute for leaf, _ in leaves)
        expected = policy.expected or " and ".join(
            f"{leaf.attribute} {leaf.op} {as_written(leaf.value)!r}" for leaf, _ in leaves
        )
        compiled.append(CompiledPolicy(entry, values, condition, scope_where, attributes, expected))
    return compiled


@dataclass
class WaiverUse:
    """How often a waiver matched, and whether it was expired."""

    waiver: LoadedWaiver
    applied: int = 0
    expired_matches: int = 0


class WaiverBook:
    """Matches findings to waivers. An expired waiver is reported on the finding but does not waive."""

    def __init__(self, waivers: list[LoadedWaiver], today: date) -> None:
        self.today = today
        self.uses = [WaiverUse(w) for w in waivers]

    def _matches(self, loaded: LoadedWaiver, policy_id: str, resource: StorageResource) -> bool:
        waiver = loaded.waiver
        if not fnmatch.fnmatchcase(policy_id, waiver.policy):
            return False
        selector = waiver.resources
        if selector.providers and resource.provider not in selector.providers:
            return False
        if selector.accounts and not any(fnmatch.fnmatchcase(resource.account, a) for a in selector.accounts):
            return False
        if selector.ids and not any(fnmatch.fnmatchcase(resource.id, i) for i in selector.ids):
            return False
        if selector.names and not any(fnmatch.fnmatchcase(resource.name, n) for n in selector.names):
            return False
        if selector.tags:
            tags = resource.normalized_tags or {}
            for key, value in selector.tags.items():
                if tags.get(normalize_tag_key(key)) != value:
                    return False
        return True

    def find(self, policy_id: str, resource: StorageResource) -> tuple[WaiverUse, bool] | None:
        """The first active matching waiver, else the first expired one; with its expired flag."""
        expired: WaiverUse | None = None
        for use in self.uses:
            if self._matches(use.waiver, policy_id, resource):
                if use.waiver.waiver.expires >= self.today:
                    return use, False
                expired = expired or use
        return (expired, True) if expired is not None else None


@dataclass
class RunTotals:
    """Counts and coverage accumulated while evaluating."""

    resources: int = 0
    resources_by_provider: Counter[str] = field(default_factory=Counter)
    accounts: set[tuple[str, str]] = field(default_factory=set)
    regions: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    by_severity: dict[str, Counter[str]] = field(default_factory=dict)
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)
    unknown_attributes: dict[str, Counter[str]] = field(default_factory=dict)
    gaps: list[CoverageGap] = field(default_factory=list)
    gate_failures: int = 0
    gate_errors: int = 0

    def count(self, finding: Finding, threshold: Severity) -> None:
        """Add one finding to the totals and to the gate."""
        status = finding.status.value
        self.status[status] += 1
        by_severity = self.by_severity.get(finding.severity.value)
        if by_severity is None:
            by_severity = self.by_severity[finding.severity.value] = Counter()
        by_severity[status] += 1
        by_policy = self.by_policy.get(finding.policy_id)
        if by_policy is None:
            by_policy = self.by_policy[finding.policy_id] = Counter()
        by_policy[status] += 1
        if finding.status is not Status.PASS and finding.severity.at_least(threshold):
            if finding.status is Status.FAIL:
                self.gate_failures += 1
            elif finding.status is Status.ERROR:
                self.gate_errors += 1


def resource_ref(resource: StorageResource, regions: list[str]) -> ResourceRef:
    """The finding's account of `resource`: its identity and at-rest `regions`; for kinds that carry
    them, where requests are processed and whether the provider may train; the attested paths."""
    groups = KIND_GROUPS[resource.kind]
    processing: list[str] | dict[str, Any] | None = None
    if "processing" in groups:
        unknown = resource.unknown_reason("processing.regions")
        recorded = list(resource.processing.regions) if resource.processing is not None else []
        processing = recorded if unknown is None else unknown_json(unknown, recorded)
    training: TrainingRef | None = None
    if "training" in groups:
        held = resource.training
        unknown = resource.unknown_reason("training.provider_may_train")
        may_train = held.provider_may_train if held is not None else None
        training = TrainingRef(
            provider_may_train=may_train if unknown is None else unknown_json(unknown, may_train),
            decided_by=held.decided_by if held is not None else None,
            source=held.source if held is not None else None,
            as_of=held.as_of.isoformat() if held is not None and held.as_of is not None else None,
        )
    attested = (
        tuple(
            path
            for path in dict.fromkeys(
                path for item in resource.evidence if item.attestation is not None for path in item.attributes
            )
            if resource.unknown_reason(path) is None  # an expired attestation no longer vouches
        )
        if resource.evidence
        else ()
    )
    return ResourceRef(
        provider=resource.provider,
        account=resource.account,
        id=resource.id,
        name=resource.name,
        regions=regions,
        kind=resource.kind,
        storage_account=resource.storage_account,
        processing_regions=processing,
        training=training,
        attested=attested,
        owner=(resource.normalized_tags or {}).get(OWNER_TAG),
    )


class Evaluator:
    """Runs compiled policies over inventory records, yielding findings and keeping totals."""

    def __init__(
        self,
        policies: list[CompiledPolicy],
        waivers: WaiverBook | None = None,
        fail_on: Severity = Severity.INFO,
        *,
        remember_decisions: bool = True,
    ) -> None:
        self.policies = policies
        self.waivers = waivers
        self.fail_on = fail_on
        self.remember_decisions = remember_decisions
        self.totals = RunTotals()

    def run(self, records: Iterable[InventoryRecord]) -> Iterator[Finding]:
        """Evaluate every record; coverage gaps are counted, resources produce findings."""
        for record in records:
            if isinstance(record, CoverageGap):
                self.totals.gaps.append(record)
                continue
            yield from self.evaluate(record)

    def evaluate(self, resource: StorageResource) -> Iterator[Finding]:
        """All findings for one resource."""
        totals = self.totals
        totals.resources += 1
        totals.resources_by_provider[resource.provider] += 1
        totals.accounts.add((resource.provider, resource.account))
        regions = list(resource.location.regions) if resource.location is not None else []
        if resource.location is not None and resource.unknown_reason("location.regions") is None:
            for region in regions:
                totals.regions[f"{resource.provider}:{region}"] += 1
        for path, unknown in resource.unknown.items():
            totals.unknown_attributes.setdefault(path, Counter())[unknown.code.value] += 1
        ref = resource_ref(resource, regions)
        evidence: list[dict[str, Any]] | None = None
        for compiled in self.policies:
            if not compiled.applies_to(resource):
                continue
            if self.remember_decisions:
                state, observations, notes = compiled.decide(resource)
            else:
                state, observations, notes = compiled.evaluate_fresh(resource)
            if state is None:
                continue
            if evidence is None:
                evidence = resource.evidence_json()
            finding = self._finding(compiled, resource, ref, state, observations, evidence, notes)
            totals.count(finding, self.fail_on)
            yield finding

    def _finding(
        self,
        compiled: CompiledPolicy,
        resource: StorageResource,
        ref: ResourceRef,
        state: Truth,
        observations: tuple[Observation, ...],
        evidence: list[dict[str, Any]],
        notes: tuple[str, ...],
    ) -> Finding:
        policy = compiled.policy
        underlying = _STATUS_OF_STATE[state]
        status = underlying
        applied: AppliedWaiver | None = None
        # A waiver accepts a known violation; it never turns an undecidable (error) finding into
        # an accepted one: unknown is never compliant.
        if underlying is Status.FAIL and self.waivers is not None:
            match = self.waivers.find(policy.id, resource)
            if match is not None:
                use, expired = match
                waiver = use.waiver.waiver
                applied = AppliedWaiver(
                    id=use.waiver.key,
                    justification=waiver.justification,
                    approver=waiver.approver,
                    expires=waiver.expires.isoformat(),
                    expired=expired,
                    source=use.waiver.where,
                )
                if expired:
                    use.expired_matches += 1
                else:
                    use.applied += 1
                    status = Status.WAIVED
        return Finding(
            policy_id=policy.id,
            status=status,
            severity=policy.severity,
            resource=ref,
            expected=compiled.expected,
            controls=policy.controls,
            evidence=compiled.relevant_evidence(evidence),
            underlying_status=underlying,
            observations=observations,
            waiver=applied,
            notes=list(notes),
        )


def gate_exit_code(totals: RunTotals, allow_incomplete: bool) -> int:
    """0 clean, 1 violations at/above the threshold, 3 incomplete (errors or coverage gaps)."""
    if totals.gate_failures:
        return 1
    if (totals.gate_errors or totals.gaps) and not allow_incomplete:
        return 3
    return 0


@dataclass(frozen=True)
class PolicySelection:
    """Which loaded policies a run evaluates: `--policy`, `--skip-policy`, `--min-severity`.

    `labels` name the three inputs in errors (the command-line options, or auditor.yaml's keys).
    """

    policy: tuple[str, ...] = ()
    skip_policy: tuple[str, ...] = ()
    min_severity: Severity | None = None
    labels: tuple[str, str, str] = ("--policy", "--skip-policy", "--min-severity")

    def __bool__(self) -> bool:
        return bool(self.policy or self.skip_policy or self.min_severity is not None)


def select_policies(compiled: list[CompiledPolicy], selection: PolicySelection) -> list[CompiledPolicy]:
    """The policies `selection` keeps, in load order; all of `compiled` were loaded and validated.

    A glob that matches no loaded policy, or a selection that keeps nothing, is an input error.
    """
    if not selection:
        return compiled
    ids = [c.policy.id for c in compiled]
    for label, globs in zip(selection.labels, (selection.policy, selection.skip_policy), strict=False):
        for glob in globs:
            if not any(fnmatch.fnmatchcase(policy_id, glob) for policy_id in ids):
                raise InputError(f"{label} {glob}", f"matches no loaded policy (loaded: {', '.join(ids)})")
    kept = [
        c
        for c in compiled
        if (not selection.policy or any(fnmatch.fnmatchcase(c.policy.id, g) for g in selection.policy))
        and not any(fnmatch.fnmatchcase(c.policy.id, g) for g in selection.skip_policy)
        and (selection.min_severity is None or c.policy.severity.at_least(selection.min_severity))
    ]
    if not kept:
        given = [
            f"{label} {value}"
            for label, values in zip(
                selection.labels,
                (selection.policy, selection.skip_policy, (selection.min_severity,)),
                strict=True,
            )
            for value in values
            if value is not None
        ]
        raise InputError("policy selection", f"no policy selected ({' '.join(given)})")
    return kept
