"""An ARM template read for auditing: its parameters and variables, and its resources flattened.

Resources come as an array (`resources: [...]`) or, in `languageVersion` 2.0 templates (what
`bicep build` emits for symbolic names), as an object keyed by symbolic name; nested `resources`
arrays are flattened with their full type and name. A resource name is split into its `/`
segments, each evaluated on its own where the name is a `format(...)` or `concat(...)`, so a
container's own name can be known while its account's is not; an unknown segment keeps the
canonical text of its source, so a container is still matched to its account by structure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.errors import InputError
from auditor.inputfile import read_text_input
from auditor.model import UnknownCode
from auditor.scan.arm_expressions import (
    Call,
    ExpressionError,
    Literal,
    Member,
    Node,
    Scope,
    Unresolved,
    calls,
    is_expression,
    literal_text,
    parse_expression,
)
from auditor.scan.located_json import LocatedDict, LocatedList, parse_located

MAX_TEMPLATE_BYTES = 4 * (1 << 20)  # the ARM limit for a template is 4 MB
MAX_RESOURCES = 10_000

STORAGE_ACCOUNT = "microsoft.storage/storageaccounts"
BLOB_SERVICE = "microsoft.storage/storageaccounts/blobservices"
CONTAINER = "microsoft.storage/storageaccounts/blobservices/containers"
ENCRYPTION_SCOPE = "microsoft.storage/storageaccounts/encryptionscopes"
KEY_VAULTS = ("microsoft.keyvault/vaults", "microsoft.keyvault/managedhsms")
DEPLOYMENT = "microsoft.resources/deployments"


@dataclass
class Segment:
    """One `/` segment of a resource name: its value (or why unknown) and its source's canonical text."""

    value: str | Unresolved
    key: str | None


@dataclass
class Declared:
    """One resource declaration, nested ones flattened."""

    file: str
    type: str
    raw_name: str
    segments: list[Segment]
    symbolic: str | None
    body: LocatedDict
    parent: Declared | None
    condition: bool | Unresolved
    existing: bool

    @property
    def kind(self) -> str:
        """The resource type, folded for comparison."""
        return self.type.casefold()

    @property
    def address(self) -> str:
        """The symbolic name, or `type/name` as written."""
        return self.symbolic or f"{self.type}/{self.raw_name}"

    @property
    def line(self) -> int:
        return self.body.line

    def where(self, key: str | None = None) -> str:
        """`file:line` of the resource (or of one of its top-level keys)."""
        return f"{self.file}:{self.body.line_of(key) if key else self.body.line}"

    def last_name(self) -> str:
        """The resource's own name, or the name as written when it cannot be evaluated."""
        last = self.segments[-1].value if self.segments else None
        return last if isinstance(last, str) else self.raw_name


@dataclass
class Template:
    """A template file read, with the scope its expressions are evaluated in."""

    file: str
    doc: LocatedDict
    scope: Scope
    resources: list[Declared] = field(default_factory=list)

    def evaluate(self, value: Any, line: int) -> Any:
        """`value` with its expressions evaluated; an invalid expression is bad input at its line."""
        try:
            return self.scope.evaluate_value(value, line)
        except ExpressionError as exc:
            raise InputError(f"{self.file}:{exc.line or line}", exc.message) from None


def canonical(node: Node) -> str:
    """A node as text that is equal for equal expressions (case and spacing aside)."""
    if isinstance(node, Literal):
        return json.dumps(node.value)
    if isinstance(node, Member):
        return f"{canonical(node.target)}[{canonical(node.key)}]"
    prefix = f"{node.namespace.casefold()}." if node.namespace else ""
    return f"{prefix}{node.name.casefold()}({','.join(canonical(a) for a in node.args)})"


def _name_parts(node: Node) -> list[str | Node] | None:
    """A `format('{0}/x/{1}', a, b)` or `concat(a, '/x/', b)` name as its literal and expression parts."""
    if not isinstance(node, Call) or node.namespace is not None:
        return None
    name = node.name.casefold()
    if name == "concat":
        return [a.value if isinstance(a, Literal) and isinstance(a.value, str) else a for a in node.args]
    if name != "format" or not node.args or not isinstance(node.args[0], Literal):
        return None
    template = node.args[0].value
    if not isinstance(template, str) or "{{" in template or "}}" in template:
        return None
    parts: list[str | Node] = []
    pos = 0
    while pos < len(template):
        start = template.find("{", pos)
        if start < 0:
            parts.append(template[pos:])
            break
        end = template.find("}", start)
        index = template[start + 1 : end] if end > start else ""
        if not index.isdigit() or int(index) + 1 >= len(node.args):
            return None
        parts.append(template[pos:start])
        arg = node.args[int(index) + 1]
        parts.append(arg.value if isinstance(arg, Literal) and isinstance(arg.value, str) else arg)
        pos = end + 1
    return parts


