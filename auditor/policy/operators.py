"""The condition operators, defined once: the attribute kinds each accepts, the value it takes,
its expectation text and its three-valued test.

The language's `Operator` type, the compiler and the operator table of docs/policy-language.md
(`operator_table_markdown`) are all derived from `OPERATORS`.

Partial knowledge (``Unknown.partial``) decides a leaf only where the known part settles it
whatever the unknown rest turns out to be; never FALSE without proof. ``members`` (a list holding
members known to be present, others unreadable):

* ``subset_of``: FALSE when a known member is outside the list or zone, else UNKNOWN.
* ``contains``: TRUE when a known member is the item, else UNKNOWN.
* ``equals`` (exact list equality): FALSE when a known member is not in the expected list (or the
  expected value is not a list at all), else UNKNOWN; ``not_equals`` is its negation.
* ``exists``: a known member proves the list is present (``exists: true`` TRUE, ``exists: false``
  FALSE); with no known member nothing is proven: UNKNOWN.

``at_least`` (a version that is a lower bound of the real one):

* ``gte v``: TRUE when bound >= v; ``gt v``: TRUE when bound > v; else UNKNOWN.
* ``lt v``: FALSE when bound >= v; ``lte v``: FALSE when bound > v; else UNKNOWN.
* ``exists``: the bound is a value, so the attribute is present.

Every other operator, and a bound that is not a version, is UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import re2
from pydantic import ConfigDict, InstanceOf, TypeAdapter, ValidationError

from auditor.findings import Truth
from auditor.versions import parse_version

AttributeKind = Literal["list", "bool", "mapping", "scalar"]  # see model.attribute_kind
ATTRIBUTE_KINDS: tuple[AttributeKind, ...] = ("list", "bool", "mapping", "scalar")

Version = tuple[int, ...]


@dataclass(frozen=True)
class ZoneValue:
    """A zone reference resolved to the location ids of each provider."""

    name: str
    members: dict[str, frozenset[str]]

    def __str__(self) -> str:
        return f"zone {self.name}"


_STRICT = ConfigDict(strict=True)


@dataclass(frozen=True)
class ValueRule:
    """The value an operator takes: a pydantic type it must fit (None: any value), the error when
    it does not (``{op}``, ``{attribute}`` and ``{value!r}`` are filled in), and how the checked
    value is prepared for the test (may raise ValueError with its own message)."""

    accepts: TypeAdapter[Any] | None
    error: str
    prepare: Callable[[Any], Any] = lambda value: value

    def check(self, op: str, attribute: str, value: Any) -> Any:
        """The prepared value, or ValueError with the rule's message."""
        if self.accepts is not None:
            try:
                self.accepts.validate_python(value)
            except ValidationError:
                raise ValueError(self.error.format(op=op, attribute=attribute, value=value)) from None
        return self.prepare(value)


ANY_VALUE = ValueRule(None, "")

Test = Callable[[Any, Any, str], bool]  # (prepared value, observed, provider) -> holds
PartialTest = Callable[[Any, Any, str, str], Truth]  # (prepared value, known part, partial kind, provider)


@dataclass(frozen=True)
class OperatorSpec:
    """One operator: what it applies to, what it takes, what it expects and how it decides."""

    name: str
    kinds: frozenset[AttributeKind]
    takes_zone: bool
    value: ValueRule
    expectation: Callable[[Any], str]  # the value as written (resolved) -> expectation text
    test: Test
    partial: PartialTest
    doc_value: str
    doc_true_when: str
    doc_absent: str
    value_by_kind: Mapping[AttributeKind, ValueRule] = field(default_factory=dict)

    def rule_for(self, kind: AttributeKind) -> ValueRule:
        """The value rule on an attribute of `kind` (some operators take less on some kinds)."""
        return self.value_by_kind.get(kind, self.value)


def _literal(value: Any) -> str:
    return str(value) if isinstance(value, ZoneValue) else orjson.dumps(value).decode()


def _as_set(value: Any) -> frozenset[Any]:
    return frozenset(value) if isinstance(value, list | tuple | set | frozenset) else frozenset([value])


