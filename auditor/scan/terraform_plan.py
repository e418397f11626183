"""Reading the JSON of `terraform show -json` (a plan, or a state shown as JSON) into resources.

Format: https://developer.hashicorp.com/terraform/internals/json-format. A plan lists each
managed resource instance in `resource_changes` with its `change.after` values and which of them
are known only after apply (`after_unknown`); `configuration` keeps the expressions behind them
(provider blocks, references between resources, module calls). A state shown as JSON has only
`values` (everything known). Anything of the wrong shape is an InputError naming the file and the
JSON path, so `auditor scan terraform` exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.errors import InputError
from auditor.inputfile import MIB, read_input

MAX_PLAN_BYTES = 512 * MIB
# Actions that leave a resource in place after apply; a plain delete (or forget) does not.
_GONE = ({"delete"}, {"forget"}, {"read"})
_INDEX = re.compile(r"\[[^\]]*\]")
_VAR = re.compile(r"^var\.([A-Za-z0-9_-]+)$")


class Unresolved(Exception):
    """A value the plan does not determine (not an input error: the attribute becomes unknown)."""

    def __init__(self, reason: str, after_apply: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after_apply = after_apply


@dataclass
class PlannedResource:
    """One managed resource instance as it will be after apply."""

    address: str
    module: str  # "" or "module.a[\"x\"].module.b"
    type: str
    name: str
    index: str | int | None
    provider_name: str
    values: dict[str, Any]
    unknown: Any  # the after_unknown tree: True, or a dict/list mirroring `values`
    actions: list[str]
    config: dict[str, Any] | None = None
    config_module: str = ""  # the module path without instance keys: "module.a.module.b"

    @property
    def local_address(self) -> str:
        """The address inside its module, without the instance key: `aws_s3_bucket.b`."""
        return f"{self.type}.{self.name}"

    def get(self, *path: str | int) -> tuple[Any, bool]:
        """(value, known) at `path` of the after values; known is False when after_unknown says so."""
        value: Any = self.values
        unknown: Any = self.unknown
        for step in path:
            if unknown is True:
                return None, False
            if isinstance(unknown, dict):
                unknown = unknown.get(step) if isinstance(step, str) else None
            elif isinstance(unknown, list):
                unknown = unknown[step] if isinstance(step, int) and step < len(unknown) else None
            else:
                unknown = None
            if isinstance(value, dict) and isinstance(step, str):
                value = value.get(step)
            elif isinstance(value, list) and isinstance(step, int) and step < len(value):
                value = value[step]
            else:
                value = None
        if unknown is True:
            return None, False
        return value, True

    def expression(self, *path: str | int) -> dict[str, Any] | None:
        """The configuration expression at `path` (`{"constant_value": ...}` or `{"references": [...]}`)."""
        node: Any = (self.config or {}).get("expressions")
        for step in path:
            if isinstance(node, list):
                node = node[step] if isinstance(step, int) and step < len(node) else None
            elif isinstance(node, dict) and isinstance(step, str):
                node = node.get(step)
            else:
                return None
        return node if isinstance(node, dict) else None

    def references(self, *path: str | int) -> list[str]:
        """The references of the expression at `path` (`aws_s3_bucket.b.id`, `var.x`...)."""
        found = (self.expression(*path) or {}).get("references")
        return [str(r) for r in found] if isinstance(found, list) else []

    def declares(self, key: str) -> bool | None:
        """Whether the configuration sets `key` (None when the plan has no configuration for it)."""
        if self.config is None:
            return None
        expressions = self.config.get("expressions")
        return isinstance(expressions, dict) and key in expressions


@dataclass
class ProviderConfig:
    """One provider block of `configuration.provider_config`."""

    key: str
    name: str
    alias: str | None
    module: str
    expressions: dict[str, Any]


@dataclass
class Plan:
    """A parsed plan file: its resources, variables, configuration and provider blocks."""

    path: Path
    format_version: str
    terraform_version: str | None
    resources: list[PlannedResource]
    variables: dict[str, Any]
    providers: dict[str, ProviderConfig]
    root_config: dict[str, Any]
    kind: str  # "plan" or "state"
    skipped: dict[str, int] = field(default_factory=dict)

    def by_address(self) -> dict[str, PlannedResource]:
        """Resources by full address."""
        return {r.address: r for r in self.resources}

    # --- configuration -------------------------------------------------------------------------

    def module_config(self, module: str) -> dict[str, Any] | None:
        """The configuration of a module path without instance keys (`module.a.module.b`)."""
        node: Any = self.root_config
        for name in [part for part in module.split(".") if part and part != "module"]:
            calls = node.get("module_calls") if isinstance(node, dict) else None
            call = calls.get(name) if isinstance(calls, dict) else None
            node = call.get("module") if isinstance(call, dict) else None
            if node is None:
                return None
        return node if isinstance(node, dict) else None

    def module_call(self, module: str) -> dict[str, Any] | None:
        """The call of module `module.a.module.b` in its parent (source, expressions)."""
        last = module.split(".")[-1]
        parent = _parent_module(module)
        node = self.module_config(parent)
        calls = node.get("module_calls") if isinstance(node, dict) else None
        call = calls.get(last) if isinstance(calls, dict) else None
        return call if isinstance(call, dict) else None

    def provider_for(self, resource: PlannedResource) -> ProviderConfig | None:
        """The provider block a resource uses: its `provider_config_key`, else inherited from above."""
        short = resource.provider_name.rsplit("/", 1)[-1]
        key = str((resource.config or {}).get("provider_config_key") or short)
        prefix, sep, local = key.rpartition(":")
        if key in self.providers:
            return self.providers[key]
        if not sep:
            local, prefix = key, ""
        # Inherited from a parent module (Terraform < 1.1 names the key after the module call).
        modules = [p for p in prefix.split(".") if p and p != "module"]
        while modules:
            modules.pop()
            for candidate in (
                ".".join(f"module.{m}" for m in modules) + f":{local}" if modules else local,
                ".".join(modules) + f":{local}" if modules else local,
            ):
                if candidate in self.providers:
                    return self.providers[candidate]
        return self.providers.get(local)

    def resolve(self, expression: dict[str, Any] | None, module: str, what: str, depth: int = 0) -> Any:
        """A configuration expression's value: a constant, or `var.X` from the plan or module call."""
        if expression is None:
            raise Unresolved(f"{what} is not set in the configuration")
        if "constant_value" in expression:
            return expression["constant_value"]
        references = expression.get("references")
        variables = [m.group(1) for r in references or [] if (m := _VAR.match(str(r)))]
        if not isinstance(references, list) or len(variables) != 1 or depth > 20:
            shown = ", ".join(str(r) for r in references or []) or "an expression"
            raise Unresolved(f"{what} is {shown}, which the plan does not resolve")
        name = variables[0]
        if not module:
            entry = self.variables.get(name)
            if isinstance(entry, dict) and "value" in entry:
                return entry["value"]
            raise Unresolved(f"{what} is var.{name}, which the plan's variables do not hold")
        call = self.module_call(module)
        given = (call or {}).get("expressions", {}).get(name) if call else None
        if isinstance(given, dict):
            parent = _parent_module(module)
            return self.resolve(given, parent, f"{what} (var.{name} of {module})", depth + 1)
        declared = (self.module_config(module) or {}).get("variables", {}).get(name)
        if isinstance(declared, dict) and "default" in declared:
            return declared["default"]
        raise Unresolved(f"{what} is var.{name} of {module}, which the plan does not resolve")


