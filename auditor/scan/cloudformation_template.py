"""CloudFormation templates and parameter files read with the line of every value.

YAML templates go through the project's YAML reader (`auditor.policy.yamlfile`: size limit, alias
expansion bound, nesting depth, duplicate keys) with one addition: the short-form intrinsic tags
(`!Ref X`, `!Sub ...`, `!GetAtt A.B`) become their long form (`{"Ref": "X"}`, `{"Fn::Sub": ...}`,
`{"Fn::GetAtt": ["A", "B"]}`), as CloudFormation reads them. An unknown tag is bad input. JSON
templates are parsed strictly (duplicate keys refused) and `auditor.scan.located_json` finds each
value's line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from auditor.errors import InputError
from auditor.inputfile import MAX_TEXT_BYTES, read_text_input
from auditor.policy.yamlfile import (
    MAX_DEPTH,
    PathKey,
    YamlDocument,
    _Builder,
    _check_expansion,
    load_yaml,
)
from auditor.scan.located_json import located_lines, parse_located

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # as auditor.policy.yamlfile composes

# Short-form tag -> the intrinsic function it stands for (CloudFormation User Guide,
# "Intrinsic function reference"; `!Condition` is the condition-reference form).
SHORT_FORMS: dict[str, str] = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    **{
        f"!{name}": f"Fn::{name}"
        for name in (
            "And",
            "Base64",
            "Cidr",
            "Equals",
            "FindInMap",
            "GetAtt",
            "GetAZs",
            "If",
            "ImportValue",
            "Join",
            "Length",
            "Not",
            "Or",
            "Select",
            "Split",
            "Sub",
            "ToJsonString",
            "Transform",
        )
    },
}
# Every intrinsic function a template may use in long form (the short forms' and `Fn::ForEach`).
FUNCTIONS: frozenset[str] = frozenset({*SHORT_FORMS.values(), "Fn::ForEach"})


@dataclass
class Template:
    """One parsed template (or parameter file): its data and the 1-based line of each value."""

    path: Path
    data: Any
    lines: dict[PathKey, int]

    def line_of(self, loc: PathKey) -> int:
        """The line of `loc`, or of its nearest parent that has one."""
        return YamlDocument(self.path, self.data, self.lines).line_of(loc)

    def where(self, loc: PathKey = ()) -> str:
        """'file:line' for `loc`."""
        return f"{self.path}:{self.line_of(loc)}"

    def error(self, loc: PathKey, message: str) -> InputError:
        """An InputError located at `loc`."""
        return InputError(self.where(loc), message)


class _TemplateBuilder(_Builder):
    """The project's YAML builder, with the intrinsic short-form tags read as their long form."""

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        tag = node.tag or ""
        if not tag.startswith("!"):
            return super().build(node, path)
        line = node.start_mark.line + 1
        function = SHORT_FORMS.get(tag)
        if function is None:
            raise InputError(f"{self.file}:{line}", f"unknown intrinsic function tag '{tag}'")
        self.lines.setdefault(path, line)
        inner = (*path, function)
        if not isinstance(node, yaml.ScalarNode):
            return {function: super().build(node, inner)}  # builds by node kind, tag aside
        self.lines.setdefault(inner, line)
        value: Any = str(node.value)
        if function == "Fn::GetAtt":  # `!GetAtt Resource.Attribute`: the first dot separates them
            resource, dot, attribute = value.partition(".")
            if not dot or not resource or not attribute:
                raise InputError(f"{self.file}:{line}", f"!GetAtt takes Resource.Attribute, got {value!r}")
            value = [resource, attribute]
        return {function: value}


def _load_yaml_text(path: Path, text: str) -> Template:
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        # The same file:line message every YAML input of auditor gives (composing fails the same way).
        load_yaml(path)
        raise InputError(str(path), "invalid YAML") from None  # pragma: no cover - load_yaml raised
    lines: dict[PathKey, int] = {}
    data = None
    if node is not None:
        _check_expansion(node, path)
        data = _TemplateBuilder(path, lines).build(node, ())
    lines.setdefault((), 1)
    return Template(path, data, lines)


