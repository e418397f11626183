"""CloudFormation's intrinsic functions, evaluated as far as the template and its inputs allow.

A value is resolved from parameters (given, else their defaults), Mappings, Conditions and the
pseudo parameters of the stack; what cannot be is an `Unresolved` carrying why, with one rule for
its code: a value CloudFormation or AWS computes when the stack is created (a generated bucket
name, `Fn::GetAtt` of a key, `Fn::ImportValue`, an SSM parameter, a `{{resolve:...}}` dynamic
reference) is `not_known_until_apply`; an input the user can supply but did not (a parameter
without value or default, `--account`, `--stack-name`) is `error`, with what to give; a function
auditor does not evaluate (`Fn::Cidr`, the language-extension functions) is `not_supported`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from auditor.model import UnknownCode
from auditor.policy.yamlfile import PathKey
from auditor.scan.cloudformation_template import ParameterFile, Template


@dataclass(frozen=True)
class Unresolved:
    """A value that cannot be known from the template: why, and the template resource it denotes."""

    code: UnknownCode
    reason: str
    refers_to: str | None = None  # logical id: `Ref`/`Fn::GetAtt` of a template resource


class _NoValue:
    """`AWS::NoValue`: the property is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


def first_unresolved(value: Any) -> Unresolved | None:
    """The first `Unresolved` inside `value` (depth first), or None when it is fully known."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Unresolved):
            return item
        if isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return None


def partition_of(region: str) -> tuple[str, str]:
    """(AWS::Partition, AWS::URLSuffix) of a region."""
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


@dataclass(frozen=True)
class Stack:
    """Where the template is deployed: what `--region`, `--account`, `--stack-name` say."""

    region: str
    account: str | None = None
    stack_name: str | None = None

    @property
    def partition(self) -> str:
        """AWS::Partition."""
        return partition_of(self.region)[0]


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_NOT_EVALUATED = ("Fn::Cidr", "Fn::Length", "Fn::ToJsonString", "Fn::Transform", "Fn::ForEach")


@dataclass
class Resolver:
    """Evaluates the intrinsic functions of one template for one stack.

    `names` gives the physical name a `Ref` of a template resource returns when it is known (a
    bucket's resolved `BucketName`); `stand_ins` names used instead of a generated name, for the
    analysis of a bucket policy against the very bucket it is attached to.
    """

    template: Template
    stack: Stack
    parameters: Mapping[str, Any]
    names: dict[str, Any] = field(default_factory=dict)
    stand_ins: Mapping[str, str] = field(default_factory=dict)
    _conditions: dict[str, bool | Unresolved] = field(default_factory=dict)
    _deciding: set[str] = field(default_factory=set)

    # --- sections --------------------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, Any]:
        """The template's Resources."""
        resources: dict[str, Any] = self.template.data["Resources"]
        return resources

    def with_stand_ins(self, stand_ins: Mapping[str, str]) -> Resolver:
        """The same resolver, with `stand_ins` for the generated names of those resources."""
        return Resolver(self.template, self.stack, self.parameters, self.names, stand_ins, self._conditions)

    def where(self, loc: PathKey) -> str:
        """'file:line' of `loc`, for reasons."""
        return self.template.where(loc)

    def condition(self, name: str, loc: PathKey) -> bool | Unresolved:
        """The value of the template condition `name` (decided once)."""
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.data.get("Conditions") or {}
        if name not in conditions:
            raise self.template.error(loc, f"condition '{name}' is not declared in Conditions")
        if name in self._deciding:
            raise self.template.error(("Conditions", name), f"condition '{name}' refers to itself")
        self._deciding.add(name)
        try:
            value = self._decide(conditions[name], ("Conditions", name))
        finally:
            self._deciding.discard(name)
        if isinstance(value, Unresolved):
            value = Unresolved(value.code, f"condition '{name}' cannot be decided: {value.reason}")
        self._conditions[name] = value
        return value

    def _decide(self, value: Any, loc: PathKey) -> bool | Unresolved:
        if isinstance(value, dict) and len(value) == 1:
            ((function, args),) = value.items()
            inner = (*loc, function)
            if function == "Condition":
                return self.condition(str(args), inner)
            if function == "Fn::Equals" and isinstance(args, list) and len(args) == 2:
                left, right = (self.resolve(arg, (*inner, i)) for i, arg in enumerate(args))
                problem = first_unresolved([left, right])
                if problem is not None:
                    return problem
                return _text(left) == _text(right)
            if function == "Fn::Not" and isinstance(args, list) and len(args) == 1:
                decided = self._decide(args[0], (*inner, 0))
                return decided if isinstance(decided, Unresolved) else not decided
            if function in ("Fn::And", "Fn::Or") and isinstance(args, list) and args:
                values = [self._decide(arg, (*inner, i)) for i, arg in enumerate(args)]
                settles = bool(function == "Fn::Or")  # Kleene: one true settles Or, one false settles And
                if any(v is settles for v in values):
                    return settles
                problem = next((v for v in values if isinstance(v, Unresolved)), None)
                return problem if problem is not None else not settles
        if isinstance(value, bool) or value in ("true", "false"):
            return bool(value is True or value == "true")
        raise self.template.error(loc, "a condition is Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition")

    # --- values ----------------------------------------------------------------------------------

    def resolve(self, value: Any, loc: PathKey) -> Any:
        """`value` with every intrinsic function evaluated where it can be (see the module doc)."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, args),) = value.items()
                if key == "Ref" or (isinstance(key, str) and key.startswith("Fn::")):
                    return self._function(str(key), args, (*loc, key))
            resolved = {}
            for key, item in value.items():
                result = self.resolve(item, (*loc, str(key)))
                if result is not NO_VALUE:
                    resolved[key] = result
            return resolved
        if isinstance(value, list):
            items = [self.resolve(item, (*loc, i)) for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if isinstance(value, str) and "{{resolve:" in value:
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                f"a dynamic reference, resolved when the stack is deployed ({self.where(loc)})",
            )
        return value

    def _function(self, name: str, args: Any, loc: PathKey) -> Any:
        if name == "Ref":
            return self.ref(str(args), loc)
        if name == "Fn::GetAtt":
            parts = args.split(".", 1) if isinstance(args, str) else args
            if not (isinstance(parts, list) and len(parts) == 2):
                raise self.template.error(loc, "Fn::GetAtt takes [Resource, Attribute]")
            attribute = self.resolve(parts[1], (*loc, 1))
            if isinstance(attribute, Unresolved):
                return attribute
            return self.get_att(str(parts[0]), str(attribute), loc)
        if name == "Fn::Sub":
            return self._sub(args, loc)
        if name == "Fn::If":
            if not (isinstance(args, list) and len(args) == 3):
                raise self.template.error(loc, "Fn::If takes [Condition, ValueIfTrue, ValueIfFalse]")
            decided = self.condition(str(args[0]), (*loc, 0))
            if isinstance(decided, Unresolved):
                return decided
            return self.resolve(args[1] if decided else args[2], (*loc, 1 if decided else 2))
        resolved = self.resolve(args, loc)
        problem = first_unresolved(resolved)
        if problem is not None:
            return problem
        return self._evaluate(name, resolved, loc)

    def _evaluate(self, name: str, args: Any, loc: PathKey) -> Any:
        """A function whose arguments are all known."""
        if name == "Fn::Join" and isinstance(args, list) and len(args) == 2 and isinstance(args[1], list):
            return str(args[0]).join(_text(item) for item in args[1])
        if name == "Fn::Select" and isinstance(args, list) and len(args) == 2 and isinstance(args[1], list):
            index = int(args[0]) if str(args[0]).isdigit() else -1
            if not 0 <= index < len(args[1]):
                return Unresolved(
                    UnknownCode.ERROR, f"Fn::Select index {args[0]} is out of range ({self.where(loc)})"
                )
            return args[1][index]
        if name == "Fn::Split" and isinstance(args, list) and len(args) == 2:
            return _text(args[1]).split(str(args[0]))
        if name == "Fn::FindInMap" and isinstance(args, list) and len(args) in (3, 4):
            return self._find_in_map(args, loc)
        if name == "Fn::Base64":
            return base64.b64encode(_text(args).encode()).decode()
        if name == "Fn::ImportValue":
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                f"Fn::ImportValue '{_text(args)}' is exported by another stack ({self.where(loc)})",
            )
        if name == "Fn::GetAZs":
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY, f"Fn::GetAZs depends on the account ({self.where(loc)})"
            )
        if name in _NOT_EVALUATED:
            return Unresolved(
                UnknownCode.NOT_SUPPORTED, f"auditor does not evaluate {name} ({self.where(loc)})"
            )
        raise self.template.error(loc, f"{name}: arguments of the wrong shape")

    def _find_in_map(self, args: list[Any], loc: PathKey) -> Any:
        mappings = self.template.data.get("Mappings") or {}
        table, top, second = (str(a) for a in args[:3])
        found = (mappings.get(table) or {}).get(top)
        if isinstance(found, dict) and second in found:
            return self.resolve(found[second], ("Mappings", table, top, second))
        if len(args) == 4 and isinstance(args[3], dict) and "DefaultValue" in args[3]:
            return args[3]["DefaultValue"]
        return Unresolved(
            UnknownCode.ERROR, f"Fn::FindInMap: Mappings has no {table}.{top}.{second} ({self.where(loc)})"
        )

    def _sub(self, args: Any, loc: PathKey) -> Any:
        if isinstance(args, list) and len(args) == 2 and isinstance(args[1], dict):
            text, variables = args[0], self.resolve(args[1], (*loc, 1))
        else:
            text, variables = args, {}
        if not isinstance(text, str):
            raise self.template.error(loc, "Fn::Sub takes a string or [string, {variables}]")
        pieces: list[str] = []
        last = 0
        for match in _SUB_VARIABLE.finditer(text):
            pieces.append(text[last : match.start()])
            last = match.end()
            name = match.group(1).strip()
            if name.startswith("!"):  # ${!Literal} is written as ${Literal}
                pieces.append("${" + name[1:] + "}")
                continue
            if name in variables:
                value = variables[name]
            elif "." in name and not name.startswith("AWS::"):
                resource, _, attribute = name.partition(".")
                value = self.get_att(resource, attribute, loc)
            else:
                value = self.ref(name, loc)
            if isinstance(value, Unresolved):
                return value
            pieces.append(_text(value))
        pieces.append(text[last:])
        return self.resolve("".join(pieces), loc)

    # --- references ------------------------------------------------------------------------------

    def ref(self, name: str, loc: PathKey) -> Any:
        """`Ref name`: a parameter, a pseudo parameter, or a template resource's physical id."""
        if name.startswith("AWS::"):
            return self._pseudo(name, loc)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            if name in self.stand_ins:
                return self.stand_ins[name]
            known = self.names.get(name)
            if isinstance(known, Unresolved):  # a declared name that cannot be resolved
                return Unresolved(known.code, known.reason, refers_to=name)
            return known if known is not None else self._generated(name, loc, "the physical id")
        raise self.template.error(loc, f"Ref '{name}': no such parameter or resource")

    def get_att(self, resource: str, attribute: str, loc: PathKey) -> Any:
        """`Fn::GetAtt resource.attribute`: a bucket's Arn where its name is known; else unknown."""
        declared = self.resources.get(resource)
        if not isinstance(declared, dict):
            raise self.template.error(loc, f"Fn::GetAtt '{resource}.{attribute}': no such resource")
        if declared.get("Type") == "AWS::S3::Bucket" and attribute == "Arn":
            name = self.ref(resource, loc)
            if not isinstance(name, Unresolved):
                return f"arn:{self.stack.partition}:s3:::{name}"
        return self._generated(resource, loc, attribute)

    def _generated(self, resource: str, loc: PathKey, what: str) -> Unresolved:
        kind = (self.resources.get(resource) or {}).get("Type", "resource")
        return Unresolved(
            UnknownCode.NOT_KNOWN_UNTIL_APPLY,
            f"{what} of {kind} '{resource}' is known only after the stack is created ({self.where(loc)})",
            refers_to=resource,
        )

    def _pseudo(self, name: str, loc: PathKey) -> Any:
        given = {
            "AWS::Region": self.stack.region,
            "AWS::Partition": self.stack.partition,
            "AWS::URLSuffix": partition_of(self.stack.region)[1],
            "AWS::AccountId": self.stack.account,
            "AWS::StackName": self.stack.stack_name,
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in given:
            value = given[name]
            if value is not None:
                return value
            flag = "--account" if name == "AWS::AccountId" else "--stack-name"
            return Unresolved(UnknownCode.ERROR, f"{name} is not given: pass {flag} ({self.where(loc)})")
        if name in ("AWS::StackId", "AWS::NotificationARNs"):
            return Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                f"{name} is known only when the stack is created ({self.where(loc)})",
            )
        raise self.template.error(loc, f"Ref '{name}': no such pseudo parameter")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def parameter_values(template: Template, given: ParameterFile | None) -> dict[str, Any]:
    """Each declared parameter's value: given, else its default, else an `Unresolved` saying why.

    A list type (`CommaDelimitedList`, `List<...>`) is a list of strings; an SSM parameter type is
    resolved at deployment; a given value outside `AllowedValues` is bad input (CloudFormation
    refuses the stack).
    """
    values: dict[str, Any] = {}
    supplied = given.values if given is not None else {}
    for name, spec in (template.data.get("Parameters") or {}).items():
        loc = ("Parameters", str(name))
        if not isinstance(spec, dict):
            raise template.error(loc, f"parameter '{name}' must be a mapping")
        kind = str(spec.get("Type", "String"))
        source = given.where.get(name, "") if given is not None else ""
        if name in supplied and supplied[name] is None:
            values[name] = Unresolved(
                UnknownCode.ERROR, f"parameter '{name}' uses the deployed stack's previous value ({source})"
            )
            continue
        text = supplied[name] if name in supplied else spec.get("Default")
        if text is None:
            values[name] = Unresolved(
                UnknownCode.ERROR,
                f"parameter '{name}' has no value and no default: give it with --parameters "
                f"({template.where(loc)})",
            )
            continue
        text = _text(text)
        allowed = spec.get("AllowedValues")
        if name in supplied and isinstance(allowed, list) and text not in [_text(a) for a in allowed]:
            raise template.error(
                loc,
                f"parameter '{name}' is {text!r} (given at {source}), not one of its AllowedValues {allowed}",
            )
        if kind.startswith("AWS::SSM::Parameter::Value<"):
            values[name] = Unresolved(
                UnknownCode.NOT_KNOWN_UNTIL_APPLY,
                f"parameter '{name}' is read from SSM parameter '{text}' when the stack is deployed",
            )
        elif kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = [item.strip() for item in text.split(",")]
        else:
            values[name] = text
    return values
