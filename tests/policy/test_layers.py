"""Imports follow the data: model -> policy -> evaluate -> policy_testing; auditor.policy never
imports the layers above it, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import auditor

PACKAGE = Path(auditor.__file__).parent
ABOVE_POLICY = (
    "auditor.evaluate",
    "auditor.policy_testing",
    "auditor.check",
    "auditor.report",
    "auditor.cli",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_policy_imports_nothing_above_it() -> None:
    for path in sorted((PACKAGE / "policy").glob("*.py")):
        above = {name for name in _imports(path) if name.startswith(ABOVE_POLICY)}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_evaluate_and_findings_do_not_import_policy_testing() -> None:
    for name in ("evaluate.py", "findings.py"):
        assert not {n for n in _imports(PACKAGE / name) if n.startswith("auditor.policy_testing")}
    assert not {n for n in _imports(PACKAGE / "findings.py") if n.startswith("auditor.policy")}
