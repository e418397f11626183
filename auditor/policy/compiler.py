"""Compile a policy once into a predicate over `StorageResource`, with three-valued logic.

Each condition node evaluates to TRUE, FALSE or UNKNOWN (an attribute it needed could not be
read). ``all``/``any``/``not`` follow Kleene logic: ``all`` is FALSE as soon as one member is FALSE,
even if another is UNKNOWN (a definite violation stays a violation); it is TRUE only when every
member is TRUE. A policy whose condition ends UNKNOWN reports ``error``, never pass or fail.
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


def attribute_getter(path: str) -> Getter:
    """A function reading `path` from a resource: (value, None) or (None, why it is unknown)."""
    if path.startswith("tags."):
        key = normalize_tag_key(path[len("tags.") :])

        def get_tag(resource: StorageResource) -> tuple[Any, Unknown | None]:
            if resource.unknown or resource.tags is None:
                reason = resource.unknown_reason(path)
                if reason is not None:
                    return None, reason
            tags = resource.normalized_tags
            return (tags.get(key) if tags is not None else None), None

        return get_tag
    group, _, leaf = path.partition(".")
    if group not in GROUPS:

        def get_identity(resource: StorageResource) -> tuple[Any, Unknown | None]:
            return getattr(resource, group), None

        return get_identity

    def get_attribute(resource: StorageResource) -> tuple[Any, Unknown | None]:
        holder = getattr(resource, group)
        if resource.unknown or holder is None:
            reason = resource.unknown_reason(path)
            if reason is not None:
                return None, reason
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
        get = attribute_getter(leaf.attribute)
        attribute = leaf.attribute

        def evaluate(resource: StorageResource) -> Result:
            observed, unknown = get(resource)
            if unknown is not None:
                return UNKNOWN, (Observation(attribute, None, unknown, expected, UNKNOWN),)
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


def _not(member: Predicate) -> Predicate:
    def evaluate(resource: StorageResource) -> Result:
        state, observations = member(resource)
        negated = tuple(
            Observation(
                o.attribute,
                o.value,
                o.unknown,
                f"not ({o.expected})",
                o.state if o.state == UNKNOWN else 1 - o.state,
            )
            for o in observations
        )
        if state == UNKNOWN:
            return UNKNOWN, negated
        return (FALSE if state == TRUE else TRUE), negated

    return evaluate