def _segments_of_parts(template: Template, parts: list[str | Node]) -> list[Segment]:
    grouped: list[list[str | Node]] = [[]]
    for part in parts:
        if isinstance(part, str):
            pieces = part.split("/")
            grouped[-1].append(pieces[0])
            grouped.extend([piece] for piece in pieces[1:])
        else:
            grouped[-1].append(part)
    segments = []
    for group in grouped:
        values: list[Any] = []
        for part in group:
            values.append(part if isinstance(part, str) else template.scope.evaluate(part, 0))
        unresolved = next((v for v in values if isinstance(v, Unresolved)), None)
        kept: list[str | Node] = [p for p in group if not (isinstance(p, str) and p == "")]
        key = "+".join(p if isinstance(p, str) else canonical(p) for p in kept)
        if unresolved is not None:
            segments.append(Segment(unresolved, key))
        else:
            segments.append(Segment("".join(v if isinstance(v, str) else json.dumps(v) for v in values), key))
    return segments


def name_segments(template: Template, raw: str, line: int) -> list[Segment]:
    """The `/` segments of a declared name (ExpressionError for an invalid expression)."""
    if not is_expression(raw):
        return [Segment(piece, piece) for piece in literal_text(raw).split("/")]
    node = parse_expression(raw)
    template.scope.check(node)
    parts = _name_parts(node)
    if parts is not None:
        return _segments_of_parts(template, parts)
    value = template.scope.evaluate(node, 0)
    if isinstance(value, str):
        return [Segment(piece, piece) for piece in value.split("/")]
    if isinstance(value, Unresolved):
        return [Segment(value, canonical(node))]
    raise ExpressionError(f"the name evaluates to a {type(value).__name__}, not text")


def _type_depth(full_type: str) -> int:
    return len(full_type.split("/")) - 1


def _declared(
    template: Template, raw: Any, line: int, symbolic: str | None, parent: Declared | None
) -> Declared:
    where = f"{template.file}:{line}"
    if not isinstance(raw, LocatedDict):
        raise InputError(where, "a resource is not a JSON object")
    kind, name = raw.get("type"), raw.get("name")
    if not isinstance(kind, str) or not kind:
        raise InputError(where, "the resource has no 'type'")
    if not isinstance(name, str) or not name:
        raise InputError(where, f"resource {kind} has no 'name'")
    full_type = kind
    if parent is not None and not kind.casefold().startswith(parent.kind + "/"):
        full_type = f"{parent.type}/{kind}"
    try:
        own = name_segments(template, name, raw.line_of("name"))
    except ExpressionError as exc:
        raise InputError(f"{template.file}:{raw.line_of('name')}", exc.message) from None
    segments = [*(parent.segments if parent else []), *own]
    depth = _type_depth(full_type)
    if len(own) == 1 and isinstance(own[0].value, Unresolved) and len(segments) < depth:
        # a whole name that cannot be evaluated stands for every segment it should have
        segments = [*segments[:-1], *[Segment(own[0].value, None)] * (depth - len(segments)), own[0]]
    if len(segments) != depth and "/" in full_type:
        raise InputError(
            f"{template.file}:{raw.line_of('name')}",
            f"resource name '{name}' has {len(segments)} segments, type '{full_type}' needs {depth}",
        )
    condition: bool | Unresolved = True
    if "condition" in raw:
        evaluated = template.evaluate(raw["condition"], raw.line_of("condition"))
        if isinstance(evaluated, bool | Unresolved):
            condition = evaluated
        else:
            found = type(evaluated).__name__
            condition = Unresolved(UnknownCode.ERROR, f"condition is a {found}, not a bool")
    if parent is not None and parent.condition is False:
        condition = False
    raw_name = name if parent is None else f"{parent.raw_name}/{name}"
    return Declared(
        file=template.file,
        type=full_type,
        raw_name=raw_name,
        segments=segments,
        symbolic=symbolic,
        body=raw,
        parent=parent,
        condition=condition,
        existing=raw.get("existing") is True,
    )


def _flatten(template: Template, resources: Any, parent: Declared | None, depth: int) -> Iterator[Declared]:
    if isinstance(resources, LocatedList):
        entries: list[tuple[str | None, Any, int]] = [
            (None, item, resources.line_of(i)) for i, item in enumerate(resources)
        ]
    elif isinstance(resources, LocatedDict) and parent is None:
        entries = [(key, item, resources.line_of(key)) for key, item in resources.items()]
    else:
        line = parent.body.line_of("resources") if parent else template.doc.line_of("resources")
        raise InputError(f"{template.file}:{line}", "'resources' is not an array (or, top level, an object)")
    for symbolic, item, line in entries:
        declared = _declared(template, item, line, symbolic, parent)
        yield declared
        if depth < 8 and "resources" in declared.body:
            yield from _flatten(template, declared.body["resources"], declared, depth + 1)


def _user_functions(doc: LocatedDict) -> frozenset[str]:
    found: set[str] = set()
    groups = doc.get("functions")
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict) and isinstance(group.get("members"), dict):
            found.update(f"{group.get('namespace')}.{member}".casefold() for member in group["members"])
    return frozenset(found)


