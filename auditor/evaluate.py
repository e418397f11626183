"""Evaluate compiled policies over a stream of inventory records, apply waivers, keep run totals.

scan -> inventory -> **evaluate** -> findings -> report / gate.
"""

from __future__ import annotations

import fnmatch
import itertools
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

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
    shared_json,
    unknown_json,
)
from auditor.inventory import InventoryRecord
from auditor.model import (
    GROUPS,
    INACTIVE_STATES,
    KIND_GROUPS,
    CoverageGap,
    StorageResource,
    attribute_kind,
    normalize_tag_key,
)
from auditor.policy.compiler import Getter, PolicyCompiler, Predicate, attribute_getter
from auditor.policy.language import Policy, as_written
from auditor.policy.loader import LoadedPolicy, LoadedWaiver, policy_leaves
from auditor.policy.zones import ZoneCatalog

_STATUS_OF_STATE = {Truth.TRUE: Status.PASS, Truth.FALSE: Status.FAIL, Truth.UNKNOWN: Status.ERROR}
_DECISION_MEMORY = 8_192  # remembered outcomes (with their findings JSON) per policy; cleared when full
_GROUP_MEMORY = 2_048  # remembered outcomes per scope group (shared decisions and frames); flat too
_FRAMES_PER_DECISION = 8  # findings frames kept per remembered decision (one per evidence layout)
_SIGNATURE_MEMORY = 10_000  # remembered evidence layouts (which items each policy selects); flat too
Decision = tuple[Truth | None, tuple[Observation, ...], tuple[str, ...]]
# The findings JSON around the resource and the evidence: (head, middle, tail), see `shared_json`.
SharedJson = tuple[bytes, bytes, bytes]
_PLACEHOLDER = ResourceRef(provider="", account="", id="", name="", regions=[])


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def values_key(getters: tuple[Getter, ...], resource: StorageResource) -> tuple[Any, ...] | None:
    """What policies reading the attributes of `getters` see of `resource`, as a hashable key (None
    when a value cannot be hashed, e.g. a whole mapping read with `exists`): its provider and, per
    attribute, the value (for a partial unknown, its known part) and the unknown entry spelled out
    with its partial kind, so a partial unknown never shares an outcome with a whole unknown, a
    known value, or a partial with other known members."""
    key = (resource.provider, *_read_with(getters, resource))
    try:
        hash(key)
    except TypeError:
        return None
    return key


# Starts the keys `ValuesKey` reads in one pass, so they never equal a key of `values_key`.
_PLAIN_KEY = object()