def _parent_module(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:-2])


def strip_keys(module: str) -> str:
    """A module instance path without its instance keys: `module.a["x"]` -> `module.a`."""
    return _INDEX.sub("", module)


# --- reading -------------------------------------------------------------------------------------


def _fail(path: Path, where: str, message: str) -> InputError:
    return InputError(str(path), f"{where}: {message}" if where else message)


def _object(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, where, f"expected a JSON object, found {_kind(value)}")
    return value


def _list(value: Any, path: Path, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, where, f"expected a JSON array, found {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def read_plan(path: Path) -> Plan:
    """Parse one plan (or shown state) JSON file; InputError for anything that is not one."""
    data = read_input(path, limit=MAX_PLAN_BYTES, what="Terraform plan JSON")
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}", f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    top = _object(document, path, "")
    if "resources" in top and "version" in top and "format_version" not in top:
        raise _fail(
            path, "", "a raw state file (terraform.tfstate); give `terraform show -json` output instead"
        )
    version = top.get("format_version")
    if not isinstance(version, str) or not re.match(r"^\d+\.\d+$", version):
        raise _fail(
            path, "format_version", "missing or not a version: not the JSON of `terraform show -json`"
        )
    if int(version.split(".")[0]) != 1 and version != "0.1" and not version.startswith("0."):
        raise _fail(path, "format_version", f"{version} is not supported (1.x and 0.x are)")
    configuration = _object(top.get("configuration") or {}, path, "configuration")
    providers = _providers(configuration.get("provider_config") or {}, path)
    root_config = _object(configuration.get("root_module") or {}, path, "configuration.root_module")
    variables = _object(top.get("variables") or {}, path, "variables")
    plan = Plan(
        path=path,
        format_version=version,
        terraform_version=str(top.get("terraform_version")) if top.get("terraform_version") else None,
        resources=[],
        variables=variables,
        providers=providers,
        root_config=root_config,
        kind="plan",
    )
    if "resource_changes" in top:
        plan.resources = list(_changes(_list(top["resource_changes"], path, "resource_changes"), plan))
    elif "planned_values" in top:
        root = _object(top["planned_values"], path, "planned_values").get("root_module") or {}
        plan.resources = list(_walk_values(root, path, "planned_values.root_module"))
    elif "values" in top:
        plan.kind = "state"
        root = _object(top["values"] or {}, path, "values").get("root_module") or {}
        plan.resources = list(_walk_values(root, path, "values.root_module"))
    elif "planned_values" not in top and "prior_state" not in top and not configuration:
        raise _fail(path, "", "no resource_changes, planned_values or values: not a Terraform plan or state")
    for resource in plan.resources:
        resource.config_module = strip_keys(resource.module)
        resource.config = _config_entry(plan, resource)
    return plan


