"""ARM template expressions: a tokenizer, a parser and a small evaluator.

A string value `"[...]"` is an expression (`"[[..."` is the literal text `"[..."`). The evaluator
computes what a template fixes before deployment: `parameters()`, `variables()`,
`resourceGroup().location` (from `--location`), `subscription().subscriptionId`, `concat`,
`format`, `toLower`/`toUpper`, `string`, `replace`, `if`, `equals`, `not`/`and`/`or`, `coalesce`,
`empty`, `length`, `createArray`/`createObject`. What only a deployment knows (`uniqueString`,
`reference`, `resourceId`, `guid`, `utcNow`...) is `Unresolved` with code not_known_until_apply;
any other real template function is `Unresolved` with code not_supported. A name that is not a
template function, or text that does not parse, is an `ExpressionError` (bad input, exit 2).
Everything is bounded: expression length, nesting, variable chains and the length of a result.

Function list: https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from auditor.model import UnknownCode

MAX_EXPRESSION_CHARS = 8192
MAX_NESTING = 64
MAX_VARIABLE_CHAIN = 64
MAX_RESULT_CHARS = 65536


class ExpressionError(Exception):
    """An expression that is not valid ARM: bad syntax or an unknown function (bad input)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class Unresolved:
    """A value the template does not fix before deployment, and why."""

    code: UnknownCode
    reason: str


# --- syntax --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str  # as written
    args: tuple[Node, ...]
    namespace: str | None = None  # a user-defined function `namespace.name(...)`


@dataclass(frozen=True)
class Member:
    target: Node
    key: Node  # `.name` is a Literal string, `[expr]` any node


Node = Literal | Call | Member

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?[0-9]+(?:\.[0-9]+)?)"
    r"|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)|(?P<punct>[(),.\[\]]))"
)


def is_expression(text: str) -> bool:
    """Whether a template string is an expression (`[...]`, not the escaped `[[...`)."""
    return len(text) >= 2 and text[0] == "[" and text[-1] == "]" and not text.startswith("[[")


def literal_text(text: str) -> str:
    """A non-expression template string as deployed (`[[x` stands for `[x`)."""
    return text[1:] if text.startswith("[[") else text


def _tokens(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"unexpected text {source[pos:].strip()[:20]!r} in expression")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self, text: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "punct" and token[1] == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.take(text):
            found = self.peek()
            raise ExpressionError(f"expected '{text}', found {found[1]!r}" if found else f"expected '{text}'")

    def node(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels")
        token = self.peek()
        if token is None:
            raise ExpressionError("incomplete expression")
        kind, text = token
        self.pos += 1
        result: Node
        if kind == "string":
            result = Literal(text[1:-1].replace("''", "'"))
        elif kind == "number":
            result = Literal(float(text) if "." in text else int(text))
        elif kind == "name":
            namespace = None
            if self.take("."):
                following = self.peek()
                if following is None or following[0] != "name":
                    raise ExpressionError(f"expected a function name after '{text}.'")
                namespace, text = text, following[1]
                self.pos += 1
            if self.take("("):
                args: list[Node] = []
                if not self.take(")"):
                    while True:
                        args.append(self.node(depth + 1))
                        if self.take(")"):
                            break
                        self.expect(",")
                result = Call(text, tuple(args), namespace)
            elif namespace is None and text.lower() in ("true", "false", "null"):
                result = Literal({"true": True, "false": False, "null": None}[text.lower()])
            else:
                raise ExpressionError(f"'{text}' is not a function call (missing '(')")
        else:
            raise ExpressionError(f"unexpected {text!r} in expression")
        while True:
            if self.take("."):
                following = self.peek()
                if following is None or following[0] != "name":
                    raise ExpressionError("expected a property name after '.'")
                self.pos += 1
                result = Member(result, Literal(following[1]))
            elif self.take("["):
                result = Member(result, self.node(depth + 1))
                self.expect("]")
            else:
                return result


def parse_expression(text: str) -> Node:
    """The syntax tree of expression `text` (with its brackets), or ExpressionError."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    parser = _Parser(text[1:-1])
    node = parser.node(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r} after the expression")  # type: ignore[index]
    return node


def calls(node: Node) -> list[Call]:
    """Every function call in `node`, outermost first."""
    found: list[Call] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Call):
            found.append(current)
            stack.extend(reversed(current.args))
        elif isinstance(current, Member):
            stack.extend([current.key, current.target])
    return found


# --- the functions -------------------------------------------------------------------------------

# Values only a deployment knows (https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-resource,
# -deployment, -string#uniquestring, -date#utcnow).
DEPLOY_TIME = frozenset(
    {
        "deployment",
        "environment",
        "extensionresourceid",
        "guid",
        "managementgroup",
        "managementgroupresourceid",
        "newguid",
        "pickzones",
        "providers",
        "reference",
        "references",
        "resourceid",
        "subscriptionresourceid",
        "tenant",
        "tenantresourceid",
        "uniquestring",
        "utcnow",
    }
)
# Real template functions auditor does not evaluate: their result is unknown (not_supported).
NOT_EVALUATED = frozenset(
    {
        "add",
        "array",
        "base64",
        "base64tojson",
        "base64tostring",
        "bool",
        "cidrhost",
        "cidrsubnet",
        "contains",
        "copyindex",
        "datauri",
        "datauritostring",
        "datetimeadd",
        "datetimefromepoch",
        "datetimetoepoch",
        "div",
        "endswith",
        "filter",
        "first",
        "flatten",
        "float",
        "greater",
        "greaterorequals",
        "indexof",
        "int",
        "intersection",
        "items",
        "join",
        "json",
        "lambda",
        "lambdavariables",
        "last",
        "lastindexof",
        "less",
        "lessorequals",
        "map",
        "max",
        "min",
        "mod",
        "mul",
        "objectkeys",
        "padleft",
        "parsecidr",
        "range",
        "reduce",
        "shallowmerge",
        "skip",
        "sort",
        "split",
        "startswith",
        "sub",
        "substring",
        "take",
        "toobject",
        "tryget",
        "union",
        "uri",
        "uricomponent",
        "uricomponenttostring",
    }
)


def _text(value: Any) -> str:
    """A value as ARM turns it into text (format, concat, string)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _bounded(text: str) -> str:
    if len(text) > MAX_RESULT_CHARS:
        raise ExpressionError(f"an expression result is longer than {MAX_RESULT_CHARS} characters")
    return text


_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:[,:][^}]*)?\}")