def check_expressions(template: Template, value: Any, line: int) -> None:
    """Parse every expression in `value` and check its functions exist (InputError at its line)."""
    stack: list[tuple[Any, int]] = [(value, line)]
    while stack:
        current, at = stack.pop()
        if isinstance(current, str) and is_expression(current):
            try:
                template.scope.check(parse_expression(current))
            except ExpressionError as exc:
                raise InputError(f"{template.file}:{at}", exc.message) from None
        elif isinstance(current, LocatedDict):
            stack.extend((item, current.line_of(key)) for key, item in current.items())
        elif isinstance(current, LocatedList):
            stack.extend((item, current.line_of(i)) for i, item in enumerate(current))


def load_template(
    path: Path,
    supplied: dict[str, Any],
    *,
    location: str | None,
    subscription: str | None,
    resource_group: str | None,
) -> Template:
    """Read and check a template file: bad JSON, not a template or an invalid expression is InputError."""
    file = str(path)
    doc = parse_located(read_text_input(path, limit=MAX_TEMPLATE_BYTES, what="ARM template"), file)
    if not isinstance(doc, LocatedDict):
        raise InputError(f"{file}:{getattr(doc, 'line', 1)}", "not an ARM template: not a JSON object")
    schema = str(doc.get("$schema") or "")
    if "deploymentparameters" in schema.casefold():
        raise InputError(f"{file}:{doc.line}", "a parameters file, not a template (give it as --parameters)")
    if "resources" not in doc:
        raise InputError(f"{file}:{doc.line}", "not an ARM template: no 'resources'")
    parameters = _mapping_of(doc, file, "parameters")
    variables = _mapping_of(doc, file, "variables")
    scope = Scope(
        parameters=parameters,
        parameter_lines=parameters.key_lines,
        supplied=supplied,
        variables=variables,
        variable_lines=variables.key_lines,
        user_functions=_user_functions(doc),
        location=location,
        subscription=subscription,
        resource_group=resource_group,
    )
    template = Template(file=file, doc=doc, scope=scope)
    for key in ("parameters", "variables", "resources", "outputs"):
        if key in doc:
            check_expressions(template, doc[key], doc.line_of(key))
    for declared in _flatten(template, doc["resources"], None, 0):
        template.resources.append(declared)
        if len(template.resources) > MAX_RESOURCES:
            raise InputError(f"{file}:{declared.line}", f"more than {MAX_RESOURCES} resources")
    return template


def _mapping_of(doc: LocatedDict, file: str, key: str) -> LocatedDict:
    value = doc.get(key)
    if value is None:
        empty = LocatedDict()
        empty.line, empty.key_lines = doc.line, {}
        return empty
    if not isinstance(value, LocatedDict):
        raise InputError(f"{file}:{doc.line_of(key)}", f"'{key}' is not a JSON object")
    return value


def load_parameters(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """A parameters file: a deployment parameters file (`{"parameters": {"x": {"value": ...}}}`) or a
    plain `{"x": value}` map. A Key Vault reference is Unresolved (read at deployment)."""
    file = str(path)
    doc = parse_located(read_text_input(path, limit=MAX_TEMPLATE_BYTES, what="parameters file"), file)
    if not isinstance(doc, LocatedDict):
        raise InputError(f"{file}:{getattr(doc, 'line', 1)}", "a parameters file is a JSON object")
    schema = str(doc.get("$schema") or "").casefold()
    if "deploymenttemplate" in schema or "resources" in doc:
        raise InputError(f"{file}:{doc.line}", "a template, not a parameters file")
    entries = doc.get("parameters")
    deployment_form = isinstance(entries, LocatedDict) and (
        "deploymentparameters" in schema
        or all(isinstance(v, dict) and ("value" in v or "reference" in v) for v in entries.values())
    )
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    if deployment_form:
        assert isinstance(entries, LocatedDict)
        for name, entry in entries.items():
            where = f"{file}:{entries.line_of(name)}"
            if not isinstance(entry, dict) or not ("value" in entry or "reference" in entry):
                raise InputError(where, f"parameter '{name}' needs a 'value' or a Key Vault 'reference'")
            values[name] = (
                entry["value"]
                if "value" in entry
                else Unresolved(
                    UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                    f"parameter '{name}' is a Key Vault reference (read at deployment)",
                )
            )
            lines[name] = entries.line_of(name)
    else:
        for name, value in doc.items():
            if name != "$schema":
                values[name] = value
                lines[name] = doc.line_of(name)
    return values, lines


def reference_targets(node: Node) -> Iterator[Node]:
    """The first argument of every `reference(...)` call in `node`."""
    for call in calls(node):
        if call.namespace is None and call.name.casefold() == "reference" and call.args:
            yield call.args[0]


def resource_id_target(node: Node) -> tuple[str, list[Node]] | None:
    """`resourceId(..., 'Type/sub', name1, name2)` as (folded type, name nodes), or None."""
    if not isinstance(node, Call) or node.name.casefold() != "resourceid":
        return None
    for i, arg in enumerate(node.args):
        if isinstance(arg, Literal) and isinstance(arg.value, str) and "/" in arg.value:
            return arg.value.casefold(), list(node.args[i + 1 :])
    return None