def _version(value: Any) -> Version | None:
    return parse_version(str(value)) if value is not None else None


def _zone_aware(test: Callable[[Any, frozenset[Any]], bool]) -> Callable[[Any, Any, str], bool]:
    def run(observed: Any, expected: Any, provider: str) -> bool:
        if isinstance(expected, ZoneValue):
            members = expected.members.get(provider, frozenset())
            lowered = [v.lower() for v in observed] if isinstance(observed, list) else str(observed).lower()
            return test(lowered, members)
        return test(observed, _as_set(expected))

    return run


def _subset_test(observed: Any, allowed: frozenset[Any]) -> bool:
    # An empty set of locations is "nothing observed", never vacuously compliant.
    return isinstance(observed, list) and bool(observed) and all(v in allowed for v in observed)


_member = _zone_aware(lambda observed, allowed: observed in allowed)
_subset = _zone_aware(_subset_test)


def _undecided(value: Any, known: Any, partial: str, provider: str) -> Truth:
    return Truth.UNKNOWN


# --- equals / not_equals -------------------------------------------------------------------------


def _equals(value: Any, observed: Any, provider: str) -> bool:
    return observed is not None and observed == value


def _equal_members(differs: Truth) -> PartialTest:
    def decide(value: Any, known: Any, partial: str, provider: str) -> Truth:
        # Equality itself is never proven from known members; inequality is.
        if partial != "members":
            return Truth.UNKNOWN
        if not isinstance(value, list) or any(item not in value for item in known):
            return differs
        return Truth.UNKNOWN

    return decide


# --- exists --------------------------------------------------------------------------------------


def _exists(wanted: bool, observed: Any, provider: str) -> bool:
    return (observed is not None) == wanted


def _exists_partial(wanted: bool, known: Any, partial: str, provider: str) -> Truth:
    if partial == "members" and not known:
        return Truth.UNKNOWN
    return Truth.of(wanted)


# --- subset_of / contains ------------------------------------------------------------------------


def _within_partial(value: Any, known: Any, partial: str, provider: str) -> Truth:
    if partial == "members" and any(not _subset([item], value, provider) for item in known):
        return Truth.FALSE
    return Truth.UNKNOWN


def _contains_partial(value: Any, known: Any, partial: str, provider: str) -> Truth:
    return Truth.TRUE if partial == "members" and value in known else Truth.UNKNOWN


# --- matches -------------------------------------------------------------------------------------


def _compile_regex(value: str) -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is reported once, as an InputError
    try:
        # RE2 runs in linear time: no catastrophic backtracking on hostile tag values.
        return re2.compile(value, options)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"invalid regular expression {value!r}: {detail}") from exc


# --- version comparisons -------------------------------------------------------------------------


def _comparison(
    op: str,
    symbol: str,
    compare: Callable[[Version, Version], bool],
    proven: Truth,
    proves: Callable[[Version, Version], bool],
) -> OperatorSpec:
    """`op` compares versions with `compare`; a lower bound b proves `proven` when proves(b, v)."""

    def bound(value: Any) -> Version:
        parsed = _version(value)
        if parsed is None:
            raise ValueError(f"'{op}' takes a version such as '1.2', got {value!r}")
        return parsed

    def test(target: Version, observed: Any, provider: str) -> bool:
        parsed = _version(observed)
        return parsed is not None and compare(parsed, target)

    def partial(target: Version, known: Any, kind: str, provider: str) -> Truth:
        lower = _version(known) if kind == "at_least" else None
        if lower is None:
            return Truth.UNKNOWN
        return proven if proves(lower, target) else Truth.UNKNOWN

    return OperatorSpec(
        name=op,
        kinds=frozenset({"scalar"}),
        takes_zone=False,
        value=ValueRule(None, "", prepare=bound),
        expectation=lambda value: f"{symbol} {value}",
        test=test,
        partial=partial,
        doc_value='version, such as `"1.2"`',
        doc_true_when=f"observed version `{symbol}` value (see version comparison below)",
        doc_absent="false",
    )


