"""Compile a policy once into a predicate over `StorageResource`, with three-valued logic.

Each condition node evaluates to TRUE, FALSE or UNKNOWN (an attribute it needed could not be
read). ``all``/``any``/``not`` follow Kleene logic: ``all`` is FALSE as soon as one member is FALSE,
even if another is UNKNOWN (a definite violation stays a violation); it is TRUE only when every
member is TRUE. A policy whose condition ends UNKNOWN reports ``error``, never pass or fail.

Partial knowledge (``Unknown.partial``) still decides what it proves: a list whose recorded
members are known to be present while others could not be read (``members``), or a recorded
version that is a lower bound of the real one (``at_least``). A leaf on such an attribute is
TRUE or FALSE only when the known part settles it whatever the unknown rest turns out to be
(see `_partial_rule`), and UNKNOWN otherwise; never FALSE without proof.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import re2

from auditor.errors import InputError
from auditor.findings import FALSE, TRUE, UNKNOWN, Observation
from auditor.model import GROUPS, StorageResource, Unknown, attribute_kind, normalize_tag_key
from auditor.policy.language import AllOf, AnyOf, Condition, Leaf, NotOf, Parameter
from auditor.policy.loader import LoadedPolicy
from auditor.policy.yamlfile import PathKey
from auditor.policy.zones import ZoneCatalog
from auditor.versions import parse_version

_MISSING = object()


Result = tuple[int, tuple[Observation, ...]]
Predicate = Callable[[StorageResource], Result]
Getter = Callable[[StorageResource], tuple[Any, Unknown | None]]


@dataclass(frozen=True)
class ZoneValue:
    """A zone reference resolved to the location ids of each provider."""

    name: str
    members: dict[str, frozenset[str]]

    def __str__(self) -> str:
        return f"zone {self.name}"


def _whole(reason: Unknown) -> Unknown:
    """`reason` without partial knowledge (for an entry whose recorded value cannot carry any)."""
    return reason if reason.partial is None else reason.model_copy(update={"partial": None})


def _fits_partial(partial: str, value: Any) -> bool:
    """Whether a recorded value has the shape its partial knowledge needs."""
    if partial == "members":
        return isinstance(value, list)
    # at_least: a scalar lower bound (a version string), never null, a collection or a bool
    return value is not None and not isinstance(value, bool | list | dict)


def attribute_getter(path: str) -> Getter:
    """A function reading `path` from a resource: (value, None) or (None, why it is unknown).

    When `path` itself is listed in ``unknown`` with partial knowledge, the getter answers
    (recorded value, that entry): the known members or the lower bound, and why the rest is
    unknown. That holds only for an entry on the path itself, with its group collected and no
    parent path unknown, and a recorded value of the right shape (a list for ``members``, a
    scalar for ``at_least``); otherwise the attribute is wholly unknown.
    """
    if path.startswith("tags."):
        key = normalize_tag_key(path[len("tags.") :])

        def get_tag(resource: StorageResource) -> tuple[Any, Unknown | None]:
            if resource.unknown or resource.tags is None:
                reason = resource.unknown_reason(path)
                if reason is not None:
                    return None, _whole(reason)  # a tag value carries no partial knowledge
            tags = resource.normalized_tags
            return (tags.get(key) if tags is not None else None), None

        return get_tag
    group, _, leaf = path.partition(".")
    if group not in GROUPS:

        def get_identity(resource: StorageResource) -> tuple[Any, Unknown | None]:
            return getattr(resource, group), None

        return get_identity
    parent = path.rpartition(".")[0]

    def get_attribute(resource: StorageResource) -> tuple[Any, Unknown | None]:
        holder = getattr(resource, group)
        if resource.unknown or holder is None:
            reason = resource.unknown_reason(path)
            if reason is not None:
                if reason.partial is None:
                    return None, reason
                if not leaf or holder is None or resource.unknown.get(path) is not reason:
                    return None, _whole(reason)  # groups and parent entries are never partial
                above = resource.unknown_reason(parent)
                if above is not None:
                    return None, _whole(above)
                value = getattr(holder, leaf)
                if not _fits_partial(reason.partial, value):
                    return None, _whole(reason)
                return value, reason
        if not leaf:
            return holder, None
        return getattr(holder, leaf), None

    return get_attribute


def _literal(value: Any) -> str:
    return str(value) if isinstance(value, ZoneValue) else orjson.dumps(value).decode()


def _as_set(value: Any) -> frozenset[Any]:
    return frozenset(value) if isinstance(value, list | tuple | set | frozenset) else frozenset([value])


def _version(value: Any) -> tuple[int, ...] | None:
    return parse_version(str(value)) if value is not None else None


OpTest = Callable[[Any, Any], bool]


def _zone_aware(test: Callable[[Any, frozenset[Any]], bool]) -> Callable[[Any, Any, str], bool]:
    def run(observed: Any, expected: Any, provider: str) -> bool:
        if isinstance(expected, ZoneValue):
            members = expected.members.get(provider, frozenset())
            lowered = [v.lower() for v in observed] if isinstance(observed, list) else str(observed).lower()
            return test(lowered, members)
        return test(observed, _as_set(expected))

    return run


def _subset(observed: Any, allowed: frozenset[Any]) -> bool:
    # An empty set of locations is "nothing observed", never vacuously compliant.
    return isinstance(observed, list) and bool(observed) and all(v in allowed for v in observed)


_COMPARISONS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "gte": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "lte": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


# Which operators make sense for each kind of attribute (see model.attribute_kind).
_OPERATORS_BY_KIND: dict[str, frozenset[str]] = {
    "list": frozenset({"subset_of", "contains", "exists", "equals", "not_equals"}),
    "bool": frozenset({"equals", "not_equals", "exists"}),
    "mapping": frozenset({"exists"}),
    "scalar": frozenset(
        {"equals", "not_equals", "in", "not_in", "contains", "exists", "matches", "gte", "gt", "lte", "lt"}
    ),
}


def _check_operator(leaf: Leaf, value: Any, where: Callable[[str], InputError]) -> None:
    kind = attribute_kind(leaf.attribute)
    if leaf.op not in _OPERATORS_BY_KIND[kind]:
        allowed = ", ".join(sorted(_OPERATORS_BY_KIND[kind]))
        raise where(
            f"'{leaf.op}' does not apply to {kind} attribute '{leaf.attribute}' (use one of: {allowed})"
        )
    if isinstance(value, ZoneValue) and leaf.op not in ("in", "not_in", "subset_of"):
        raise where(f"a zone value goes with in, not_in or subset_of, not '{leaf.op}'")
    if leaf.op == "contains" and kind == "scalar" and not isinstance(value, str):
        raise where("'contains' on a text attribute takes a string")
    if kind == "bool" and leaf.op in ("equals", "not_equals") and not isinstance(value, bool):
        raise where(f"'{leaf.attribute}' is true or false; compare it with true or false")


def _leaf_test(leaf: Leaf, value: Any, where: Callable[[str], InputError]) -> tuple[Callable[..., bool], str]:
    """The test function (observed, provider) -> bool for a leaf, and its expectation text."""
    _check_operator(leaf, value, where)
    op = leaf.op
    if op == "exists":
        wanted = True if value is None else value
        if not isinstance(wanted, bool):
            raise where("'exists' takes true or false")
        return (lambda o, p: (o is not None) == wanted), ("present" if wanted else "absent")
    if op in ("equals", "not_equals"):
        positive = op == "equals"
        return (lambda o, p: (o is not None and o == value) == positive), (
            f"{'' if positive else 'not '}{_literal(value)}"
        )
    if op in ("in", "not_in"):
        if not isinstance(value, list | ZoneValue):
            raise where(f"'{op}' takes a list or a zone")
        member = _zone_aware(lambda o, s: o in s)
        if op == "in":
            return (lambda o, p: o is not None and member(o, value, p)), f"one of {_literal(value)}"
        return (lambda o, p: o is None or not member(o, value, p)), f"none of {_literal(value)}"
    if op == "subset_of":
        if not isinstance(value, list | ZoneValue):
            raise where("'subset_of' takes a list or a zone")
        subset = _zone_aware(_subset)
        return (lambda o, p: o is not None and subset(o, value, p)), f"all within {_literal(value)}"
    if op == "contains":
        return (lambda o, p: o is not None and value in o), f"containing {_literal(value)}"
    if op == "matches":
        if not isinstance(value, str):
            raise where("'matches' takes a regular expression string")
        options = re2.Options()
        options.log_errors = False  # the error is reported once, as an InputError
        try:
            # RE2 runs in linear time: no catastrophic backtracking on hostile tag values.
            pattern = re2.compile(value, options)
        except re2.error as exc:
            detail = (
                exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            )
            raise where(f"invalid regular expression {value!r}: {detail}") from exc
        return (lambda o, p: o is not None and pattern.search(str(o)) is not None), f"matching /{value}/"
    if op in _COMPARISONS:
        bound = _version(value)
        if bound is None:
            raise where(f"'{op}' takes a version such as '1.2', got {value!r}")
        compare = _COMPARISONS[op]
        words = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[op]

        def versioned(o: Any, p: str) -> bool:
            parsed = _version(o)
            return parsed is not None and compare(parsed, bound)

        return versioned, f"{words} {value}"
    raise where(f"unknown operator '{op}'")  # pragma: no cover - the language rejects it first


PartialRule = Callable[[Any, str, str], int]


def _undecided(known: Any, partial: str, provider: str) -> int:
    return UNKNOWN


def _partial_rule(op: str, value: Any, exists_wanted: bool) -> PartialRule:
    """How a leaf decides from partial knowledge: (known part, partial kind, provider) -> state.

    ``members`` (a list holding members known to be present, others unreadable):

    * ``subset_of``: FALSE when a known member is outside the list or zone, else UNKNOWN.
    * ``contains``: TRUE when a known member is the item, else UNKNOWN.
    * ``equals`` (exact list equality): FALSE when a known member is not in the expected list (or
      the expected value is not a list at all), else UNKNOWN; ``not_equals`` is its negation.
    * ``exists``: a known member proves the list is present (``exists: true`` TRUE,
      ``exists: false`` FALSE); with no known member nothing is proven: UNKNOWN.

    ``at_least`` (a version that is a lower bound of the real one):

    * ``gte v``: TRUE when bound >= v; ``gt v``: TRUE when bound > v; else UNKNOWN.
    * ``lt v``: FALSE when bound >= v; ``lte v``: FALSE when bound > v; else UNKNOWN.
    * ``exists``: the bound is a value, so the attribute is present.

    Every other operator, and a bound that is not a version, is UNKNOWN.
    """
    if op == "exists":

        def present(known: Any, partial: str, provider: str) -> int:
            if partial == "members" and not known:
                return UNKNOWN
            return TRUE if exists_wanted else FALSE

        return present
    if op == "subset_of":
        subset = _zone_aware(_subset)

        def within(known: Any, partial: str, provider: str) -> int:
            if partial == "members" and any(not subset([item], value, provider) for item in known):
                return FALSE
            return UNKNOWN

        return within
    if op == "contains":

        def holds(known: Any, partial: str, provider: str) -> int:
            return TRUE if partial == "members" and value in known else UNKNOWN

        return holds
    if op in ("equals", "not_equals"):
        differs = FALSE if op == "equals" else TRUE  # equality itself is never proven

        def equal(known: Any, partial: str, provider: str) -> int:
            if partial != "members":
                return UNKNOWN
            if not isinstance(value, list) or any(item not in value for item in known):
                return differs
            return UNKNOWN

        return equal
    if op in _COMPARISONS:
        target = _version(value)
        # (state when proven, test on the bound that proves it)
        proofs: dict[str, tuple[int, Callable[[tuple[int, ...], tuple[int, ...]], bool]]] = {
            "gte": (TRUE, lambda b, t: b >= t),
            "gt": (TRUE, lambda b, t: b > t),
            "lt": (FALSE, lambda b, t: b >= t),
            "lte": (FALSE, lambda b, t: b > t),
        }
        proven, proves = proofs[op]

        def bounded(known: Any, partial: str, provider: str) -> int:
            bound = _version(known) if partial == "at_least" else None
            if bound is None or target is None:
                return UNKNOWN
            return proven if proves(bound, target) else UNKNOWN

        return bounded
    return _undecided


class PolicyCompiler:
    """Compiles the conditions of loaded policies against parameter values and the zone catalog."""

    def __init__(self, catalog: ZoneCatalog) -> None:
        self.catalog = catalog

    def resolve_value(
        self,
        raw: Any,
        params: dict[str, Any],
        specs: dict[str, Parameter],
        where: Callable[[str], InputError],
    ) -> Any:
        """Replace ``{param: x}`` and ``{zone: x}`` with their values."""
        if isinstance(raw, dict) and set(raw) == {"param"}:
            name = raw["param"]
            if name not in specs:
                raise where(f"parameter '{name}' is not declared in the policy's parameters")
            return params[name]
        if isinstance(raw, dict) and set(raw) == {"zone"}:
            zone = self.resolve_value(raw["zone"], params, specs, where)
            if not isinstance(zone, str) or zone not in self.catalog.zones:
                known = ", ".join(sorted(self.catalog.zones))
                raise where(f"unknown zone {zone!r} (known: {known})")
            return ZoneValue(zone, self.catalog.zone_members(zone))
        if isinstance(raw, dict):
            raise where("a value mapping must be {param: NAME} or {zone: NAME}")
        return raw

    def compile(
        self,
        condition: Condition,
        loaded: LoadedPolicy,
        loc: PathKey,
        params: dict[str, Any],
    ) -> Predicate:
        """A predicate for `condition` (located at `loc` in the policy's file)."""
        if isinstance(condition, AllOf):
            return _all(
                [self.compile(c, loaded, (*loc, "all", i), params) for i, c in enumerate(condition.all)]
            )
        if isinstance(condition, AnyOf):
            return _any(
                [self.compile(c, loaded, (*loc, "any", i), params) for i, c in enumerate(condition.any)]
            )
        if isinstance(condition, NotOf):
            return _not(self.compile(condition.not_, loaded, (*loc, "not"), params))
        return self._leaf(condition, loaded, loc, params)

    def _leaf(self, leaf: Leaf, loaded: LoadedPolicy, loc: PathKey, params: dict[str, Any]) -> Predicate:
        def where(message: str) -> InputError:
            return loaded.doc.error((*loc, "value"), message)

        value = self.resolve_value(leaf.value, params, loaded.policy.parameters, where)
        test, expected = _leaf_test(leaf, value, where)
        partial_rule = _partial_rule(leaf.op, value, value is None or value is True)
        get = attribute_getter(leaf.attribute)
        attribute = leaf.attribute

        def evaluate(resource: StorageResource) -> Result:
            observed, unknown = get(resource)
            if unknown is not None:
                state = UNKNOWN
                if unknown.partial is not None:
                    state = partial_rule(observed, unknown.partial, resource.provider)
                return state, (Observation(attribute, observed, unknown, expected, state),)
            state = TRUE if test(observed, resource.provider) else FALSE
            return state, (Observation(attribute, observed, None, expected, state),)

        return evaluate


def _junction(members: Sequence[Predicate], deciding: int, otherwise: int) -> Predicate:
    """`all` (deciding=FALSE, otherwise=TRUE) or `any` (deciding=TRUE, otherwise=FALSE), Kleene-style:
    one deciding member settles it, else any UNKNOWN member makes it UNKNOWN."""

    def evaluate(resource: StorageResource) -> Result:
        results = [m(resource) for m in members]
        states = [s for s, _ in results]
        if deciding in states:
            decisive = deciding
        elif UNKNOWN in states:
            decisive = UNKNOWN
        else:
            return otherwise, tuple(o for _, obs in results for o in obs)
        return decisive, tuple(o for s, obs in results if s == decisive for o in obs)

    return evaluate


def _all(members: Sequence[Predicate]) -> Predicate:
    return _junction(members, deciding=FALSE, otherwise=TRUE)


def _any(members: Sequence[Predicate]) -> Predicate:
    return _junction(members, deciding=TRUE, otherwise=FALSE)


_NEGATION = {TRUE: FALSE, FALSE: TRUE, UNKNOWN: UNKNOWN}  # Kleene: not unknown is unknown


def _not(member: Predicate) -> Predicate:
    def evaluate(resource: StorageResource) -> Result:
        state, observations = member(resource)
        negated = tuple(
            Observation(o.attribute, o.value, o.unknown, f"not ({o.expected})", _NEGATION[o.state])
            for o in observations
        )
        return _NEGATION[state], negated

    return evaluate
