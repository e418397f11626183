"""docs/policy-language.md says which kinds carry which attribute groups exactly as the model does."""

from __future__ import annotations

from pathlib import Path

from auditor.model import GROUPS, KIND_GROUPS, RESOURCE_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy-language.md"


def test_the_docs_kind_table_is_kind_groups() -> None:
    text = DOC.read_text()
    start = text.index("| Kind | `location` |")
    header, _, *rows = text[start : text.index("\n\n", start)].splitlines()
    groups = [cell.strip(" `") for cell in header.strip("|").split("|")[1:]]
    assert set(groups) == GROUPS
    documented = {}
    for row in rows:
        kind, *cells = (cell.strip() for cell in row.strip("|").split("|"))
        documented[kind.strip("`")] = frozenset(
            g for g, cell in zip(groups, cells, strict=True) if cell == "yes"
        )
    assert list(documented) == list(RESOURCE_KINDS)
    assert documented == KIND_GROUPS