_LIST_OR_ZONE = ValueRule(
    TypeAdapter(list[Any] | InstanceOf[ZoneValue], config=_STRICT), "'{op}' takes a list or a zone"
)
_TRUE_OR_FALSE = ValueRule(
    TypeAdapter(bool, config=_STRICT), "'{attribute}' is true or false; compare it with true or false"
)

_TABLE: tuple[OperatorSpec, ...] = (
    OperatorSpec(
        name="equals",
        kinds=frozenset({"list", "bool", "scalar"}),
        takes_zone=False,
        value=ANY_VALUE,
        value_by_kind={"bool": _TRUE_OR_FALSE},
        expectation=_literal,
        test=_equals,
        partial=_equal_members(Truth.FALSE),
        doc_value="any literal",
        doc_true_when=(
            'observed `==` value. The check is exact: `true` is not `"true"`, and `"1.2"` is not `1.2`.'
        ),
        doc_absent="false",
    ),
    OperatorSpec(
        name="not_equals",
        kinds=frozenset({"list", "bool", "scalar"}),
        takes_zone=False,
        value=ANY_VALUE,
        value_by_kind={"bool": _TRUE_OR_FALSE},
        expectation=lambda value: f"not {_literal(value)}",
        test=lambda value, observed, provider: not _equals(value, observed, provider),
        partial=_equal_members(Truth.TRUE),
        doc_value="any literal",
        doc_true_when="not `equals`",
        doc_absent="**true**",
    ),
    OperatorSpec(
        name="in",
        kinds=frozenset({"scalar"}),
        takes_zone=True,
        value=_LIST_OR_ZONE,
        expectation=lambda value: f"one of {_literal(value)}",
        test=lambda value, observed, provider: observed is not None and _member(observed, value, provider),
        partial=_undecided,
        doc_value="list or zone",
        doc_true_when=(
            "observed is one of the list items (exact, case-sensitive), or is a location of the zone "
            "(see below)"
        ),
        doc_absent="false",
    ),
    OperatorSpec(
        name="not_in",
        kinds=frozenset({"scalar"}),
        takes_zone=True,
        value=_LIST_OR_ZONE,
        expectation=lambda value: f"none of {_literal(value)}",
        test=lambda value, observed, provider: observed is None or not _member(observed, value, provider),
        partial=_undecided,
        doc_value="list or zone",
        doc_true_when="not `in`",
        doc_absent="**true**",
    ),
    OperatorSpec(
        name="subset_of",
        kinds=frozenset({"list"}),
        takes_zone=True,
        value=_LIST_OR_ZONE,
        expectation=lambda value: f"all within {_literal(value)}",
        test=lambda value, observed, provider: observed is not None and _subset(observed, value, provider),
        partial=_within_partial,
        doc_value="list or zone",
        doc_true_when=(
            "observed is a **non-empty** list and every item is in the list or zone. An empty list or a "
            "scalar gives false."
        ),
        doc_absent="false",
    ),
    OperatorSpec(
        name="contains",
        kinds=frozenset({"list", "scalar"}),
        takes_zone=False,
        value=ANY_VALUE,
        value_by_kind={
            "scalar": ValueRule(
                TypeAdapter(str, config=_STRICT), "'contains' on a text attribute takes a string"
            )
        },
        expectation=lambda value: f"containing {_literal(value)}",
        test=lambda value, observed, provider: observed is not None and value in observed,
        partial=_contains_partial,
        doc_value="any literal (a string on a text attribute)",
        doc_true_when="observed list has the item, or observed string has the substring",
        doc_absent="false",
    ),
    OperatorSpec(
        name="exists",
        kinds=frozenset(ATTRIBUTE_KINDS),
        takes_zone=False,
        value=ValueRule(
            TypeAdapter(bool | None, config=_STRICT),
            "'exists' takes true or false",
            prepare=lambda value: True if value is None else value,
        ),
        expectation=lambda value: "absent" if value is False else "present",
        test=_exists,
        partial=_exists_partial,
        doc_value="`true` (default) or `false`",
        doc_true_when="observed is not null (`true`) or is null (`false`)",
        doc_absent="`exists: false` is true",
    ),
    OperatorSpec(
        name="matches",
        kinds=frozenset({"scalar"}),
        takes_zone=False,
        value=ValueRule(
            TypeAdapter(str, config=_STRICT),
            "'matches' takes a regular expression string",
            prepare=_compile_regex,
        ),
        expectation=lambda value: f"matching /{value}/",
        test=lambda pattern, observed, provider: (
            observed is not None and pattern.search(str(observed)) is not None
        ),
        partial=_undecided,
        doc_value="RE2 regex string",
        doc_true_when=(
            "the regex matches **anywhere** in `str(observed)`. Anchor with `^…$`. `(?i:…)` ignores case."
        ),
        doc_absent="false",
    ),
    _comparison("gte", ">=", lambda a, b: a >= b, Truth.TRUE, lambda bound, v: bound >= v),
    _comparison("gt", ">", lambda a, b: a > b, Truth.TRUE, lambda bound, v: bound > v),
    _comparison("lte", "<=", lambda a, b: a <= b, Truth.FALSE, lambda bound, v: bound > v),
    _comparison("lt", "<", lambda a, b: a < b, Truth.FALSE, lambda bound, v: bound >= v),
)