def _load_json_text(path: Path, text: str) -> Template:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}", f"invalid JSON: {exc.msg}") from None
    except RecursionError:
        raise InputError(str(path), f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    located = parse_located(text, str(path), comments=False, refuse_duplicates=True, max_depth=MAX_DEPTH)
    return Template(path, data, dict(located_lines(located)))


def load_document(path: Path) -> Template:
    """A JSON or YAML file (JSON when it starts with '{' or '['), with its lines; InputError if bad."""
    text = read_text_input(path, limit=MAX_TEXT_BYTES)
    if text.lstrip()[:1] in ("{", "["):
        return _load_json_text(path, text)
    return _load_yaml_text(path, text)


def _check_functions(template: Template, value: Any, loc: PathKey) -> None:
    """Refuse an unknown `Fn::` function anywhere in the template (CloudFormation refuses it)."""
    stack: list[tuple[Any, PathKey]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                name = str(key)
                if name.startswith("Fn::") and name not in FUNCTIONS and not name.startswith("Fn::ForEach::"):
                    raise template.error((*where, name), f"unknown intrinsic function '{name}'")
                stack.append((child, (*where, name)))
        elif isinstance(item, list):
            stack.extend((child, (*where, index)) for index, child in enumerate(item))


def load_template(path: Path) -> Template:
    """A CloudFormation template: a mapping with a `Resources` mapping of typed resources."""
    template = load_document(path)
    data = template.data
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise template.error((), "not a CloudFormation template: no 'Resources' mapping")
    if not data["Resources"]:
        raise template.error(("Resources",), "a template declares at least one resource")
    for section in ("Parameters", "Mappings", "Conditions"):
        if section in data and not isinstance(data[section], dict):
            raise template.error((section,), f"'{section}' must be a mapping")
    for logical_id, resource in data["Resources"].items():
        if str(logical_id).startswith("Fn::ForEach::"):
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("Type"), str):
            raise template.error(("Resources", str(logical_id)), f"resource '{logical_id}' has no 'Type'")
        properties = resource.get("Properties", {})
        if not isinstance(properties, dict):
            raise template.error(
                ("Resources", str(logical_id), "Properties"),
                f"resource '{logical_id}': 'Properties' must be a mapping",
            )
    _check_functions(template, data, ())
    return template


@dataclass
class ParameterFile:
    """Parameter values given in a file, each with the `file:line` it was given at.

    A value of None is a parameter given as `UsePreviousValue` (the deployed stack's value).
    """

    path: Path
    values: dict[str, str | None]
    where: dict[str, str]


def load_parameters(path: Path) -> ParameterFile:
    """Parameter values from `path`: the AWS CLI list form, a plain map, or `{"Parameters": map}`."""
    document = load_document(path)
    data = document.data
    base: PathKey = ()
    if isinstance(data, dict) and set(data) == {"Parameters"} and isinstance(data["Parameters"], dict):
        data, base = data["Parameters"], ("Parameters",)  # CodePipeline's template configuration file
    given = ParameterFile(path, {}, {})
    if isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("ParameterKey"), str):
                raise document.error(
                    (index,), 'each parameter is {"ParameterKey": ..., "ParameterValue": ...}'
                )
            key = item["ParameterKey"]
            if key in given.values:
                raise document.error((index,), f"parameter '{key}' is given twice")
            if item.get("UsePreviousValue") is True:
                given.values[key] = None
            elif "ParameterValue" not in item:
                raise document.error((index,), f"parameter '{key}' has no ParameterValue")
            else:
                given.values[key] = _parameter_text(
                    document, (index, "ParameterValue"), item["ParameterValue"]
                )
            given.where[key] = document.where((index,))
        return given
    if isinstance(data, dict):
        for key, value in data.items():
            given.values[str(key)] = _parameter_text(document, (*base, str(key)), value)
            given.where[str(key)] = document.where((*base, str(key)))
        return given
    raise document.error((), "a parameters file is a list of {ParameterKey, ParameterValue} or a mapping")


def _parameter_text(document: Template, loc: PathKey, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ",".join(str(v) for v in value)
    raise document.error(loc, "a parameter value is a string, a number or a list of them")