def _providers(raw: Any, path: Path) -> dict[str, ProviderConfig]:
    found: dict[str, ProviderConfig] = {}
    for key, entry in _object(raw, path, "configuration.provider_config").items():
        where = f"configuration.provider_config.{key}"
        item = _object(entry, path, where)
        expressions = _object(item.get("expressions") or {}, path, f"{where}.expressions")
        found[str(key)] = ProviderConfig(
            key=str(key),
            name=str(item.get("name") or str(key).rpartition(":")[2].split(".")[0]),
            alias=str(item["alias"]) if item.get("alias") else None,
            module=str(item.get("module_address") or ""),
            expressions=expressions,
        )
    return found


def _changes(changes: list[Any], plan: Plan) -> Iterator[PlannedResource]:
    path = plan.path
    for number, raw in enumerate(changes):
        where = f"resource_changes[{number}]"
        item = _object(raw, path, where)
        for key in ("address", "type", "name"):
            if not isinstance(item.get(key), str) or not item.get(key):
                raise _fail(path, f"{where}.{key}", "missing or not a string")
        change = _object(item.get("change"), path, f"{where}.change")
        actions = [str(a) for a in _list(change.get("actions"), path, f"{where}.change.actions")]
        mode = item.get("mode", "managed")
        if mode != "managed" or set(actions) in _GONE:
            reason = "data source" if mode != "managed" else "+".join(actions)
            plan.skipped[reason] = plan.skipped.get(reason, 0) + 1
            continue
        after = change.get("after")
        if after is None:  # nothing will exist after apply
            plan.skipped["no after"] = plan.skipped.get("no after", 0) + 1
            continue
        after = _object(after, path, f"{where}.change.after")
        unknown = change.get("after_unknown", {})
        if not isinstance(unknown, dict | bool):
            raise _fail(path, f"{where}.change.after_unknown", f"expected an object, found {_kind(unknown)}")
        yield PlannedResource(
            address=str(item["address"]),
            module=str(item.get("module_address") or ""),
            type=str(item["type"]),
            name=str(item["name"]),
            index=item.get("index"),
            provider_name=str(item.get("provider_name") or ""),
            values=after,
            unknown=unknown,
            actions=actions,
        )


def _walk_values(module: Any, path: Path, where: str) -> Iterator[PlannedResource]:
    node = _object(module, path, where)
    address = str(node.get("address") or "")
    for number, raw in enumerate(_list(node.get("resources") or [], path, f"{where}.resources")):
        item_where = f"{where}.resources[{number}]"
        item = _object(raw, path, item_where)
        if item.get("mode", "managed") != "managed":
            continue
        for key in ("address", "type", "name"):
            if not isinstance(item.get(key), str):
                raise _fail(path, f"{item_where}.{key}", "missing or not a string")
        yield PlannedResource(
            address=str(item["address"]),
            module=address,
            type=str(item["type"]),
            name=str(item["name"]),
            index=item.get("index"),
            provider_name=str(item.get("provider_name") or ""),
            values=_object(item.get("values") or {}, path, f"{item_where}.values"),
            unknown={},
            actions=["no-op"],
        )
    for number, child in enumerate(_list(node.get("child_modules") or [], path, f"{where}.child_modules")):
        yield from _walk_values(child, path, f"{where}.child_modules[{number}]")


def _config_entry(plan: Plan, resource: PlannedResource) -> dict[str, Any] | None:
    module = plan.module_config(resource.config_module)
    if module is None:
        return None
    for entry in module.get("resources") or []:
        if isinstance(entry, dict) and entry.get("address") == resource.local_address:
            return entry
    return None