def _format(template: str, args: list[Any]) -> Any:
    """.NET composite formatting as ARM `format()` does it, for plain `{n}` items."""
    out: list[str] = []
    pos = 0
    for match in _FORMAT_ITEM.finditer(template):
        out.append(template[pos : match.start()])
        pos = match.end()
        item = match.group()
        if item in ("{{", "}}"):
            out.append(item[0])
            continue
        if item != "{" + (match.group(1) or "") + "}":
            return Unresolved(
                UnknownCode.NOT_SUPPORTED, f"format item {item} (a format string) is not evaluated"
            )
        index = int(match.group(1))
        if index >= len(args):
            raise ExpressionError(f"format(): item {{{index}}} has no argument")
        out.append(_text(args[index]))
    out.append(template[pos:])
    return _bounded("".join(out))


def _concat(args: list[Any]) -> Any:
    if args and all(isinstance(a, list) for a in args):
        return [item for a in args for item in a]
    return _bounded("".join(_text(a) for a in args))


def _lookup(mapping: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """Case-insensitive key lookup (ARM property names are)."""
    if key in mapping:
        return True, mapping[key]
    folded = key.casefold()
    for name, value in mapping.items():
        if name.casefold() == folded:
            return True, value
    return False, None


def _first_unresolved(values: list[Any]) -> Unresolved | None:
    return next((v for v in values if isinstance(v, Unresolved)), None)


def _arity(name: str, args: list[Any], low: int, high: int | None = -1) -> None:
    """Check the argument count: exactly `low` (high -1), `low` to `high`, or at least `low` (None)."""
    top = low if high == -1 else high
    if len(args) < low or (top is not None and len(args) > top):
        expected = str(low) if low == top else f"{low} or more" if top is None else f"{low} to {top}"
        raise ExpressionError(f"{name}() takes {expected} arguments, got {len(args)}")


def _need_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() takes text, got {type(value).__name__}")
    return value


# Pure functions of known arguments: name -> (minimum, maximum or None for any, implementation).
_PURE: dict[str, tuple[int, int | None, Callable[[list[Any]], Any]]] = {
    "concat": (1, None, _concat),
    "format": (1, None, lambda a: _format(_need_text("format", a[0]), a[1:])),
    "tolower": (1, 1, lambda a: _need_text("toLower", a[0]).lower()),
    "toupper": (1, 1, lambda a: _need_text("toUpper", a[0]).upper()),
    "trim": (1, 1, lambda a: _need_text("trim", a[0]).strip()),
    "string": (1, 1, lambda a: _bounded(_text(a[0]))),
    "replace": (
        3,
        3,
        lambda a: _bounded(_need_text("replace", a[0]).replace(_need_text("replace", a[1]), _text(a[2]))),
    ),
    "equals": (2, 2, lambda a: a[0] == a[1]),
    "not": (1, 1, lambda a: not a[0]),
    "and": (2, None, lambda a: all(bool(v) for v in a)),
    "or": (2, None, lambda a: any(bool(v) for v in a)),
    "true": (0, 0, lambda a: True),
    "false": (0, 0, lambda a: False),
    "null": (0, 0, lambda a: None),
    "createarray": (0, None, list),
    "createobject": (0, None, lambda a: _create_object(a)),
    "empty": (1, 1, lambda a: a[0] is None or (isinstance(a[0], str | list | dict) and len(a[0]) == 0)),
    "length": (1, 1, lambda a: len(a[0]) if isinstance(a[0], str | list | dict) else 0),
}


def _create_object(args: list[Any]) -> dict[str, Any]:
    if len(args) % 2:
        raise ExpressionError("createObject() takes name/value pairs")
    return {_text(args[i]): args[i + 1] for i in range(0, len(args), 2)}


def known_function(name: str) -> bool:
    """Whether `name` is a template function (any case)."""
    folded = name.casefold()
    return (
        folded in _PURE
        or folded in DEPLOY_TIME
        or folded in NOT_EVALUATED
        or folded.startswith("list")
        or folded in ("parameters", "variables", "resourcegroup", "subscription", "if", "coalesce")
    )


# --- evaluation ----------------------------------------------------------------------------------


class Scope:
    """What an expression can see: the template's parameters and variables, and the deployment scope.

    `parameters` and `variables` are the template's declarations, evaluated on first use; a
    parameter takes its `supplied` value (a parameters file), else its `defaultValue`, else it is
    Unresolved (a value given only at deployment).
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, Any],
        parameter_lines: Mapping[str, int],
        supplied: Mapping[str, Any],
        variables: Mapping[str, Any],
        variable_lines: Mapping[str, int],
        user_functions: frozenset[str],
        location: str | None,
        subscription: str | None,
        resource_group: str | None,
    ) -> None:
        self.parameters = parameters
        self.parameter_lines = parameter_lines
        self.supplied = supplied
        self.variables = variables
        self.variable_lines = variable_lines
        self.user_functions = user_functions
        self.location = location
        self.subscription = subscription
        self.resource_group = resource_group
        self._values: dict[str, Any] = {}
        self._evaluating: list[str] = []

    def check(self, node: Node) -> None:
        """Raise ExpressionError for a call of a name that is no template function."""
        for call in calls(node):
            if call.namespace is not None:
                if f"{call.namespace}.{call.name}".casefold() not in self.user_functions:
                    raise ExpressionError(
                        f"unknown template function '{call.namespace}.{call.name}' "
                        "(no such user-defined function in the template)"
                    )
            elif not known_function(call.name):
                raise ExpressionError(f"unknown template function '{call.name}'")

    def evaluate_text(self, text: str) -> Any:
        """A template string's value: the expression evaluated, or the literal text."""
        if not is_expression(text):
            return literal_text(text)
        node = parse_expression(text)
        self.check(node)
        return self.evaluate(node, 0)

    def evaluate_value(self, value: Any, line: int) -> Any:
        """A template value with every expression in it evaluated; errors carry `line` if they have none."""
        try:
            if isinstance(value, str):
                return self.evaluate_text(value)
        except ExpressionError as exc:
            if exc.line is None:
                exc.line = line
            raise
        if isinstance(value, dict):
            lines = getattr(value, "key_lines", {})
            return {key: self.evaluate_value(item, lines.get(key, line)) for key, item in value.items()}
        if isinstance(value, list):
            lines = getattr(value, "item_lines", [])
            return [
                self.evaluate_value(item, lines[i] if i < len(lines) else line)
                for i, item in enumerate(value)
            ]
        return value

    def evaluate(self, node: Node, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise ExpressionError(f"expression nested deeper than {MAX_NESTING} levels")
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Member):
            target = self.evaluate(node.target, depth + 1)
            key = self.evaluate(node.key, depth + 1)
            return _member(target, key)
        return self._call(node, depth)

    def _call(self, call: Call, depth: int) -> Any:
        name = call.name.casefold()
        if call.namespace is not None:
            return Unresolved(
                UnknownCode.NOT_SUPPORTED,
                f"user-defined function {call.namespace}.{call.name}() is not evaluated",
            )
        if name == "if":
            _arity("if", list(call.args), 3)
            condition = self.evaluate(call.args[0], depth + 1)
            if isinstance(condition, Unresolved):
                return condition
            return self.evaluate(call.args[1] if condition else call.args[2], depth + 1)
        if name == "coalesce":
            for arg in call.args:
                value = self.evaluate(arg, depth + 1)
                if value is not None:
                    return value
            return None
        if name in DEPLOY_TIME or (name.startswith("list") and name not in _PURE):
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY, f"{call.name}() is computed when the template is deployed"
            )
        if name in NOT_EVALUATED:
            return Unresolved(UnknownCode.NOT_SUPPORTED, f"{call.name}() is not evaluated by auditor")
        args = [self.evaluate(arg, depth + 1) for arg in call.args]
        unresolved = _first_unresolved(args)
        if unresolved is not None:
            return unresolved
        if name == "parameters":
            _arity("parameters", args, 1)
            return self.parameter(_need_text("parameters", args[0]))
        if name == "variables":
            _arity("variables", args, 1)
            return self.variable(_need_text("variables", args[0]))
        if name == "resourcegroup":
            _arity("resourceGroup", args, 0)
            return self._resource_group()
        if name == "subscription":
            _arity("subscription", args, 0)
            return self._subscription()
        low, high, function = _PURE[name]
        _arity(call.name, args, low, high)
        return function(args)

    def parameter(self, name: str) -> Any:
        """A parameter's value: supplied, else its default (evaluated once), else Unresolved."""
        found, declaration = _lookup(self.parameters, name)
        if not found:
            raise ExpressionError(f"parameter '{name}' is not declared in the template")
        given, value = _lookup(self.supplied, name)
        if given:
            return value
        if isinstance(declaration, dict) and "defaultValue" in declaration:
            line = _lookup(self.parameter_lines, name)[1] or 1
            return self._once("parameter", name, declaration["defaultValue"], line)
        return Unresolved(
            UnknownCode.NOT_KNOWN_UNTIL_APPLY,
            f"parameter '{name}' has no value: no defaultValue and not in --parameters (given at deployment)",
        )

    def variable(self, name: str) -> Any:
        """A variable's value, evaluated once (a cycle or an undeclared name is ExpressionError)."""
        found, raw = _lookup(self.variables, name)
        if not found:
            raise ExpressionError(f"variable '{name}' is not declared in the template")
        line = _lookup(self.variable_lines, name)[1] or 1
        return self._once("variable", name, raw, line)

    def _once(self, kind: str, name: str, raw: Any, line: int) -> Any:
        key = f"{kind}:{name.casefold()}"
        if key in self._values:
            return self._values[key]
        if key in self._evaluating:
            raise ExpressionError(f"{kind} '{name}' refers to itself")
        if len(self._evaluating) >= MAX_VARIABLE_CHAIN:
            raise ExpressionError(
                f"parameters and variables refer to each other more than {MAX_VARIABLE_CHAIN} deep"
            )
        self._evaluating.append(key)
        try:
            value = self.evaluate_value(raw, line)
        finally:
            self._evaluating.pop()
        self._values[key] = value
        return value

    def _resource_group(self) -> dict[str, Any]:
        def given(value: str | None, what: str, option: str) -> Any:
            if value is not None:
                return value
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                f"resourceGroup().{what} is the deployment's resource group's (give {option})",
            )

        return {
            "location": given(self.location, "location", "--location"),
            "name": given(self.resource_group, "name", "--resource-group"),
            "id": Unresolved(UnknownCode.NOT_KNOWN_UNTIL_APPLY, "resourceGroup().id is known at deployment"),
            "tags": Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY, "resourceGroup().tags is known at deployment"
            ),
        }

    def _subscription(self) -> dict[str, Any]:
        deploy = Unresolved(UnknownCode.NOT_KNOWN_UNTIL_APPLY, "subscription() is known at deployment")
        return {
            "subscriptionId": self.subscription if self.subscription is not None else deploy,
            "id": f"/subscriptions/{self.subscription}" if self.subscription is not None else deploy,
            "tenantId": deploy,
            "displayName": deploy,
        }


def _member(target: Any, key: Any) -> Any:
    if isinstance(target, Unresolved):
        return target
    if isinstance(key, Unresolved):
        return key
    if isinstance(target, dict) and isinstance(key, str):
        found, value = _lookup(target, key)
        if not found:
            raise ExpressionError(f"the object has no property '{key}'")
        return value
    if isinstance(target, list | str) and isinstance(key, int) and not isinstance(key, bool):
        if not 0 <= key < len(target):
            raise ExpressionError(f"index {key} is out of range")
        return target[key]
    raise ExpressionError(f"cannot take [{key!r}] of a {type(target).__name__}")