OPERATORS: dict[str, OperatorSpec] = {spec.name: spec for spec in _TABLE}
"""Every operator by name, in the order the language lists them."""

ZONE_OPERATORS = tuple(name for name, spec in OPERATORS.items() if spec.takes_zone)


def operators_for(kind: AttributeKind) -> list[str]:
    """The operators that apply to an attribute of `kind`, sorted by name."""
    return sorted(name for name, spec in OPERATORS.items() if kind in spec.kinds)


def _or_list(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


@dataclass(frozen=True)
class LeafTest:
    """An operator bound to its (checked, prepared) value: the test, the partial rule, the text."""

    spec: OperatorSpec
    value: Any
    expected: str

    def holds(self, observed: Any, provider: str) -> Truth:
        """TRUE or FALSE for a known observed value."""
        return Truth.of(self.spec.test(self.value, observed, provider))

    def decide_partial(self, known: Any, partial: str, provider: str) -> Truth:
        """What a partly known value proves (UNKNOWN when it settles nothing)."""
        return self.spec.partial(self.value, known, partial, provider)


def bind(op: str, attribute: str, kind: AttributeKind, value: Any) -> LeafTest:
    """Check `value` for `op` on an attribute of `kind` and bind them; ValueError says what is wrong.

    `value` is resolved: a literal, a parameter's value, or a `ZoneValue`.
    """
    spec = OPERATORS[op]
    if kind not in spec.kinds:
        raise ValueError(
            f"'{op}' does not apply to {kind} attribute '{attribute}' "
            f"(use one of: {', '.join(operators_for(kind))})"
        )
    if isinstance(value, ZoneValue) and not spec.takes_zone:
        raise ValueError(f"a zone value goes with {_or_list(ZONE_OPERATORS)}, not '{op}'")
    prepared = spec.rule_for(kind).check(op, attribute, value)
    return LeafTest(spec, prepared, spec.expectation(value))


# --- documentation -------------------------------------------------------------------------------

OPERATOR_TABLE_HEADER = (
    "| `op` | `value` | Attribute kinds | True when | Absent observed value |\n"
    "| --- | --- | --- | --- | --- |"
)


def operator_table_markdown() -> str:
    """The operator table of docs/policy-language.md, generated from `OPERATORS`."""
    rows = [OPERATOR_TABLE_HEADER]
    for name, spec in OPERATORS.items():
        kinds = ", ".join(kind for kind in ATTRIBUTE_KINDS if kind in spec.kinds)
        rows.append(f"| `{name}` | {spec.doc_value} | {kinds} | {spec.doc_true_when} | {spec.doc_absent} |")
    return "\n".join(rows)