class ValuesKey:
    """`values_key` for a set of attribute paths, faster: the values of a resource whose groups were
    collected are read in one pass, and only the paths an `unknown` entry touches (the path or a
    parent) through their getters, into a key of its own shape (equal keys, same values seen);
    any other resource is read as `values_key` reads it."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = tuple(sorted(set(paths)))
        self.getters = tuple(attribute_getter(path) for path in self.paths)
        plain = [path for path in self.paths if not path.startswith("tags.")]
        self.tag_keys = tuple(
            normalize_tag_key(path[len("tags.") :]) for path in self.paths if path.startswith("tags.")
        )
        self.tag_getters = tuple(attribute_getter(path) for path in self.paths if path.startswith("tags."))
        self.lists = tuple(i for i, path in enumerate(plain) if attribute_kind(path) == "list")
        self._touched: dict[tuple[str, ...], tuple[Getter, ...]] = {}
        self.read: Callable[[StorageResource], Any] | None = None
        if all(_read_plainly(path) for path in plain):
            if len(plain) > 1:
                self.read = operator.attrgetter(*plain)
            elif plain:
                one = operator.attrgetter(plain[0])
                self.read = lambda resource: (one(resource),)
            else:
                self.read = lambda resource: ()

    def __call__(self, resource: StorageResource) -> tuple[Any, ...] | None:
        """The key of `resource` (None if a value read cannot be hashed)."""
        read = self.read
        if read is None:
            return values_key(self.getters, resource)
        try:
            values = read(resource)
        except AttributeError:  # a group was not collected: it is unknown
            return values_key(self.getters, resource)
        if self.lists:
            values = list(values)
            for index in self.lists:
                value = values[index]
                if isinstance(value, list):
                    values[index] = tuple(value)
            values = tuple(values)
        tags: tuple[Any, ...] = ()
        touched: tuple[Any, ...] = ()
        unknown = resource.unknown
        if self.tag_keys:
            folded = resource.normalized_tags
            if folded is None:  # not collected: what each tag getter makes of it
                tags = _read_with(self.tag_getters, resource)
            else:
                tags = tuple([folded.get(key) for key in self.tag_keys])
        if unknown:
            getters = self._touched.get(tuple(unknown))
            if getters is None:
                if len(self._touched) >= _SIGNATURE_MEMORY:
                    self._touched.clear()
                getters = self._touched[tuple(unknown)] = tuple(
                    get
                    for path, get in zip(self.paths, self.getters, strict=True)
                    if any(path == entry or path.startswith(entry + ".") for entry in unknown)
                )
            touched = _read_with(getters, resource)
        key = (_PLAIN_KEY, resource.provider, values, tags, touched)
        try:
            hash(key)
        except TypeError:  # e.g. a whole group read with `exists`
            return None
        return key


def _read_with(getters: tuple[Getter, ...], resource: StorageResource) -> tuple[Any, ...]:
    # What each getter sees: its value (a list as a tuple) and its unknown entry with its partial kind.
    parts: list[Any] = []
    for get in getters:
        value, unknown = get(resource)
        parts.append(tuple(value) if isinstance(value, list) else value)
        parts.append(None if unknown is None else (unknown.code, unknown.reason, unknown.partial))
    return tuple(parts)


def _read_plainly(path: str) -> bool:
    # `group.leaf` of a group, or an identity field: what `attribute_getter` reads with getattr.
    group, dot, leaf = path.partition(".")
    if group in GROUPS:
        return bool(dot) and "." not in leaf and group != "tags"
    return not dot


@dataclass(slots=True)
class SharedDecision:
    """A policy's decision on the resources that look alike to it (`decide`), with the findings JSON
    they share: built once per waiver state and evidence form, on first use."""

    decision: Decision
    _json: dict[tuple[AppliedWaiver | None, bool], tuple[SharedJson, Status]] = field(default_factory=dict)

    def shared_json(
        self, compiled: CompiledPolicy, waiver: AppliedWaiver | None, reference: bool
    ) -> tuple[SharedJson, Status]:
        """The (head, middle, tail) JSON of the findings of this decision, and their status."""
        key = (waiver, reference)
        known = self._json.get(key)
        if known is None:
            state, observations, notes = self.decision
            assert state is not None, "out-of-scope decisions make no finding"
            underlying = _STATUS_OF_STATE[state]
            status = Status.WAIVED if waiver is not None and not waiver.expired else underlying
            policy = compiled.policy
            template = Finding(
                policy_id=policy.id,
                status=status,
                severity=policy.severity,
                resource=_PLACEHOLDER,
                expected=compiled.expected,
                controls=policy.controls,
                evidence=[],
                underlying_status=underlying,
                observations=observations,
                waiver=waiver,
                notes=list(notes),
            )
            known = self._json[key] = (shared_json(template, reference=reference), status)
        return known


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
    _key: ValuesKey | None = field(default=None, repr=False)
    _decided: dict[tuple[Any, ...], SharedDecision] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._key = ValuesKey(self.attributes)

    def decide(self, resource: StorageResource) -> Decision:
        """Scope and condition on one resource: (state, observations, notes), state None if out of scope.

        The outcome depends only on the provider and the values the policy reads, and estates
        repeat configurations, so outcomes are remembered by those values (bounded).
        """
        return self.decide_shared(resource).decision

    def decide_shared(self, resource: StorageResource) -> SharedDecision:
        """`decide`, remembered with the findings JSON its findings share."""
        key = self._decision_key(resource)
        if key is not None:
            known = self._decided.get(key)
            if known is not None:
                return known
        decision = SharedDecision(self.evaluate_fresh(resource))
        if key is not None:
            if len(self._decided) >= _DECISION_MEMORY:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _decision_key(self, resource: StorageResource) -> tuple[Any, ...] | None:
        assert self._key is not None
        return self._key(resource)

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

    def relevant_indexes(self, layout: Iterable[Sequence[str]]) -> tuple[int, ...]:
        """The indexes of the evidence items behind the attributes this policy reads (`layout`: the
        attributes of each item, in order)."""
        relevant = self._relevant_cache
        selected = []
        for index, attributes in enumerate(layout):
            key = tuple(attributes)
            hit = relevant.get(key)
            if hit is None:
                hit = relevant[key] = any(_overlaps(a, p) for a in key for p in self.attributes)
            if hit:
                selected.append(index)
        return tuple(selected)


DecidedEntry = tuple[int, CompiledPolicy, SharedDecision]


class _Decided:
    """The decisions of the policies in scope on resources alike to all of them (those not out of
    a policy's `where`), with their findings' frames by evidence layout and form (bounded)."""

    __slots__ = ("entries", "fails", "frames")

    def __init__(self, entries: list[DecidedEntry]) -> None:
        self.entries = entries
        self.fails = any(shared.decision[0] is Truth.FALSE for _, _, shared in entries)
        self.frames: dict[tuple[int, bool], _Frame] = {}


class _Frame:
    """The findings JSON of one resource but for its own parts: ``reference`` form,
    ``resource.join(fixed)``; inline form, ``b"".join(pick([*fixed, resource, *evidence items]))``
    (per finding ``joint, resource, middle, [selected items]``, then the last joint). `statuses`
    are the (policy index, status) of its findings, for the totals."""

    __slots__ = ("fixed", "pick", "statuses")

    def __init__(
        self,
        decided: list[
            tuple[CompiledPolicy, SharedDecision, AppliedWaiver | None, tuple[tuple[int, ...], bytes]]
        ],
        indexes: list[int],
        reference: bool,
    ) -> None:
        joints: list[bytes] = []
        middles: list[bytes] = []
        selections: list[tuple[int, ...]] = []
        statuses: list[tuple[int, Status]] = []
        tail = b""
        for index, (compiled, shared, waiver, (refs, refs_json)) in zip(indexes, decided, strict=True):
            (head, middle, next_tail), status = shared.shared_json(compiled, waiver, reference)
            joints.append(tail + b",\n" + head if tail else head)
            middles.append(middle + refs_json if reference else middle)
            selections.append(refs)
            statuses.append((index, status))
            tail = next_tail
        joints.append(tail)
        self.statuses = tuple(statuses)
        self.pick: Callable[[list[bytes]], tuple[bytes, ...]] | None = None
        if reference:
            # head_1 | middle_1 refs_1 tail_1 ",\n" head_2 | ... | middle_n refs_n tail_n
            self.fixed = [joints[0], *(m + j for m, j in zip(middles, joints[1:], strict=True))]
            return
        # Inline: the fixed pieces between the resource and the items, merged where adjacent, and
        # the order to take them in; slots -1 is the resource, -2 - i evidence item i (resolved below).
        fixed: list[bytes] = []
        order: list[int] = []
        pending = joints[0]
        for middle, refs, joint in zip(middles, selections, joints[1:], strict=True):
            fixed.append(pending)
            order += (len(fixed) - 1, -1)
            pending = middle + b"["
            for position, item in enumerate(refs):
                pending += b"," if position else b""
                fixed.append(pending)
                order += (len(fixed) - 1, -2 - item)
                pending = b""
            pending += b"]" + joint
        fixed.append(pending)
        order.append(len(fixed) - 1)
        resource_slot = len(fixed)
        slots = [o if o >= 0 else resource_slot - 1 - o for o in order]
        self.fixed = fixed
        self.pick = operator.itemgetter(*slots)  # always several slots: returns a tuple


class _ScopeGroup:
    """The policies in scope for one (provider, kind, state), and their remembered decisions by the
    values any of them reads: resources alike to all of them share one lookup (bounded)."""

    def __init__(self, policies: list[tuple[int, CompiledPolicy]]) -> None:
        self.policies = policies
        self.key = ValuesKey(path for _, compiled in policies for path in compiled.attributes)
        self.decided: dict[tuple[Any, ...], _Decided] = {}

    def decide(self, resource: StorageResource) -> _Decided:
        """The decisions in scope, remembered (`CompiledPolicy.decide_shared`)."""
        key = self.key(resource)
        if key is not None:
            known = self.decided.get(key)
            if known is not None:
                return known
        decided = _Decided(
            [(i, c, d) for i, c in self.policies if (d := c.decide_shared(resource)).decision[0] is not None]
        )
        if key is not None:
            if len(self.decided) >= _GROUP_MEMORY:
                self.decided.clear()
            self.decided[key] = decided
        return decided

    def decide_fresh(self, resource: StorageResource) -> _Decided:
        """`decide` without remembered outcomes."""
        return _Decided(
            [
                (i, c, d)
                for i, c in self.policies
                if (d := SharedDecision(c.evaluate_fresh(resource))).decision[0] is not None
            ]
        )


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

    def apply(self, policy_id: str, resource: StorageResource) -> tuple[WaiverUse, bool] | None:
        """`find` for a failed finding, counting the use (applied, or matched while expired)."""
        match = self.find(policy_id, resource)
        if match is not None:
            use, expired = match
            if expired:
                use.expired_matches += 1
            else:
                use.applied += 1
        return match


@dataclass
class RunTotals:
    """Counts and coverage accumulated while evaluating."""

    # Resources by (provider, account, at-rest regions counted): the coverage below, kept in one
    # count per resource.
    seen: Counter[tuple[str, str, tuple[str, ...]]] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    by_severity: dict[str, Counter[str]] = field(default_factory=dict)
    by_policy: dict[str, Counter[str]] = field(default_factory=dict)
    unknown_attributes: dict[str, Counter[str]] = field(default_factory=dict)
    gaps: list[CoverageGap] = field(default_factory=list)
    gate_failures: int = 0
    gate_errors: int = 0

    @property
    def resources(self) -> int:
        """How many resources were evaluated."""
        return sum(self.seen.values())

    @property
    def resources_by_provider(self) -> Counter[str]:
        """Resources evaluated per provider."""
        counts: Counter[str] = Counter()
        for (provider, _, _), number in self.seen.items():
            counts[provider] += number
        return counts

    @property
    def accounts(self) -> set[tuple[str, str]]:
        """The (provider, account) pairs evaluated."""
        return {(provider, account) for provider, account, _ in self.seen}

    @property
    def regions(self) -> Counter[str]:
        """Resources per ``provider:region`` they store data at rest in (where that is known)."""
        counts: Counter[str] = Counter()
        for (provider, _, regions), number in self.seen.items():
            for region in regions:
                counts[f"{provider}:{region}"] += number
        return counts

    def count(self, finding: Finding, threshold: Severity) -> None:
        """Add one finding to the totals and to the gate."""
        self.count_findings(finding.policy_id, finding.severity, finding.status, 1, threshold)

    def count_findings(
        self, policy_id: str, severity: Severity, status: Status, number: int, threshold: Severity
    ) -> None:
        """Add `number` findings of one policy with one status to the totals and to the gate."""
        self.status[status.value] += number
        by_severity = self.by_severity.get(severity.value)
        if by_severity is None:
            by_severity = self.by_severity[severity.value] = Counter()
        by_severity[status.value] += number
        by_policy = self.by_policy.get(policy_id)
        if by_policy is None:
            by_policy = self.by_policy[policy_id] = Counter()
        by_policy[status.value] += number
        if status is not Status.PASS and severity.at_least(threshold):
            if status is Status.FAIL:
                self.gate_failures += number
            elif status is Status.ERROR:
                self.gate_errors += number

    def count_resource(self, resource: StorageResource) -> list[str]:
        """Add one resource to the coverage; returns its at-rest regions (as its findings show them)."""
        unknown = resource.unknown
        for path, reason in unknown.items():
            codes = self.unknown_attributes.get(path)
            if codes is None:
                codes = self.unknown_attributes[path] = Counter()
            codes[reason.code.value] += 1
        location = resource.location
        regions = [] if location is None else list(location.regions)
        counted = tuple(regions) if not unknown or resource.unknown_reason("location.regions") is None else ()
        self.seen[(resource.provider, resource.account, counted)] += 1
        return regions


def _processing_regions(resource: StorageResource) -> list[str] | dict[str, Any]:
    """The finding's `processing_regions` of a kind that carries processing."""
    unknown = resource.unknown_reason("processing.regions")
    recorded = list(resource.processing.regions) if resource.processing is not None else []
    return recorded if unknown is None else unknown_json(unknown, recorded)


def _training_ref(resource: StorageResource) -> TrainingRef:
    """The finding's `training` of a kind that carries training."""
    held = resource.training
    unknown = resource.unknown_reason("training.provider_may_train")
    may_train = held.provider_may_train if held is not None else None
    return TrainingRef(
        provider_may_train=may_train if unknown is None else unknown_json(unknown, may_train),
        decided_by=held.decided_by if held is not None else None,
        source=held.source if held is not None else None,
        as_of=held.as_of.isoformat() if held is not None and held.as_of is not None else None,
    )


def resource_ref(resource: StorageResource, regions: list[str]) -> ResourceRef:
    """The finding's account of `resource`: its identity and at-rest `regions`; for kinds that carry
    them, where requests are processed and whether the provider may train; the attested paths."""
    groups = KIND_GROUPS[resource.kind]
    processing = _processing_regions(resource) if "processing" in groups else None
    training = _training_ref(resource) if "training" in groups else None
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


def resource_json(resource: StorageResource, regions: list[str]) -> dict[str, Any]:
    """``resource_ref(resource, regions).to_json_dict()``, built directly: the findings of a large
    estate need it once per resource."""
    out: dict[str, Any] = {
        "provider": resource.provider,
        "account": resource.account,
        "id": resource.id,
        "name": resource.name,
        "kind": resource.kind,
        "regions": regions,
    }
    if resource.storage_account is not None:
        out["storage_account"] = resource.storage_account
    groups = KIND_GROUPS[resource.kind]
    if "processing" in groups:
        out["processing_regions"] = _processing_regions(resource)
    if "training" in groups:
        out["training"] = _training_ref(resource).to_json_dict()
    attested = [
        path for item in resource.evidence if item.attestation is not None for path in item.attributes
    ]
    if attested:
        kept = [path for path in dict.fromkeys(attested) if resource.unknown_reason(path) is None]
        if kept:
            out["attested"] = kept
    tags = resource.normalized_tags
    if tags:
        owner = tags.get(OWNER_TAG)
        if owner is not None:
            out["owner"] = owner
    return out


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
        regions = totals.count_resource(resource)
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

    def encode(self, records: Iterable[InventoryRecord], *, reference: bool = False) -> Iterator[bytes]:
        """Evaluate every record like `run`; per resource, its findings' JSON joined by ``,\\n``
        (empty without findings), each exactly ``orjson.dumps(finding.to_json_dict(reference=...))``
        of the finding `run` makes.

        Findings of one decision share everything but the resource and its evidence: that JSON is
        built once per remembered decision (`SharedDecision`), the resource's once per resource,
        each evidence item's is the record's text of it (`evidence_texts`, as read), and which items
        a policy selects is worked out once per layout of the evidence list. With remembered
        decisions, resources that look alike to every policy in scope (same kind, state and values
        read) share one lookup, and, unless a waiver matches them, one frame of their findings'
        JSON per evidence layout. The totals are complete when the iterator is exhausted.
        """
        totals = self.totals
        waivers = self.waivers
        remember = self.remember_decisions
        indexed = list(enumerate(self.policies))
        scopes: dict[tuple[str, str, str | None], _ScopeGroup] = {}
        layouts: dict[
            tuple[tuple[str, ...], ...], tuple[int, list[tuple[tuple[int, ...], bytes] | None]]
        ] = {}
        serials = itertools.count()
        applied_waivers: dict[tuple[int, bool], AppliedWaiver] = {}
        tally: dict[tuple[tuple[int, Status], ...], int] = {}
        dumps = orjson.dumps
        for record in records:
            if isinstance(record, CoverageGap):
                totals.gaps.append(record)
                continue
            resource = record
            regions = totals.count_resource(resource)
            scope_key = (resource.provider, resource.kind, resource.state)
            group = scopes.get(scope_key)
            if group is None:
                group = scopes[scope_key] = _ScopeGroup(
                    [(i, c) for i, c in indexed if c.applies_to(resource)]
                )
            decided = group.decide(resource) if remember else group.decide_fresh(resource)
            entries = decided.entries
            if not entries:
                yield b""
                continue
            layout = tuple([tuple(item.attributes) for item in resource.evidence])
            known = layouts.get(layout)
            if known is None:
                if len(layouts) >= _SIGNATURE_MEMORY:
                    layouts.clear()
                known = layouts[layout] = (next(serials), [None] * len(indexed))
            serial, selections = known
            applied: list[AppliedWaiver | None] | None = None
            if waivers is not None and decided.fails:
                applied = [
                    self._waiver(waivers, compiled, resource, applied_waivers)
                    if shared.decision[0] is Truth.FALSE
                    else None
                    for _, compiled, shared in entries
                ]
                if not any(applied):
                    applied = None
            frame = decided.frames.get((serial, reference)) if applied is None else None
            if frame is None:
                chosen = []
                for position, (index, compiled, shared) in enumerate(entries):
                    selection = selections[index]
                    if selection is None:
                        refs = compiled.relevant_indexes(layout)
                        selection = selections[index] = (refs, dumps(list(refs)))
                    chosen.append((compiled, shared, applied[position] if applied else None, selection))
                frame = _Frame(chosen, [index for index, _, _ in entries], reference)
                if applied is None and remember:
                    if len(decided.frames) >= _FRAMES_PER_DECISION:
                        decided.frames.clear()
                    decided.frames[(serial, reference)] = frame
            resource_bytes = dumps(resource_json(resource, regions))
            if frame.pick is None:
                yield resource_bytes.join(frame.fixed)
            else:
                yield b"".join(frame.pick([*frame.fixed, resource_bytes, *resource.evidence_texts()]))
            tally[frame.statuses] = tally.get(frame.statuses, 0) + 1
        counts: Counter[tuple[int, Status]] = Counter()
        for statuses, number in tally.items():
            for counted in statuses:
                counts[counted] += number
        for (index, status), number in counts.items():
            policy = self.policies[index].policy
            totals.count_findings(policy.id, policy.severity, status, number, self.fail_on)

    @staticmethod
    def _waiver(
        waivers: WaiverBook,
        compiled: CompiledPolicy,
        resource: StorageResource,
        applied: dict[tuple[int, bool], AppliedWaiver],
    ) -> AppliedWaiver | None:
        """The waiver a failed finding gets (counted on its use), as `_finding` applies it."""
        match = waivers.apply(compiled.policy.id, resource)
        if match is None:
            return None
        use, expired = match
        waiver = applied.get((id(use), expired))
        if waiver is None:
            waiver = applied[(id(use), expired)] = applied_waiver(use, expired)
        return waiver

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
            match = self.waivers.apply(policy.id, resource)
            if match is not None:
                use, expired = match
                applied = applied_waiver(use, expired)
                if not expired:
                    status = Status.WAIVED
        refs = compiled.relevant_indexes(item.attributes for item in resource.evidence)
        return Finding(
            policy_id=policy.id,
            status=status,
            severity=policy.severity,
            resource=ref,
            expected=compiled.expected,
            controls=policy.controls,
            evidence=[evidence[i] for i in refs],
            underlying_status=underlying,
            observations=observations,
            waiver=applied,
            notes=list(notes),
            evidence_refs=refs,
        )


def applied_waiver(use: WaiverUse, expired: bool) -> AppliedWaiver:
    """The finding's account of the waiver that matched it."""
    waiver = use.waiver.waiver
    return AppliedWaiver(
        id=use.waiver.key,
        justification=waiver.justification,
        approver=waiver.approver,
        expires=waiver.expires.isoformat(),
        expired=expired,
        source=use.waiver.where,
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
