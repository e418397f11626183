"""Compile a policy once into a predicate over `StorageResource`, with three-valued logic.

Each condition node evaluates to TRUE, FALSE or UNKNOWN (an attribute it needed could not be
read). ``all``/``any``/``not`` follow Kleene logic: ``all`` is FALSE as soon as one member is FALSE,
even if another is UNKNOWN (a definite violation stays a violation); it is TRUE only when every
member is TRUE. A policy whose condition ends UNKNOWN reports ``error``, never pass or fail.

Partial knowledge (``Unknown.partial``) still decides what it proves: a list whose recorded
members are known to be present while others could not be read (``members``), or a recorded
version that is a lower bound of the real one (``at_least``). A leaf on such an attribute is
TRUE or FALSE only when the known part settles it whatever the unknown rest turns out to be
(see auditor.policy.operators), and UNKNOWN otherwise; never FALSE without proof.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from auditor.errors import InputError
from auditor.findings import Observation, Truth
from auditor.model import GROUPS, StorageResource, Unknown, attribute_kind, normalize_tag_key, with_partial
from auditor.policy.language import AllOf, AnyOf, Condition, Leaf, NotOf, ParamRef, ZoneRef
from auditor.policy.loader import LoadedPolicy
from auditor.policy.operators import ZoneValue, bind
from auditor.policy.yamlfile import PathKey
from auditor.policy.zones import ZoneCatalog

__all__ = ["Getter", "PolicyCompiler", "Predicate", "Result", "ZoneValue", "attribute_getter"]

Result = tuple[Truth, tuple[Observation, ...]]
Predicate = Callable[[StorageResource], Result]
Getter = Callable[[StorageResource], tuple[Any, Unknown | None]]


def _whole(reason: Unknown) -> Unknown:
    """`reason` without partial knowledge (for an entry whose recorded value cannot carry any)."""
    return reason if reason.partial is None else with_partial(reason, None)


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


class PolicyCompiler:
    """Compiles the conditions of loaded policies against parameter values and the zone catalog."""

    def __init__(self, catalog: ZoneCatalog) -> None:
        self.catalog = catalog

    def resolve_value(self, raw: Any, params: dict[str, Any], where: Callable[[str], InputError]) -> Any:
        """Replace a `ParamRef` with the parameter's value and a `ZoneRef` with its `ZoneValue`."""
        if isinstance(raw, ParamRef):
            if raw.param not in params:  # the loader reports it first, at the same line
                raise where(f"parameter '{raw.param}' is not declared in the policy's parameters")
            return params[raw.param]
        if isinstance(raw, ZoneRef):
            zone = self.resolve_value(raw.zone, params, where)
            if not isinstance(zone, str) or zone not in self.catalog.zones:
                known = ", ".join(sorted(self.catalog.zones))
                raise where(f"unknown zone {zone!r} (known: {known})")
            return ZoneValue(zone, self.catalog.zone_members(zone))
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
            return _junction(
                [self.compile(c, loaded, (*loc, "all", i), params) for i, c in enumerate(condition.all)],
                Truth.all_of,
                otherwise=Truth.TRUE,
            )
        if isinstance(condition, AnyOf):
            return _junction(
                [self.compile(c, loaded, (*loc, "any", i), params) for i, c in enumerate(condition.any)],
                Truth.any_of,
                otherwise=Truth.FALSE,
            )
        if isinstance(condition, NotOf):
            return _not(self.compile(condition.not_, loaded, (*loc, "not"), params))
        return self._leaf(condition, loaded, loc, params)

    def _leaf(self, leaf: Leaf, loaded: LoadedPolicy, loc: PathKey, params: dict[str, Any]) -> Predicate:
        def where(message: str) -> InputError:
            return loaded.doc.error((*loc, "value"), message)

        value = self.resolve_value(leaf.value, params, where)
        try:
            bound = bind(leaf.op, leaf.attribute, attribute_kind(leaf.attribute), value)
        except ValueError as exc:
            raise where(str(exc)) from exc
        holds, decide_partial, expected = bound.holds, bound.decide_partial, bound.expected
        get = attribute_getter(leaf.attribute)
        attribute = leaf.attribute

        def evaluate(resource: StorageResource) -> Result:
            observed, unknown = get(resource)
            if unknown is not None:
                state = Truth.UNKNOWN
                if unknown.partial is not None:
                    state = decide_partial(observed, unknown.partial, resource.provider)
                return state, (Observation(attribute, observed, unknown, expected, state),)
            state = holds(observed, resource.provider)
            return state, (Observation(attribute, observed, None, expected, state),)

        return evaluate


def _junction(
    members: Sequence[Predicate], combine: Callable[[Iterable[Truth]], Truth], otherwise: Truth
) -> Predicate:
    """`all` (`Truth.all_of`, otherwise TRUE) or `any` (`Truth.any_of`, otherwise FALSE): when the
    members decide it, only the observations of the members that decided it are kept."""

    def evaluate(resource: StorageResource) -> Result:
        results = [m(resource) for m in members]
        decisive = combine(s for s, _ in results)
        if decisive is otherwise:
            return otherwise, tuple(o for _, obs in results for o in obs)
        return decisive, tuple(o for s, obs in results if s is decisive for o in obs)

    return evaluate


def _not(member: Predicate) -> Predicate:
    def evaluate(resource: StorageResource) -> Result:
        state, observations = member(resource)
        negated = tuple(
            Observation(o.attribute, o.value, o.unknown, f"not ({o.expected})", o.state.negate())
            for o in observations
        )
        return state.negate(), negated

    return evaluate
