"""Map a Terraform resource address back to the `.tf` file and line that declares it (`--source-root`).

The plan's `configuration` names each module call's `source`; local sources (`./modules/logs`)
are directories under the root, so `module.logs.aws_s3_bucket.b["x"]` is the block
`resource "aws_s3_bucket" "b"` in a `.tf` file of `<root>/modules/logs`. Blocks and their lines
come from python-hcl2 (`with_meta`); a file it cannot parse is scanned for `resource "T" "N"`
lines instead, so one odd file never hides the others. Registry and git module sources are not
on disk under the root: their resources keep the plan file as their location.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from auditor.inputfile import read_text_input

_RESOURCE_LINE = re.compile(r'^[ \t]*resource\s+"(?P<type>[^"]+)"\s+"(?P<name>[^"]+)"\s*\{', re.MULTILINE)


class SourceMap:
    """Resource declarations of the `.tf` files under one root, read on first use per directory."""

    def __init__(self, root: Path, shown_from: Path | None = None) -> None:
        self.root = root
        self.shown_from = shown_from or root

    def locate(self, module_dir: Path | None, type_: str, name: str) -> tuple[str, int] | None:
        """(file relative to `shown_from`, 1-based line) of `resource "type_" "name"` in `module_dir`."""
        if module_dir is None:
            return None
        found = _declarations(module_dir.resolve()).get((type_, name))
        if found is None:
            return None
        file, line = found
        try:
            shown = file.relative_to(self.shown_from.resolve()).as_posix()
        except ValueError:
            shown = file.as_posix()
        return shown, line

    def module_dir(self, sources: list[str]) -> Path | None:
        """The directory of a module reached through the given chain of call `source` values."""
        directory = self.root
        for source in sources:
            if not (source.startswith("./") or source.startswith("../")):
                return None  # a registry, git or archive source: not under the root
            directory = directory / source
        return directory if directory.is_dir() else None


@cache
def _declarations(directory: Path) -> dict[tuple[str, str], tuple[Path, int]]:
    found: dict[tuple[str, str], tuple[Path, int]] = {}
    for file in sorted(directory.glob("*.tf")):
        try:
            text = read_text_input(file, what=".tf file")
        except Exception:  # an unreadable .tf only loses its lines; the plan is what is audited
            continue
        for key, line in _blocks(text):
            found.setdefault(key, (file, line))
    return found


def _blocks(text: str) -> list[tuple[tuple[str, str], int]]:
    try:
        from hcl2.api import loads

        parsed: dict[str, Any] = loads(text, with_meta=True)
        blocks: list[tuple[tuple[str, str], int]] = []
        for entry in parsed.get("resource", []):
            for type_, named in entry.items():
                for name, body in named.items():
                    blocks.append(((str(type_), str(name)), int(body["__start_line__"])))
        return blocks
    except Exception:  # python-hcl2 refused the file (or its API changed): scan the lines
        return [
            ((m.group("type"), m.group("name")), text.count("\n", 0, m.start()) + 1)
            for m in _RESOURCE_LINE.finditer(text)
        ]
