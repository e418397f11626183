"""Find and load policy, waiver and zone files, with file:line on every error.

A loaded policy names only known attributes, its defaults fit their parameter types, and every
``{param: NAME}`` it uses is declared; operators and zones are checked when it compiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from auditor.errors import InputError
from auditor.inputfile import read_input
from auditor.model import GROUPS, KIND_GROUPS, attribute_paths
from auditor.policy.language import (
    AllOf,
    AnyOf,
    Condition,
    Leaf,
    NotOf,
    Policy,
    PolicyFile,
    Waiver,
    WaiverFile,
    param_refs,
)
from auditor.policy.yamlfile import PathKey, YamlDocument, load_yaml
from auditor.policy.zones import ZoneCatalog, load_zone_catalog

CATALOG_RELATIVE = Path("zones") / "catalog.yaml"


def shipped_root() -> Path:
    """The shipped data directory: the installed copy, or the source checkout's top level."""
    installed = Path(str(resources.files("auditor"))) / "_shipped"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parents[2]


def shipped_policies_dir() -> Path:
    """The policies/ directory shipped with auditor."""
    return shipped_root() / "policies"


@dataclass
class LoadedPolicy:
    """A validated policy and where it came from."""

    policy: Policy
    doc: YamlDocument
    loc: PathKey

    @property
    def where(self) -> str:
        """'file:line' of the policy's entry."""
        return self.doc.where(self.loc)


def _yaml_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(str(path), "no such policy file or directory")
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])


def walk_leaves(condition: Condition, loc: PathKey) -> Iterator[tuple[Leaf, PathKey]]:
    """Every leaf of a condition with its location in the document."""
    if isinstance(condition, AllOf):
        for i, child in enumerate(condition.all):
            yield from walk_leaves(child, (*loc, "all", i))
    elif isinstance(condition, AnyOf):
        for i, child in enumerate(condition.any):
            yield from walk_leaves(child, (*loc, "any", i))
    elif isinstance(condition, NotOf):
        yield from walk_leaves(condition.not_, (*loc, "not"))
    else:
        yield condition, loc


def policy_leaves(loaded: LoadedPolicy) -> Iterator[tuple[Leaf, PathKey]]:
    """Leaves of the scope and the condition of a policy, with their locations."""
    if loaded.policy.scope.where is not None:
        yield from walk_leaves(loaded.policy.scope.where, (*loaded.loc, "scope", "where"))
    yield from walk_leaves(loaded.policy.condition, (*loaded.loc, "condition"))


def _check_attributes(loaded: LoadedPolicy) -> None:
    known = attribute_paths()
    for leaf, loc in policy_leaves(loaded):
        path = leaf.attribute
        if path in known or (path.startswith("tags.") and len(path) > len("tags.")):
            continue
        raise loaded.doc.error(
            (*loc, "attribute"), f"unknown attribute path '{path}' (see docs/policy-language.md)"
        )


def _check_kind_groups(loaded: LoadedPolicy) -> None:
    """Every attribute group a policy reads is carried by every kind in its scope (`KIND_GROUPS`)."""
    kinds = loaded.policy.scope.kinds
    for leaf, loc in policy_leaves(loaded):
        group = leaf.attribute.split(".", 1)[0]
        if group not in GROUPS:
            continue
        missing = [kind for kind in kinds if group not in KIND_GROUPS[kind]]
        if missing:
            raise loaded.doc.error(
                (*loc, "attribute"),
                f"'{leaf.attribute}' is not an attribute of kind {', '.join(missing)}: "
                "name only kinds that carry it in scope.kinds (docs/policy-language.md, Attribute paths)",
            )


def _check_parameters(loaded: LoadedPolicy) -> None:
    """Every default fits its parameter's type, and every ``{param: NAME}`` is declared."""
    declared = loaded.policy.parameters
    for name, spec in declared.items():
        if spec.default is None:
            continue
        try:
            spec.value_of(name, spec.default)
        except ValueError as exc:
            raise loaded.doc.error((*loaded.loc, "parameters", name, "default"), f"default: {exc}") from exc
    for leaf, loc in policy_leaves(loaded):
        for name in param_refs(leaf.value):
            if name not in declared:
                raise loaded.doc.error(
                    (*loc, "value"), f"parameter '{name}' is not declared in the policy's parameters"
                )


def load_policies(paths: Iterable[Path]) -> list[LoadedPolicy]:
    """Load every policy file of the given files/directories (top level only)."""
    loaded: list[LoadedPolicy] = []
    seen: dict[str, str] = {}
    for path in paths:
        for file in _yaml_files(path):
            doc = load_yaml(file)
            if not isinstance(doc.data, dict) or "policies" not in doc.data:
                raise doc.error((), "a policy file is a mapping with a 'policies:' list")
            try:
                parsed = PolicyFile.model_validate(doc.data)
            except ValidationError as exc:
                raise doc.validation_error(exc) from exc
            for index, policy in enumerate(parsed.policies):
                entry = LoadedPolicy(policy, doc, ("policies", index))
                if policy.id in seen:
                    raise doc.error(
                        ("policies", index, "id"),
                        f"duplicate policy id '{policy.id}' (first at {seen[policy.id]})",
                    )
                seen[policy.id] = entry.where
                _check_attributes(entry)
                _check_kind_groups(entry)
                _check_parameters(entry)
                loaded.append(entry)
    return loaded


def load_zones(policy_paths: Iterable[Path]) -> ZoneCatalog:
    """The zone catalog: a policy directory's own `zones/catalog.yaml` (first found) or the shipped
    one, plus every other `zones/*.yaml` beside the policy directories (extra zones only)."""
    catalogs: list[Path] = []
    extra: list[Path] = []
    for path in policy_paths:
        zone_dir = path / "zones"
        if not (path.is_dir() and zone_dir.is_dir()):
            continue
        for file in sorted(zone_dir.glob("*.y*ml")):
            (catalogs if file.name == CATALOG_RELATIVE.name else extra).append(file)
    base = catalogs[0] if catalogs else shipped_policies_dir() / CATALOG_RELATIVE
    for other in catalogs[1:]:
        if read_input(other, what="zone catalog") != read_input(base, what="zone catalog"):
            raise InputError(str(other), f"a second, different zone catalog (the first is {base})")
    return load_zone_catalog([base, *extra])


@dataclass
class LoadedWaiver:
    """A validated waiver and where it came from."""

    waiver: Waiver
    where: str
    key: str


def load_waivers(path: Path) -> list[LoadedWaiver]:
    """Load a waiver file."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict) or "waivers" not in doc.data:
        raise doc.error((), "a waiver file is a mapping with a 'waivers:' list")
    try:
        parsed = WaiverFile.model_validate(doc.data)
    except ValidationError as exc:
        raise doc.validation_error(exc) from exc
    return [
        LoadedWaiver(w, doc.where(("waivers", i)), w.id or f"{path.name}#{i + 1}")
        for i, w in enumerate(parsed.waivers)
    ]
