"""The shape of the package: imports flow one way, and only auditor/scan/ knows the clouds by name.

The graph checks read the source with `ast` (nothing is imported). Imports inside functions count:
a lazy import is still a dependency. The source registry finds the `auditor/scan/*_source.py`
modules and imports them by name (pkgutil, importlib), a plug-in edge this graph does not see by
design; the last test checks that loading the registry imports no cloud SDK.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "auditor"
CLOUD_NAMES = frozenset({"aws", "gcp", "azure", "s3", "gcs", "google", "amazon", "microsoft"})

# Known and owned elsewhere: (module, what). Remove an entry once its module moves to the registry.
PENDING_CLOUD_NAMES: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Import nodes under `if TYPE_CHECKING:`: annotations only, never executed."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return ids


def _imports(name: str, tree: ast.AST) -> Iterator[str]:
    """Every auditor module `name` imports (a `from pkg import sub` names the submodule)."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _graph(level: str) -> dict[str, set[str]]:
    """module -> modules it imports; at level 'package', subpackages are one node each."""

    def node(module: str) -> str:
        parts = module.split(".")
        if level == "package" and len(parts) > 2:
            return ".".join(parts[:2])
        if level == "package" and len(parts) == 2 and MODULES[module].name == "__init__.py":
            return module
        return module

    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for target in _imports(name, tree):
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("auditor") and node(target) != node(name):
                graph.setdefault(node(name), set()).add(node(target))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("level", ["module", "package"])
def test_the_import_graph_has_no_cycle(level: str) -> None:
    assert _cycles(_graph(level)) == []


def test_audit_uses_scale_and_scale_knows_no_audit() -> None:
    graph = _graph("package")
    assert "auditor.audit" not in graph.get("auditor.scale", set())
    assert "auditor.audit" not in graph.get("auditor.scan", set())


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _cloud_names(tree: ast.AST) -> Iterator[str]:
    """String literals that are exactly a cloud's name (any case), and attributes named after one
    (`config.clouds.aws`, `catalog.gcp`): both mean code that branches on or picks a cloud."""
    docstrings = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value.strip().lower() in CLOUD_NAMES:
                yield repr(node.value)
        elif isinstance(node, ast.Attribute) and node.attr.lower() in CLOUD_NAMES:
            yield f".{node.attr}"


def test_only_the_sources_name_a_cloud() -> None:
    found = set()
    for name, path in MODULES.items():
        if name.startswith("auditor.scan.") or name == "auditor.scan":
            continue
        found.update((name, hit) for hit in _cloud_names(ast.parse(path.read_text(encoding="utf-8"))))
    assert sorted(found - PENDING_CLOUD_NAMES) == []


def test_the_rule_sees_a_branch_on_a_cloud() -> None:
    tree = ast.parse(
        '"""Mentions aws in a docstring."""\nif provider == "gcp":\n    x = config.clouds.azure\n'
    )
    assert sorted(_cloud_names(tree)) == ["'gcp'", ".azure"]


def test_loading_the_registry_imports_no_cloud_sdk() -> None:
    """`auditor check` and `auditor report` load every source declaration: none may import an SDK."""
    code = (
        "import auditor.sources as s; print(len(s.sources())); import sys; "
        'print([m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "google", "azure")])'
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    registered, sdk_modules = done.stdout.splitlines()
    assert int(registered) >= 3  # the registry did load the declarations
    assert sdk_modules == "[]"
